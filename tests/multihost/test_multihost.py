"""Several hosts, with no option: a dispatcher, three workers and a client, each on a host of
its own (a network namespace with its own host name, see ``_support.netns``), started with the
command line exactly as on real machines, with nothing but the dispatcher's address.

One bed per module: every check runs on the same cluster. The client's code runs in a Python
process on the client's host (``TestBed.python``) and prints its findings as JSON.
"""

from __future__ import annotations

import collections
import random
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from _support.multihost import (
    WORKERS,
    address,
    cli,
    delay_proxy,
    keys_env,
    on_client,
    range_server,
    run,
    start,
    status,
)
from _support.netns import TestBed, have_netns

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("netns"),  # pytest-xdist: one bed of hosts at a time
    pytest.mark.skipif(not have_netns(), reason="needs root, ip and unshare for namespaces"),
]

TWINS = {"w2": "twin", "w3": "twin"}


@pytest.fixture(scope="module", params=["plain", "keys"])
def bed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestBed]:
    """The cluster on the bed: in plain text (``--insecure``), then with CurveZMQ keys (one
    directory here for brevity; each host would hold its own secret key)."""
    # Two workers' hosts share a host name, as cloned machines or containers may.
    test_bed = TestBed(["dispatcher", *WORKERS, "client"], hostnames=TWINS)
    secure: list[str] = ["--insecure"]
    if request.param == "keys":
        test_bed.keys = str(tmp_path_factory.mktemp("keys") / "keys")
        run(cli("keys", "init", test_bed.keys))
        for name, role in [*((w, "worker") for w in WORKERS), ("me", "client")]:
            run(cli("keys", "add", test_bed.keys, name, "--role", role))
        secure = ["--keys", test_bed.keys]
    try:
        yield start(test_bed, secure)
    finally:
        test_bed.close()


def test_each_host_is_a_node_of_its_own_even_with_a_shared_host_name(bed: TestBed) -> None:
    nodes = sorted(worker["node"] for worker in status(bed)["workers"])
    # By default a node is its host name and the address it reaches the dispatcher from.
    assert nodes == sorted(f"{bed.hosts[w].hostname}@{bed.hosts[w].address}" for w in WORKERS)
    assert len(set(nodes)) == len(WORKERS)


def test_tasks_and_a_large_map_run_across_hosts(bed: TestBed) -> None:
    out = on_client(
        bed,
        """
        import socket
        hosts = sorted({client.submit(socket.gethostname).result(60) for _ in range(30)})
        squares = client.map(lambda x: x * x, range(100_000), chunksize=2_000)
        total = sum(squares)
        out = {"hosts": hosts, "total": total, "n": 100_000}
        """,
    )
    assert out["total"] == sum(x * x for x in range(100_000))
    assert out["hosts"]
    assert set(out["hosts"]) <= {bed.hosts[w].hostname for w in WORKERS}, out["hosts"]


def test_a_mebibyte_numpy_argument_crosses_hosts(bed: TestBed) -> None:
    out = on_client(
        bed,
        """
        import numpy as np
        array = np.random.default_rng(7).integers(0, 1 << 30, 1 << 17)  # 1 MiB of int64
        def checksum(a):
            return int(a.sum()), a.nbytes
        sums = [client.submit(checksum, array).result(60) for _ in range(3)]
        out = {"sums": sums, "want": [int(array.sum()), array.nbytes]}
        """,
    )
    assert out["want"][1] == 1 << 20
    assert all(list(found) == out["want"] for found in out["sums"])


def test_lone_tasks_take_the_direct_lane_across_hosts(bed: TestBed) -> None:
    out = on_client(
        bed,
        """
        import time
        direct = 0
        endpoint = ""
        for _ in range(500):
            future = client.submit(divmod, 7, 2)
            assert future.result(60) == (3, 1)
            if future._lane_attempt < 0:
                direct += 1
                if direct == 20:
                    break
            time.sleep(0.002)
        out = {"direct": direct, "lease": client._lane.lease_id}
        """,
    )
    # Twenty lone round trips went straight to a slot on another host, not through the
    # dispatcher: its direct endpoint was advertised at an address the client could reach.
    assert out["direct"] == 20, out


def test_a_word_count_job_at_parallelism_3_equals_counter(bed: TestBed) -> None:
    out = on_client(
        bed,
        f"""
        import collections, random
        from pydispatch.stream import StreamEnvironment
        rng = random.Random(3)
        words = [rng.choice("alpha beta gamma delta eps zeta eta theta".split())
                 for _ in range(20_000)]
        lines = [" ".join(words[i : i + 10]) for i in range(0, len(words), 10)]
        env = StreamEnvironment({address(bed)!r}, parallelism=3)
        counts = (
            env.from_collection(lines)
            .flat_map(str.split)
            .map(lambda w: (w, 1))
            .key_by(0)
            .sum(1)
            .collect()
        )
        want = dict(collections.Counter(words))
        out = {{"got": dict(counts), "pairs": len(counts), "want": want}}
        """,
    )
    assert out["pairs"] == len(out["want"])  # one final count per word
    assert out["got"] == out["want"]


def test_a_file_on_the_clients_host_is_read_by_every_worker_through_an_http_url(
    bed: TestBed, tmp_path: Path
) -> None:
    """A text source at an fsspec URL (the ``fsspec`` extra, aiohttp for HTTP) served by the
    client's host: each worker's slice reads its own byte range over the network; the word
    count at parallelism 3 equals ``Counter``."""
    rng = random.Random(5)
    vocabulary = ("alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta")
    words = [rng.choice(vocabulary) for _ in range(20_000)]
    lines = [" ".join(words[i : i + 10]) for i in range(0, len(words), 10)]
    (tmp_path / "words.txt").write_text("\n".join(lines) + "\n")
    log = tmp_path / "requests.log"
    range_server(bed, "client", 8765, str(tmp_path), str(log))
    url = f"http://{bed.hosts['client'].address}:8765/words.txt"
    out = on_client(
        bed,
        f"""
        from pydispatch.stream import StreamEnvironment
        env = StreamEnvironment({address(bed)!r}, parallelism=3)
        stream = env.read_text({url!r}).flat_map(str.split).map(lambda w: (w, 1))
        out = dict(stream.key_by(0).sum(1).collect())
        """,
    )
    assert out == dict(collections.Counter(words))
    # Ranges were asked from the workers' hosts, not only the client's (which sizes the file).
    readers = set(re.findall(r"(10\.77\.0\.\d+) - - .*\"GET /words.txt", log.read_text()))
    assert {bed.hosts[worker].address for worker in WORKERS} <= readers, readers


def test_through_a_20_ms_delay_every_result_comes_and_the_lane_still_goes_direct(
    bed: TestBed,
) -> None:
    """The client's host reaches the dispatcher through the delay proxy (20 ms each way):
    2,000 separate submits all resolve, right; a round trip through the dispatcher takes the
    delay (at least 40 ms: the proxy cannot be faster), and lone tasks still go straight to a
    leased slot on another host, around it. (The rates: ``bench/bench_multihost.py``.)"""
    far = delay_proxy(bed, 6000, 20)
    code = """
        import json, sys, time
        from pydispatch.runtime.client import Client
        with Client(sys.argv[1]) as client:
            futures = [client.submit(abs, -i) for i in range(2_000)]
            values = [future.result(120) for future in futures]
            direct = 0
            for _ in range(500):
                future = client.submit(divmod, 7, 2)
                assert future.result(60) == (3, 1)
                direct += future._lane_attempt < 0
                if direct == 5:
                    break
                time.sleep(0.002)
            client._lane.usable, client._lane.lease_id = False, 0  # a private switch: off
            began = time.perf_counter()
            assert client.submit(divmod, 9, 2).result(60) == (4, 1)
            round_trip = time.perf_counter() - began
        print(json.dumps({"ok": values == list(range(2_000)), "direct": direct, "rt": round_trip}))
    """

    out = bed.python("client", textwrap.dedent(code), env=keys_env(bed, "me"), args=[far])
    assert isinstance(out, dict)
    assert out["ok"], out
    assert out["direct"] == 5, out
    assert out["rt"] >= 0.040, out
