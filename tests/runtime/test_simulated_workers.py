"""The benchmarks' simulated workers (``bench/_simulated_workers.py``) against a real dispatcher
and a real Client: what bench_scale measures must be what real workers would cost."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path
from typing import Any

from _support.clusters import make_cluster
from _support.process_guard import eventually
from pydispatch.runtime.client import Client, fetch_status
from pydispatch.runtime.dispatcher import Dispatcher

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _simulated_workers import Counters, SimulatedWorkers

WORKERS = 20
TASKS = 300


def noop(x: Any = None) -> Any:
    return x


class _Running:
    """Simulated workers served by a thread of this process until stopped."""

    def __init__(self, address: str, count: int) -> None:
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.counters = Counters()
        self.taken: list[Counters] = []
        self._thread = threading.Thread(target=self._serve, args=(address, count), daemon=True)
        self._thread.start()

    def _serve(self, address: str, count: int) -> None:
        workers = SimulatedWorkers(address, count, slots=2)
        workers.connect()
        try:
            while not self._stop.is_set():
                workers.run_once(0.01)
                workers.retry_due()
                self.counters = workers.counters
        finally:
            self.taken.append(workers.take_counters())
            workers.close()

    def stop(self) -> Counters:
        self._stop.set()
        self._thread.join(30)
        return self.taken[0]


def test_simulated_workers_run_a_real_clients_tasks() -> None:
    with make_cluster(workers=0, job_masters=False) as cluster:
        simulated = _Running(cluster.address, WORKERS)
        try:
            eventually(
                lambda: len(fetch_status(cluster.address).workers) == WORKERS,
                "every simulated worker registered",
            )
            with cluster.client() as client:
                assert client.total_slots in (0, 2 * WORKERS)
                futures = [client.submit(noop, i) for i in range(TASKS)]
                # A no-op's result: the simulator runs nothing and answers None.
                assert [f.result(timeout=60) for f in futures] == [None] * TASKS
                for _ in range(20):  # lone tasks go through the dispatcher (no direct lane)
                    assert client.submit(noop).result(timeout=30) is None
            # Heartbeats flow: all still registered after more than the heartbeat timeout (1 s).
            eventually(lambda: simulated.counters.heartbeats > 15 * WORKERS, "heartbeats sent")
            status = fetch_status(cluster.address)
        finally:
            seen = simulated.stop()
    assert len(status.workers) == WORKERS
    assert {w.slots for w in status.workers} == {2}
    assert status.finished == TASKS + 20
    assert status.protocol_errors == 0
    assert status.failed == 0
    assert seen.registered == WORKERS
    assert seen.reregistered == 0
    assert seen.attempts == TASKS + 20
    assert 1 <= seen.runs <= seen.attempts
    assert seen.errors == []


def _serve(address: str) -> tuple[Dispatcher, threading.Thread]:
    dispatcher = Dispatcher(
        address, heartbeat_interval=0.1, heartbeat_timeout=1.0, job_masters=False
    )
    thread = threading.Thread(target=dispatcher.serve_forever, daemon=True)
    thread.start()
    return dispatcher, thread


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_simulated_workers_come_back_to_a_restarted_dispatcher() -> None:
    """A dispatcher restarts on the same address: every worker reconnects (at its own pace),
    is asked to register again by its first heartbeat, and takes work again."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    dispatcher, thread = _serve(address)
    simulated = _Running(address, WORKERS)
    try:
        eventually(lambda: len(fetch_status(address).workers) == WORKERS, "all registered")
        dispatcher.stop()
        thread.join(30)
        dispatcher, thread = _serve(address)
        eventually(lambda: len(fetch_status(address).workers) == WORKERS, "all back")
        with Client(address) as client:
            futures = [client.submit(noop, i) for i in range(TASKS)]
            assert [f.result(timeout=60) for f in futures] == [None] * TASKS
        status = fetch_status(address)
    finally:
        seen = simulated.stop()
        dispatcher.stop()
        thread.join(30)
    assert status.finished == TASKS
    assert status.protocol_errors == 0
    assert seen.reregistered >= WORKERS  # each was asked once at least
    assert seen.registered == WORKERS
    assert seen.errors == []
