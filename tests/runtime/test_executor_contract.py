"""The Executor contract, exactly, and a dispatcher that goes away: ``pydispatch.Client``
behaves as the standard library's executors do (cancel, wait, shutdown, interpreter exit,
nothing kept alive, a lazy ``map``), and never waits forever for a silent dispatcher.

Real clusters (``make_cluster``) and, for interpreter exit, real subprocesses.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from _support.clusters import make_cluster
from _support.process_guard import eventually

# Functions defined here travel by value: slot processes cannot import this test module.


def wait_for_file(path: str, value: object = None) -> object:
    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def touch(path: str) -> str:
    Path(path).touch()
    return path


def add(a: int, b: int = 0) -> int:
    return a + b


class Box:
    """Weak-referenceable: the tests watch whether the client keeps one alive."""

    def __init__(self, value: int) -> None:
        self.value = value

    def plus(self, other: int) -> int:
        return self.value + other


def boxed(value: int) -> Box:
    return Box(value)


def test_a_cancelled_future_completes_for_wait_as_completed_and_shutdown(tmp_path: Path) -> None:
    with make_cluster(1, 1) as cluster:
        client = cluster.client()
        gate = str(tmp_path / "gate")
        blocker = client.submit(wait_for_file, gate)
        eventually(blocker.running, "the slot is busy")
        pending = client.submit(add, 1)
        assert pending.cancel()
        assert pending._state == "CANCELLED_AND_NOTIFIED"  # as an executor notifies
        done, not_done = cf.wait([pending], timeout=10)
        assert done == {pending}
        assert not not_done
        assert list(cf.as_completed([pending], timeout=10)) == [pending]
        assert pending.cancel()  # cancelling again: still True, nothing changes
        # shutdown(cancel_futures=True) cancels what has not started and returns once the
        # running task is done (it used to deadlock on the cancelled futures).
        more = [client.submit(add, i) for i in range(5)]
        shut = threading.Thread(target=client.shutdown, kwargs={"cancel_futures": True})
        shut.start()
        eventually(lambda: all(f.cancelled() for f in more), "the pending ones cancelled")
        Path(gate).touch()
        shut.join(timeout=20)
        assert not shut.is_alive()
        assert blocker.result(timeout=0) is None
        assert not client._thread.is_alive()


def test_a_task_prefetched_to_a_busy_slot_is_cancelled_and_never_runs(tmp_path: Path) -> None:
    """With the default prefetch, tasks wait in the slot's own queue behind its running task:
    they have not started, so cancel() is True and the slot skips them."""
    with make_cluster(1, 1) as cluster:
        client = cluster.client()
        gate = str(tmp_path / "gate")
        blocker = client.submit(wait_for_file, gate, "blocker")
        eventually(blocker.running, "the slot runs the blocker")
        markers = [str(tmp_path / f"marker-{i}") for i in range(6)]
        waiting = [client.submit(touch, marker) for marker in markers]
        # Some reach the slot's queue (as many as its prefetch allows; the rest stay queued at
        # the dispatcher): both kinds are cancelled.
        eventually(lambda: client.status().running >= 2, "tasks prefetched to the slot")
        assert not any(f.running() for f in waiting)
        assert all(f.cancel() for f in waiting)
        assert all(f.cancelled() for f in waiting)
        Path(gate).touch()
        assert blocker.result(timeout=30) == "blocker"
        # The slot goes on with later work; the cancelled tasks never ran.
        after = str(tmp_path / "after")
        assert client.submit(touch, after).result(timeout=30) == after
        assert not [m for m in markers if os.path.exists(m)]
        eventually(lambda: client.status().running == 0, "the slot's places freed")
        client.shutdown()


def test_client_cancel_without_force_is_future_cancel(tmp_path: Path) -> None:
    with make_cluster(1, 1) as cluster:
        client = cluster.client()
        gate = str(tmp_path / "gate")
        running = client.submit(wait_for_file, gate, "done")
        eventually(running.running, "the task started")
        pending = client.submit(add, 1)
        assert client.cancel(running) is False  # running: it goes on
        assert not running.cancelled()
        assert client.cancel(pending) is True
        assert pending.cancelled()
        assert client.cancel(pending) is False  # done already
        Path(gate).touch()
        assert running.result(timeout=20) == "done"
        client.shutdown()


def test_the_client_keeps_no_function_argument_or_result_alive() -> None:
    with make_cluster(1, 1) as cluster:
        client = cluster.client()
        box = Box(40)
        method = box.plus  # one bound method object, submitted repeatedly (cached)
        assert client.submit(method, 2).result(timeout=20) == 42
        assert client.submit(method, 1).result(timeout=20) == 41
        argument = Box(1)
        future = client.submit(getattr, argument, "value")
        assert future.result(timeout=20) == 1
        result_future = client.submit(boxed, 7)
        result = result_future.result(timeout=20)
        watched = [weakref.ref(box), weakref.ref(argument), weakref.ref(result)]
        del box, method, argument, future, result, result_future
        gc.collect()
        assert [ref() for ref in watched] == [None, None, None]
        # map: an item yielded is not kept (here mid-chunk, with the iterator still alive).
        items = client.map(boxed, range(100), chunksize=50)
        first = next(items)
        first_ref = weakref.ref(first)
        del first
        gc.collect()
        assert first_ref() is None
        assert [b.value for b in items] == list(range(1, 100))
        client.shutdown()


def test_map_reads_its_input_lazily_and_still_batches() -> None:
    read = [0]

    def huge() -> Iterator[int]:
        for i in range(100_000_000):
            read[0] = i + 1
            yield i

    with make_cluster(1, 1) as cluster:
        client = cluster.client()
        results = client.map(add, huge(), chunksize=10, buffersize=2)
        assert read[0] == 20  # two chunks out at once, submitted at the call
        assert [next(results) for _ in range(15)] == list(range(15))
        assert read[0] <= 40  # one more chunk per chunk yielded
        del results  # the chunks out are cancelled
        # Automatic chunks for an input of unknown length: bounded, and still batched.
        read[0] = 0
        before = client.status().finished
        lazy = client.map(add, huge())
        assert next(lazy) == 0
        assert read[0] < 100_000  # not materialised
        del lazy
        read[0] = 0
        assert list(client.map(add, (i for i in range(20_000)))) == list(range(20_000))
        tasks = client.status().finished - before
        assert tasks <= 60  # chunks, not 20 000 tasks
        with pytest.raises(ValueError, match="buffersize"):
            client.map(add, [1], buffersize=0)
        client.shutdown()


_EXIT_SCRIPT = """
import sys, time
from pydispatch import Client

def slow(i):
    import time
    time.sleep(0.2)
    return i * 10

client = Client(sys.argv[1])
futures = [client.submit(slow, i) for i in range(4)]
for f in futures:
    f.add_done_callback(lambda f: print("result", f.result(), flush=True))
idle = [Client(sys.argv[1]) for _ in range(3)]  # never used, never closed either
# ...and the end of the module: the futures must still be done, without a traceback.
"""

_LATE_SCRIPT = """
import atexit, sys
from pydispatch import Client

client = Client(sys.argv[1])

@atexit.register
def late():
    try:
        client.submit(print, "ran")
    except RuntimeError as error:
        print("refused:", error, flush=True)
"""


def _run_script(source: str, address: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), address],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_falling_off_the_end_of_main_still_gets_pending_futures_done() -> None:
    with make_cluster(1, 1) as cluster:
        done = _run_script(_EXIT_SCRIPT, cluster.address)
        assert done.returncode == 0, done.stderr
        assert sorted(done.stdout.splitlines()) == [f"result {i * 10}" for i in range(4)]
        assert "Traceback" not in done.stderr
        assert "Bad file descriptor" not in done.stderr
        assert cluster.client().status().finished == 4


def test_submit_after_interpreter_shutdown_began_raises() -> None:
    with make_cluster(1, 1) as cluster:
        done = _run_script(_LATE_SCRIPT, cluster.address)
        assert done.returncode == 0, done.stderr
        assert (
            done.stdout.strip() == "refused: cannot schedule new futures after interpreter shutdown"
        )
        assert "Traceback" not in done.stderr


def test_a_dispatcher_that_stops_answering_fails_the_futures_after_reconnect_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with make_cluster(1, 1) as cluster:
        client = cluster.client(reconnect_timeout=2.0)
        stuck = client.submit(wait_for_file, str(tmp_path / "never"))
        eventually(stuck.running, "the task started")
        caplog.set_level(logging.WARNING, logger="pydispatch.runtime.client_io")
        os.kill(cluster.dispatcher.pid, signal.SIGSTOP)
        try:
            error = stuck.exception(timeout=30)  # a liveness bound: it does fail
        finally:
            os.kill(cluster.dispatcher.pid, signal.SIGCONT)
        assert isinstance(error, ConnectionError)
        assert cluster.address in str(error)
        assert "did not answer for" in str(error)
        assert any("has not answered" in r.getMessage() for r in caplog.records)
        # The dispatcher is back: the client goes on working.
        assert client.submit(add, 1, 2).result(timeout=20) == 3
        with pytest.raises(ValueError, match="reconnect_timeout"):
            cluster.client(reconnect_timeout=0)
