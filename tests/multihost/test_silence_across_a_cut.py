"""A worker drops a silent connection after its dispatcher's heartbeat timeout and two pings
when that is longer than the default 12 s (issue 14; see ``runtime.reconnect``).

Two dispatchers on one host, each with a worker host of its own: ``short`` (timeout 3 s: its
worker keeps the 12 s floor) and ``long`` (timeout 40 s: 42 s). The dispatchers' host is cut
off for 16 s, longer than 12 s and shorter than the long timeout:

* the short dispatcher's worker drops its connection during the cut (it logs the loss before
  the heal) and registers again after the heal;
* the long dispatcher's worker keeps its connection through the cut: its slot, killed in
  the middle of a task during the cut, is reported lost (naming the task it ran) over that
  connection once TCP retransmits (some 25 s after the cut began), and the task's client
  hears that it failed. A worker dropping at 12 s (as before) lost that report in the dropped
  connection while the dispatcher, whose timeout had not passed, still counted the task as
  running: its client never heard (checked by hand with the limit put back at 12 s).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _support.multihost import cli, status
from _support.netns import TestBed, have_netns
from _support.process_guard import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("netns"),  # pytest-xdist: one bed of hosts at a time
    pytest.mark.skipif(not have_netns(), reason="needs root, ip and unshare for namespaces"),
]

PORTS = {"short": 5555, "long": 5556}
TIMEOUTS = {"short": 3.0, "long": 40.0}
WORKER_HOSTS = {"short": "w1", "long": "w2"}
CUT_S = 16.0  # above the 12 s floor (and its ping's second), below the long timeout
LOST = "lost the connection to the dispatcher"


def _address(bed: TestBed, which: str) -> str:
    return f"tcp://{bed.hosts['dispatcher'].address}:{PORTS[which]}"


@pytest.fixture(scope="module")
def logs() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pydispatch-silence-") as directory:
        yield Path(directory)


@pytest.fixture(scope="module")
def bed(logs: Path) -> Iterator[TestBed]:
    test_bed = TestBed(["dispatcher", *WORKER_HOSTS.values()])
    try:
        test_bed.start()
        for which, port in PORTS.items():
            timing = ["--heartbeat-interval", "0.5", "--heartbeat-timeout", str(TIMEOUTS[which])]
            test_bed.spawn(
                "dispatcher",
                cli("dispatcher", "--bind", f"tcp://0.0.0.0:{port}", "--insecure", "--no-http",
                    *timing),
            )  # fmt: skip
        for which, host in WORKER_HOSTS.items():
            # The worker's log in a file (the bed leaves its output alone).
            logged = ["sh", "-c", f'exec "$@" 2>{logs / host}', "sh"]
            worker = cli("worker", _address(test_bed, which), "--slots", "1")
            test_bed.spawn(host, [*logged, *worker])
        for which in PORTS:
            eventually(
                lambda which=which: len(_workers(test_bed, which)) == 1, f"{which}'s worker", 60
            )
        yield test_bed
    finally:
        test_bed.close()


def _workers(bed: TestBed, which: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = status(bed, "dispatcher", _address(bed, which))["workers"]
    return found


def test_a_worker_drops_a_silent_connection_only_after_its_dispatchers_timeout(
    bed: TestBed, logs: Path
) -> None:
    marker = logs / "started"
    code = f"""
        import json, os, time
        from pydispatch.runtime.client import Client
        def hangs(marker):
            with open(marker + ".part", "w") as file:
                file.write(str(os.getpid()))
            os.rename(marker + ".part", marker)
            time.sleep(600)
        with Client({_address(bed, "long")!r}) as client:
            try:
                client.submit(hangs, {str(marker)!r}).result(90)
            except Exception as error:
                print(json.dumps(f"{{type(error).__name__}}: {{error}}"))
    """
    client = bed.python_started("dispatcher", textwrap.dedent(code))  # not cut: its host
    eventually(marker.exists, "the task started on the long dispatcher's worker", 60)
    before = {host: (logs / host).read_text() for host in WORKER_HOSTS.values()}
    assert LOST not in before["w1"]
    assert LOST not in before["w2"]

    bed.link("dispatcher", up=False)
    cut_at = time.monotonic()
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the slot, during the cut
    time.sleep(CUT_S)  # how long the cut lasts (the scenario, not a wait for a condition)
    during = {host: (logs / host).read_text() for host in WORKER_HOSTS.values()}
    bed.link("dispatcher", up=True)
    healed_at = time.monotonic()

    # The short timeout's worker dropped its connection during the cut, the long one's not.
    assert LOST in during["w1"], during["w1"]
    assert LOST not in during["w2"], during["w2"]
    eventually(lambda: len(_workers(bed, "short")) == 1, "the short one's worker back", 60)
    back_after = time.monotonic() - healed_at
    # Its report of the killed slot (naming the task it ran) came through: the task failed.
    output, _ = client.communicate(timeout=180)
    assert client.returncode == 0
    answer = json.loads(output.strip().splitlines()[-1])
    assert answer.startswith("TaskFailedError: the slot process running this task died"), answer
    done_after = time.monotonic() - healed_at
    assert len(_workers(bed, "long")) == 1
    assert LOST not in (logs / "w2").read_text()  # it never lost the connection
    print(  # figures for the closing note (nothing timed is asserted)
        f"cut {healed_at - cut_at:.1f} s; short's worker back {back_after:.1f} s, the long"
        f" one's task done {done_after:.1f} s after the heal",
        file=sys.stderr,
    )
