"""What surviving the dispatcher's death costs and how fast it is (issue 15).

Run: ``PYTHONPATH=src python -m pytest bench/bench_durability.py -q -s``

* Job submission latency with the job store (``execute()`` until the job's master has deployed
  it: the store's write is on that path, before the dispatcher lets the master start) against
  the same cluster without a store, in the same run; and the store's write alone.
* Time from ``kill -9`` of the dispatcher to everyone on the new one (started again at once on
  the same address): every worker registered again, the client's unresolved tasks sent again
  (its first hello answered with the new epoch), and the tasks outstanding at the kill resolved.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import cloudpickle
import numpy as np

from pydispatch.runtime.client import Client
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.runtime.job_store import JobRecord, SqliteJobStore
from pydispatch.stream import StreamEnvironment
from pydispatch.wire.transport import dumps

cloudpickle.register_pickle_by_value(sys.modules[__name__])

JOBS = 40  # submissions timed per configuration
RESTARTS = 3


def _percentiles(samples: list[float]) -> str:
    p50, p99 = np.percentile(samples, [50, 99]) * 1e3
    return f"p50 {p50:.1f} ms p99 {p99:.1f} ms"


def _submission_latencies(cluster: LocalCluster) -> list[float]:
    samples = []
    for i in range(JOBS + 3):
        env = StreamEnvironment(cluster, parallelism=1)
        env.from_collection([1, 2, 3]).for_each(lambda x: None)
        start = time.perf_counter()
        handle = env.execute(f"tiny-{i}")
        if i >= 3:  # the first few warm the launcher and the planner
            samples.append(time.perf_counter() - start)
        handle.result(timeout=60)
    return samples


def bench_job_submission_latency_with_the_store(benchmark: Any) -> None:
    with LocalCluster(workers=1, slots=2, keep_jobs=False) as bare:
        without = _submission_latencies(bare)
    with LocalCluster(workers=1, slots=2) as durable:
        durable_samples: list[float] = []
        benchmark.pedantic(
            lambda: durable_samples.extend(_submission_latencies(durable)), rounds=1, iterations=1
        )
    ratio = statistics.median(durable_samples) / statistics.median(without)
    print(
        f"\n[job submission] with the store {_percentiles(durable_samples)} | without "
        f"{_percentiles(without)} | median ratio {ratio:.2f}x"
    )


def bench_job_store_write(benchmark: Any) -> None:
    env = StreamEnvironment(parallelism=1)
    env.from_collection(list(range(100))).map(lambda x: x * 2).for_each(lambda x: None)
    frames: list[Any] = []
    header = dumps(env.job_graph, frames, inline_limit=0)
    payload = (bytes(header.data), [bytes(f) for f in frames])
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteJobStore(os.path.join(directory, "jobs.sqlite3"))
        samples: list[float] = []
        count = iter(range(1_000_000))

        def write() -> None:
            job_id = f"job-{next(count)}"
            start = time.perf_counter()
            store.add(JobRecord(job_id, "bench", b"peer", 0, "ACCEPTED", 1), payload)
            samples.append(time.perf_counter() - start)

        benchmark.pedantic(write, rounds=300, iterations=1)
        store.close()
    size = len(payload[0]) + sum(len(f) for f in payload[1])
    print(f"\n[job store write, {size} B payload, fsync on] {_percentiles(samples)}")


def _restart_once(cluster: LocalCluster, client: Client) -> tuple[float, float, float]:
    outstanding = [client.submit(time.sleep, 0.3) for _ in range(6)]
    while not any(f.running() for f in outstanding):
        time.sleep(0.005)
    epoch = client._io._epoch
    killed = time.perf_counter()
    cluster.restart_dispatcher()
    workers_back = client_back = None
    while workers_back is None or client_back is None:
        now = time.perf_counter()
        if client_back is None and client._io._epoch != epoch:
            client_back = now - killed
        if workers_back is None:
            try:
                if len(client.status(timeout=1.0).workers) == 2:
                    workers_back = time.perf_counter() - killed
            except Exception:
                pass
        time.sleep(0.005)
    for future in outstanding:
        future.result(timeout=60)
    return workers_back, client_back, time.perf_counter() - killed


def bench_kill_9_to_everyone_on_the_new_dispatcher(benchmark: Any) -> None:
    with LocalCluster(workers=2, slots=1) as cluster, cluster.client() as client:
        client.submit(abs, -1).result(timeout=30)
        times: list[tuple[float, float, float]] = []
        benchmark.pedantic(
            lambda: times.append(_restart_once(cluster, client)), rounds=RESTARTS, iterations=1
        )
    workers, clients, tasks = (sorted(column) for column in zip(*times, strict=True))
    print(
        f"\n[kill -9 -> new dispatcher, {RESTARTS} restarts] workers registered again "
        f"{min(workers):.2f}-{max(workers):.2f} s | client resubmitted "
        f"{min(clients):.2f}-{max(clients):.2f} s | outstanding tasks resolved "
        f"{min(tasks):.2f}-{max(tasks):.2f} s"
    )


def bench_standby_takeover(benchmark: Any) -> None:
    """kill -9 of the leader (PostgreSQL, two dispatchers on one address) to the standby
    listening, the workers registered with it and the client's tasks sent again."""
    import signal
    import socket
    import subprocess

    from _support.postgres import throwaway_postgres

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    timing = ["--heartbeat-interval", "0.2", "--heartbeat-timeout", "2"]

    def start(*args: str) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "pydispatch.cli", *args]
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)

    times: list[tuple[float, float, float]] = []
    with throwaway_postgres() as dsn:
        dispatchers = [start("dispatcher", "--bind", address, "--ha", dsn, *timing)]
        assert dispatchers[0].stdout is not None
        dispatchers[0].stdout.readline()
        workers = [start("worker", address) for _ in range(2)]
        try:
            client = Client(address)
            while len(client.status().workers) < 2:
                time.sleep(0.05)

            def takeover() -> None:
                standby = start("dispatcher", "--bind", address, "--ha", dsn, *timing)
                assert standby.stdout is not None
                standby.stdout.readline()  # "standby: ..."
                dispatchers.append(standby)
                outstanding = [client.submit(time.sleep, 0.2) for _ in range(4)]
                epoch = client._io._epoch
                killed = time.perf_counter()
                os.kill(dispatchers[-2].pid, signal.SIGKILL)
                standby.stdout.readline()  # "listening on ..."
                listening = time.perf_counter() - killed
                while client._io._epoch == epoch:
                    time.sleep(0.005)
                resubmitted = time.perf_counter() - killed
                for future in outstanding:
                    future.result(timeout=60)
                times.append((listening, resubmitted, time.perf_counter() - killed))

            benchmark.pedantic(takeover, rounds=RESTARTS, iterations=1)
            client.shutdown()
        finally:
            for process in dispatchers + workers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    listening, resubmitted, resolved = (sorted(c) for c in zip(*times, strict=True))
    print(
        f"\n[standby takeover, {RESTARTS} kills of the leader, heartbeat interval 0.2 s] standby "
        f"listening {min(listening):.2f}-{max(listening):.2f} s | client resubmitted "
        f"{min(resubmitted):.2f}-{max(resubmitted):.2f} s | outstanding tasks resolved "
        f"{min(resolved):.2f}-{max(resolved):.2f} s"
    )
