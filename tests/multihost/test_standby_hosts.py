"""Standby dispatchers on other hosts: two dispatchers, each on a host of its own (a network
namespace, see ``_support.netns``), share a real PostgreSQL server; workers are given both
addresses on the command line, one worker and the client only the standby's. The standby,
asked, names the leader; the leader is killed (SIGKILL) in the middle of a map and a keyed job,
the standby takes the lead, and the workers and the client follow it to its host; the map
completes with every item right and the job (run again from its sources) with the reference
output; the old leader started again is a standby naming the new one.

The PostgreSQL server listens on a Unix socket in a temporary directory: the namespaces share
the file system, so every dispatcher host reaches it there (the network between the hosts is
the bed's bridge; the database's own network is not what is tested)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _support.multihost import PORT, cli
from _support.netns import TestBed, have_netns
from _support.postgres import throwaway_postgres
from _support.process_guard import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("netns"),  # pytest-xdist: one bed of hosts at a time
    pytest.mark.skipif(not have_netns(), reason="needs root, ip and unshare for namespaces"),
]

HOSTS = ["d1", "d2", "w1", "w2", "client"]
TIMING = ["--heartbeat-interval", "0.2", "--heartbeat-timeout", "2"]


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
def bed() -> Iterator[TestBed]:
    test_bed = TestBed(HOSTS)
    try:
        yield test_bed.start()
    finally:
        test_bed.close()


def _address(bed: TestBed, host: str) -> str:
    return f"tcp://{bed.hosts[host].address}:{PORT}"


def _dispatcher(bed: TestBed, host: str, dsn: str) -> subprocess.Popen[bytes]:
    return bed.spawn(
        host,
        cli("dispatcher", "--bind", f"tcp://0.0.0.0:{PORT}", "--advertise-host",
            bed.hosts[host].address, "--ha", dsn, "--insecure", "--no-http", *TIMING),
    )  # fmt: skip


def _ask_raw(bed: TestBed, address: str) -> Any:
    """A status request to ``address`` alone (no following): what that dispatcher answers."""
    code = f"""
        import json, zmq
        from pydispatch.wire import protocol as p
        from pydispatch.wire.transport import make_socket, parse, recv_parts, send, split_envelope
        context = zmq.Context()
        sock = make_socket(context, zmq.DEALER)
        sock.connect({address!r})
        send(sock, p.StatusRequest())
        answer = {{"none": True}}
        if sock.poll(3000):
            reply, _ = parse(split_envelope(recv_parts(sock), routed=False)[1])
            if isinstance(reply, p.Error):
                answer = {{"error": reply.code, "message": reply.message}}
            else:
                answer = {{"workers": len(reply.workers)}}
        sock.close(linger=0)
        context.term()
        print(json.dumps(answer))
    """
    return bed.python("client", textwrap.dedent(code))


def _status(bed: TestBed, addresses: str) -> dict[str, Any]:
    code = f"""
        import json
        from pydispatch.runtime.client import fetch_status
        try:
            print(json.dumps({{"workers": len(fetch_status({addresses!r}, timeout=3).workers)}}))
        except (TimeoutError, ConnectionError) as error:
            print(json.dumps({{"error": str(error)}}))
    """
    found = bed.python("client", textwrap.dedent(code))
    assert isinstance(found, dict)
    return found


def test_workers_and_a_client_follow_the_standby_to_its_host_when_the_leader_dies(
    bed: TestBed, dsn: str, tmp_path: Path
) -> None:
    d1, d2 = _address(bed, "d1"), _address(bed, "d2")
    leader = _dispatcher(bed, "d1", dsn)
    eventually(lambda: _ask_raw(bed, d1).get("workers") == 0, "d1 leads", 60)
    _dispatcher(bed, "d2", dsn)
    # The standby, asked, answers with the leader's address.
    eventually(lambda: _ask_raw(bed, d2) == {"error": "not_leader", "message": d1}, "d2 answers")

    both = f"{d1},{d2}"
    bed.spawn("w1", cli("worker", both, "--slots", "2"))
    bed.spawn("w2", cli("worker", d2, "--slots", "2"))  # told of the standby only
    eventually(lambda: _status(bed, both).get("workers") == 2, "both workers at the leader", 60)
    # A look-up given the standby only is answered by the leader (the standby is followed).
    assert _status(bed, d2) == {"workers": 2}

    out_dir = tmp_path / "job"
    code = f"""
        import json, socket, time
        from pydispatch.runtime.client import Client
        from pydispatch.stream import StreamEnvironment
        def work(x):
            time.sleep(0.002)
            return x * x, socket.gethostname()
        def pair(x):
            time.sleep(0.004)
            return (x % 5, x)
        env = StreamEnvironment({both!r}, parallelism=2)  # a job, given both addresses
        env.set_network(master_timeout=2.0)
        keyed = env.from_collection(range(2_000)).map(pair).key_by(lambda kv: kv[0])
        keyed.reduce(lambda a, b: (a[0], a[1] + b[1])).write_text({str(out_dir)!r} + "/")
        handle = env.execute("ha-job")
        with Client({d2!r}, reconnect_timeout=60) as client:  # the standby's address only
            first = client._io.address
            results = client.map(work, range(3_000), chunksize=20)
            got = [next(results) for _ in range(300)]
            print("running", flush=True)
            got += list(results)
            handle.result(timeout=120)
            print(json.dumps({{"first": first, "last": client._io.address,
                              "squares": [square for square, _ in got],
                              "hosts": sorted({{host for _, host in got}}),
                              "job": handle.status()}}))
    """
    client = bed.python_started("client", textwrap.dedent(code))
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "running"
    os.kill(leader.pid, signal.SIGKILL)  # the leader only, in the middle of the map
    killed = time.monotonic()
    output, _ = client.communicate(timeout=180)
    done_after = time.monotonic() - killed
    assert client.returncode == 0
    out = json.loads(output.strip().splitlines()[-1])
    assert out["first"] == d1  # the standby named the leader
    assert out["last"] == d2  # and the client followed the new one to its host
    assert out["squares"] == [x * x for x in range(3_000)]
    assert set(out["hosts"]) <= {"w1", "w2"}
    # The job ran again from its sources on the new leader (kept in PostgreSQL): the reference.
    assert out["job"] == "FINISHED"
    lines = sorted(line for f in out_dir.iterdir() for line in f.read_text().splitlines())
    assert lines == sorted(str((k, sum(x for x in range(2_000) if x % 5 == k))) for k in range(5))

    # Both workers registered with the new leader (d2), one given both addresses, one only d2.
    eventually(lambda: _ask_raw(bed, d2).get("workers") == 2, "both workers at d2", 60)
    back_after = time.monotonic() - killed

    # The old leader started again is a standby naming the new one.
    _dispatcher(bed, "d1", dsn)
    eventually(lambda: _ask_raw(bed, d1) == {"error": "not_leader", "message": d2}, "d1 stands by")
    print(
        f"map done {done_after:.1f} s, both workers at d2 {back_after:.1f} s after the kill",
        file=sys.stderr,
    )
