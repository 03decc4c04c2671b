"""Hosts cut off the network during work. A worker's host: its tasks fail over to the other
hosts once the dispatcher's heartbeat timeout passes, every result arrives once, and the
worker registers again after the link heals. The dispatcher's host for 15 s: every worker
registers again soon after the heal (see ``runtime.reconnect``) and the work completes. The
client's host for longer than the client timeout: its queued tasks, dropped by the
dispatcher meanwhile, are sent again when it is back; nothing is lost. The cut takes the
host's port off the bridge (its packets vanish; no connection is told), as an unplugged cable
would.

A bed of its own (plain text; keys change nothing here), with short heartbeat and client
timeouts so that the module stays short. The tests print the times they measure to stderr
(figures for the closing note; nothing timed is asserted)."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from _support.multihost import WORKERS, address, start, status
from _support.netns import TestBed, have_netns
from _support.process_guard import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("netns"),  # pytest-xdist: one bed of hosts at a time
    pytest.mark.skipif(not have_netns(), reason="needs root, ip and unshare for namespaces"),
]

HEARTBEAT_TIMEOUT = 3.0
CLIENT_TIMEOUT = 4.0


@pytest.fixture(scope="module")
def bed() -> Iterator[TestBed]:
    test_bed = TestBed(["dispatcher", *WORKERS, "client"])
    try:
        options = ("--heartbeat-interval", "0.5", "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT))
        client_timeout = ("--client-timeout", str(CLIENT_TIMEOUT))
        yield start(test_bed, ["--insecure"], *options, *client_timeout)
    finally:
        test_bed.close()


def _names(bed: TestBed) -> list[str]:
    return sorted(worker["node"].split("@")[0] for worker in status(bed)["workers"])


def test_a_cut_worker_host_fails_over_and_comes_back_after_the_heal(bed: TestBed) -> None:
    code = f"""
        import json, socket, time
        from pydispatch.runtime.client import Client
        def work(x):
            time.sleep(0.05)
            return x, socket.gethostname()
        with Client({address(bed)!r}) as client:
            futures = [client.submit(work, i) for i in range(240)]
            futures[6].result(60)
            print("running", flush=True)
            results = [future.result(120) for future in futures]
        print(json.dumps(results))
    """
    client = bed.python_started("client", textwrap.dedent(code))
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "running"
    bed.link("w1", up=False)
    cut_at = time.monotonic()
    eventually(lambda: _names(bed) == ["w2", "w3"], "w1 removed as lost", 60)
    lost_after = time.monotonic() - cut_at
    output, _ = client.communicate(timeout=180)
    assert client.returncode == 0
    results = json.loads(output.strip().splitlines()[-1])
    # Every task's result once, in order, whatever ran where (some on w1 before the cut).
    assert [index for index, _ in results] == list(range(240))
    assert {host for _, host in results} <= set(WORKERS)

    bed.link("w1", up=True)
    healed_at = time.monotonic()
    eventually(lambda: _names(bed) == sorted(WORKERS), "w1 registered again", 60)
    back_after = time.monotonic() - healed_at
    # Figures for the closing note (no timing assertion: the machine is shared).
    print(f"lost after {lost_after:.1f} s, back {back_after:.1f} s after the heal", file=sys.stderr)


def test_work_completes_after_the_dispatchers_host_was_cut_for_15_s(bed: TestBed) -> None:
    eventually(lambda: _names(bed) == sorted(WORKERS), "every worker registered", 60)
    code = f"""
        import json, time
        from pydispatch.runtime.client import Client
        def work(x):
            time.sleep(0.05)
            return x * 2
        with Client({address(bed)!r}) as client:
            futures = [client.submit(work, i) for i in range(150)]
            futures[3].result(60)
            print("running", flush=True)
            results = [future.result(180) for future in futures]
            print("done", flush=True)
        print(json.dumps(results))
    """
    client = bed.python_started("client", textwrap.dedent(code))
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "running"
    bed.link("dispatcher", up=False)  # every worker and the client lose it at once
    time.sleep(15.0)  # how long the cut lasts (the scenario, not a wait for a condition)
    bed.link("dispatcher", up=True)
    healed_at = time.monotonic()
    eventually(lambda: _names(bed) == sorted(WORKERS), "every worker registered again", 60)
    back_after = time.monotonic() - healed_at
    output, _ = client.communicate(timeout=180)
    done_after = time.monotonic() - healed_at
    assert client.returncode == 0
    assert json.loads(output.strip().splitlines()[-1]) == [2 * i for i in range(150)]
    print(f"all back {back_after:.1f} s, done {done_after:.1f} s after the heal", file=sys.stderr)


def test_a_client_cut_off_longer_than_the_client_timeout_loses_nothing(bed: TestBed) -> None:
    eventually(lambda: _names(bed) == sorted(WORKERS), "every worker registered", 60)
    dropped_before = status(bed, "dispatcher")["cancelled"]
    code = f"""
        import json, time
        from pydispatch.runtime.client import Client
        def work(x):
            time.sleep(0.1)
            return x * 3
        with Client({address(bed)!r}) as client:
            futures = [client.submit(work, i) for i in range(150)]  # 5 s on 3 slots
            futures[3].result(60)
            print("running", flush=True)
            results = [future.result(180) for future in futures]
        print(json.dumps(results))
    """
    client = bed.python_started("client", textwrap.dedent(code))
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "running"
    bed.link("client", up=False)
    # The dispatcher presumes it gone after CLIENT_TIMEOUT and drops its queued tasks.

    def dropped() -> bool:  # asked from the dispatcher's host: the client's is cut off
        return bool(status(bed, "dispatcher").get("cancelled", 0) > dropped_before)

    eventually(dropped, "the client's queued tasks dropped", 60)
    time.sleep(3 * CLIENT_TIMEOUT)  # how long the cut lasts (the scenario)
    bed.link("client", up=True)
    healed_at = time.monotonic()
    output, _ = client.communicate(timeout=180)
    done_after = time.monotonic() - healed_at
    assert client.returncode == 0
    # Every result, none failed: what was dropped was sent again (and ran) after the heal.
    assert json.loads(output.strip().splitlines()[-1]) == [3 * i for i in range(150)]
    print(f"client back: done {done_after:.1f} s after the heal", file=sys.stderr)
