"""Several hosts, with no option: a dispatcher, three workers and a client, each on a host of
its own (a network namespace with its own host name, see ``_support.netns``), started with the
command line exactly as on real machines, with nothing but the dispatcher's address.

One bed per module: every check runs on the same cluster. The client's code runs in a Python
process on the client's host (``TestBed.python``) and prints its findings as JSON.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from _support.netns import TestBed, have_netns
from _support.process_guard import eventually
from pydispatch.wire.security import IDENTITY_ENV, KEYS_ENV

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_netns(), reason="needs root, ip and unshare for namespaces"),
]

WORKERS = ("w1", "w2", "w3")
TWINS = {"w2": "twin", "w3": "twin"}
PORT = 5555


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pydispatch.cli", *args]


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
        _run(_cli("keys", "init", test_bed.keys))
        for name, role in [*((w, "worker") for w in WORKERS), ("me", "client")]:
            _run(_cli("keys", "add", test_bed.keys, name, "--role", role))
        secure = ["--keys", test_bed.keys]
    try:
        test_bed.start()
        test_bed.spawn(
            "dispatcher",
            _cli("dispatcher", "--bind", f"tcp://0.0.0.0:{PORT}", *secure, "--no-http"),
        )
        address = f"tcp://{test_bed.hosts['dispatcher'].address}:{PORT}"
        for worker in WORKERS:
            identity = ["--keys", test_bed.keys, "--identity", worker] if test_bed.keys else []
            test_bed.spawn(worker, _cli("worker", address, "--slots", "1", *identity))
        eventually(lambda: len(_status(test_bed)["workers"]) == len(WORKERS), "3 workers", 60)
        yield test_bed
    finally:
        test_bed.close()


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def _keys(bed: TestBed, identity: str) -> dict[str, str]:
    """The environment naming ``identity``'s keys, when the bed runs with keys."""
    return {KEYS_ENV: bed.keys, IDENTITY_ENV: identity} if bed.keys else {}


def _address(bed: TestBed) -> str:
    return f"tcp://{bed.hosts['dispatcher'].address}:{PORT}"


def _status(bed: TestBed) -> dict[str, Any]:
    code = f"""
        import json, msgspec
        from pydispatch.runtime.client import fetch_status
        status = fetch_status({_address(bed)!r}, timeout=5.0)
        fields = {{n: msgspec.to_builtins(getattr(status, n)) for n in status.__struct_fields__}}
        print(json.dumps(fields))
    """
    try:
        found = bed.python("client", textwrap.dedent(code), env=_keys(bed, "admin"))
    except AssertionError:  # not up yet
        return {"workers": []}
    assert isinstance(found, dict)
    return found


def _on_client(bed: TestBed, body: str) -> Any:
    """``body`` run on the client's host with ``client`` connected; it sets ``out``."""
    code = "import json\nfrom pydispatch.runtime.client import Client\n"
    code += f"with Client({_address(bed)!r}) as client:\n"
    code += textwrap.indent(textwrap.dedent(body), "    ")
    code += "\nprint(json.dumps(out))\n"
    return bed.python("client", code, env=_keys(bed, "me"))


def test_each_host_is_a_node_of_its_own_even_with_a_shared_host_name(bed: TestBed) -> None:
    nodes = sorted(worker["node"] for worker in _status(bed)["workers"])
    # By default a node is its host name and the address it reaches the dispatcher from.
    assert nodes == sorted(f"{bed.hosts[w].hostname}@{bed.hosts[w].address}" for w in WORKERS)
    assert len(set(nodes)) == len(WORKERS)


def test_tasks_and_a_large_map_run_across_hosts(bed: TestBed) -> None:
    out = _on_client(
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
    out = _on_client(
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
    out = _on_client(
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
    out = _on_client(
        bed,
        f"""
        import collections, random
        from pydispatch.stream import StreamEnvironment
        rng = random.Random(3)
        words = [rng.choice("alpha beta gamma delta eps zeta eta theta".split())
                 for _ in range(20_000)]
        lines = [" ".join(words[i : i + 10]) for i in range(0, len(words), 10)]
        env = StreamEnvironment({_address(bed)!r}, parallelism=3)
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
