"""A slice that cannot reach its job master, or the inbox of a peer on another host, fails its
job within seconds with an error naming the address and the worker's host (issue 14; see
``wire.addresses.await_connections``), rather than after deploy timeouts of a minute.

Hosts: a dispatcher and three workers' hosts (one slot each, so that the slices of a job
run on different hosts), each with a second address on an interface of its own that no other
host has a route to (as a container bridge's or a VPN's):

* the dispatcher binds every interface; a job's client reaches it at its internal address,
  so the job's master is advertised there (the address that client used): its slice
  cannot reach it;
* every worker is told to advertise its internal address (``--advertise-host``): its
  slices' inboxes are bound there, and the slice of another host cannot reach them.

Both jobs run at once with no restart; each client prints the error its job failed with.
Then a job reading a text file over HTTP at the dispatcher host's internal address fails as
soon as its slice checks the URL.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from _support.multihost import PORT, cli, range_server, status
from _support.netns import TestBed, have_netns
from _support.process_guard import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("netns"),  # pytest-xdist: one bed of hosts at a time
    pytest.mark.skipif(not have_netns(), reason="needs root, ip and unshare for namespaces"),
]

WORKERS: Final = ("w1", "w2", "w3")
# Reached by no other host.
INTERNAL: Final = {
    "dispatcher": "10.88.1.1",
    "w1": "10.88.2.2",
    "w2": "10.88.3.3",
    "w3": "10.88.4.4",
}


def _internal_address(bed: TestBed, host: str) -> None:
    """Give ``host`` a second address, on a veth pair of its own (both ends on the host)."""
    namespace = bed.hosts[host].namespace
    for args in (
        ["link", "add", "in0", "type", "veth", "peer", "in1"],
        ["addr", "add", f"{INTERNAL[host]}/24", "dev", "in0"],
        ["link", "set", "in0", "up"],
        ["link", "set", "in1", "up"],
    ):
        subprocess.run(["ip", "-n", namespace, *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def bed() -> Iterator[TestBed]:
    test_bed = TestBed(["dispatcher", *WORKERS])
    try:
        test_bed.start()
        for host in INTERNAL:
            _internal_address(test_bed, host)
        bind = f"tcp://0.0.0.0:{PORT}"
        test_bed.spawn("dispatcher", cli("dispatcher", "--bind", bind, "--insecure", "--no-http"))
        at = f"tcp://{test_bed.hosts['dispatcher'].address}:{PORT}"
        for worker in WORKERS:
            advertise = ["--advertise-host", INTERNAL[worker]]
            test_bed.spawn(worker, cli("worker", at, "--slots", "1", *advertise))
        eventually(
            lambda: len(status(test_bed, "dispatcher")["workers"]) == len(WORKERS), "workers", 60
        )
        yield test_bed
    finally:
        test_bed.close()


def _job(address: str, parallelism: int) -> str:
    """A keyed job (each slice sends to every other's inbox), no restart; it prints the
    error it failed with."""
    return textwrap.dedent(f"""
        import json
        from pydispatch.stream import NoRestart, StreamEnvironment
        env = StreamEnvironment({address!r}, parallelism={parallelism})
        env.set_restart_strategy(NoRestart)
        pairs = env.from_collection(list(range(1000))).map(lambda x: (x % 7, 1))
        pairs.key_by(0).sum(1).for_each(print)
        try:
            env.execute("unreachable").result(120)
            print(json.dumps("finished"))
        except Exception as error:
            print(json.dumps(f"{{type(error).__name__}}: {{error}}"))
    """)


def _answer(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0
    answer: str = json.loads(output.strip().splitlines()[-1])
    return answer


def test_slices_that_cannot_reach_the_master_or_a_peer_fail_naming_it(bed: TestBed) -> None:
    started = time.monotonic()
    # Its client uses the dispatcher's internal address: the master is advertised there.
    internal = f"tcp://{INTERNAL['dispatcher']}:{PORT}"
    to_master = bed.python_started("dispatcher", _job(internal, parallelism=1))
    # Its client uses the shared address: the master is reached, the other slices' not.
    shared = f"tcp://{bed.hosts['dispatcher'].address}:{PORT}"
    to_peer = bed.python_started("dispatcher", _job(shared, parallelism=2))

    master_error = _answer(to_master)
    assert master_error.startswith("JobFailedError"), master_error
    assert f"cannot reach the job master at {internal[: -len(str(PORT))]}" in master_error
    assert "(no connection within 10 s)" in master_error
    # From the worker's host, by the address it advertises.
    assert re.search(r"from 10\.88\.\d\.\d", master_error), master_error

    peer_error = _answer(to_peer)
    assert peer_error.startswith("JobFailedError"), peer_error
    unreached = re.search(
        r"cannot reach the inboxes of the next operators at tcp://(10\.88\.\d\.\d):\d+ "
        r"from (10\.88\.\d\.\d) \(no connection within 10 s\)",
        peer_error,
    )
    assert unreached, peer_error
    assert unreached[1] != unreached[2]  # another host's inbox
    print(f"both failed {time.monotonic() - started:.1f} s after submission", file=sys.stderr)


def test_a_source_url_a_worker_cannot_reach_fails_the_job_naming_it(
    bed: TestBed, tmp_path: Path
) -> None:
    """A text file served over HTTP at the dispatcher host's internal address: the job's
    client (on that host) sizes it, the worker's slice cannot connect, and the job fails at
    once with the URL and the reason (``dataflow.slice``'s path check, through fsspec)."""
    (tmp_path / "words.txt").write_text("alpha beta\n" * 100)
    range_server(bed, "dispatcher", 8765, str(tmp_path), str(tmp_path / "requests.log"))
    url = f"http://{INTERNAL['dispatcher']}:8765/words.txt"
    shared = f"tcp://{bed.hosts['dispatcher'].address}:{PORT}"
    code = textwrap.dedent(f"""
        import json
        from pydispatch.stream import NoRestart, StreamEnvironment
        env = StreamEnvironment({shared!r}, parallelism=1)
        env.set_restart_strategy(NoRestart)
        env.read_text({url!r}).for_each(print)
        try:
            env.execute("unreadable").result(120)
            print(json.dumps("finished"))
        except Exception as error:
            print(json.dumps(f"{{type(error).__name__}}: {{error}}"))
    """)
    error = _answer(bed.python_started("dispatcher", code))
    assert error.startswith("JobFailedError"), error
    assert f"cannot read {url}: ClientConnectorError" in error, error
