"""Checkpoint benchmarks on a 2-worker LocalCluster (issue 17).

Run: ``PYTHONPATH=src python -m pytest bench/bench_checkpoints.py -q -s --benchmark-disable-gc``
(``-s`` shows the figures). Groups:

- throughput of a streaming keyed running count (a split source of ``(key, 1)`` records,
  ``key_by().sum(1)``, ``write_text``) with checkpoints every second (two-phase sink) against
  the same job without checkpoints (plain files), measured in the same run: the ratio is the
  cost of checkpointing;
- a small bounded job's submit-to-result time with checkpoints (its sinks commit with the
  final checkpoint, triggered once every slice has ended) against none (commit at the end);
- one checkpoint of 1M keys of keyed state: its duration (trigger to the last
  acknowledgement, from the job's metrics) and stored size, and the recovery after a worker is
  killed (SIGKILL): seconds from the kill to the first checkpoint completed by the restored
  job (heartbeat timeout, restart delay, restore and one checkpoint interval included), and the
  restore of the state alone (``SubtaskRunner.restore_state`` of the 1M keys' snapshot).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

from pydispatch.dataflow.checkpoint_storage import CheckpointStorage
from pydispatch.dataflow.snapshots import load_snapshot
from pydispatch.dataflow.subtask import SubtaskRunner
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import FixedDelay, JobHandle, SplitSource, StreamEnvironment

cloudpickle.register_pickle_by_value(sys.modules[__name__])

RECORDS = 4_000_000
KEYS = 1_000


class Counting(SplitSource):
    """``per_split`` records ``(key, 1)`` per split; ``idle``: then nothing, for ever."""

    bounded = False

    def __init__(self, per_split: int, keys: int, idle: bool = False) -> None:
        self.per_split = per_split
        self.keys = keys
        self.idle = idle

    def splits(self) -> list[int]:
        return [0, 1]

    def read(self, split: int, position: Any) -> Iterator[Any]:
        keys = self.keys
        for i in range(position or 0, self.per_split):
            yield ((i * 2 + split) % keys, 1), i + 1
        while self.idle:
            time.sleep(0.05)
            yield None


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(workers=2, slots=1, heartbeat_interval=0.2, heartbeat_timeout=2.0) as c:
        yield c


def _running_count(cluster: LocalCluster, checkpoints: bool, out: str) -> JobHandle:
    env = StreamEnvironment(cluster, parallelism=2)
    if checkpoints:
        env.enable_checkpointing(1.0, storage=os.path.join(out, "chk"))
    source = Counting(RECORDS // 2, KEYS)
    env.from_source(source).key_by(lambda r: r[0]).sum(1).write_text(os.path.join(out, "o"))
    handle = env.execute("running count")
    assert isinstance(handle, JobHandle)
    handle.result(timeout=600)
    return handle


@pytest.mark.parametrize("checkpoints", [False, True], ids=["none", "every 1 s"])
def bench_running_count(
    benchmark: Any, record: Any, cluster: LocalCluster, checkpoints: bool
) -> None:
    handles: list[JobHandle] = []

    def job() -> None:
        with tempfile.TemporaryDirectory() as out:
            handles.append(_running_count(cluster, checkpoints, out))

    benchmark.pedantic(job, rounds=3, iterations=1, warmup_rounds=1)
    name = "checkpoints every 1 s" if checkpoints else "no checkpoints"
    record("keyed running count, 4M records", name, RECORDS, baseline=not checkpoints)
    if checkpoints:
        figures = handles[-1].metrics()["checkpoints"]
        print(f"\n  checkpoints per run: {figures['completed']}")


def _bounded_sum(cluster: LocalCluster, checkpoints: bool, out: str) -> None:
    env = StreamEnvironment(cluster, parallelism=2)
    if checkpoints:  # an interval longer than the job: its only checkpoint is the final one
        env.enable_checkpointing(30.0, storage=os.path.join(out, "chk"))
    records = [(i % KEYS, 1) for i in range(BOUNDED_RECORDS)]
    env.from_collection(records).key_by(lambda r: r[0]).sum(1).write_text(os.path.join(out, "o"))
    handle = env.execute("bounded sum")
    assert isinstance(handle, JobHandle)
    handle.result(timeout=600)


BOUNDED_RECORDS = 200_000


@pytest.mark.parametrize("checkpoints", [False, True], ids=["none", "final checkpoint"])
def bench_bounded_job_end(
    benchmark: Any, record: Any, cluster: LocalCluster, checkpoints: bool
) -> None:
    """A small bounded batch job, submit to result: with checkpoints its sinks commit with
    the final checkpoint (triggered once every slice ended), without them at end of input."""

    def job() -> None:
        with tempfile.TemporaryDirectory() as out:
            _bounded_sum(cluster, checkpoints, out)

    benchmark.pedantic(job, rounds=5, iterations=1, warmup_rounds=1)
    name = "final checkpoint" if checkpoints else "no checkpoints"
    record("bounded keyed sum, 200k records", name, BOUNDED_RECORDS, baseline=not checkpoints)


def bench_one_million_keys(benchmark: Any, cluster: LocalCluster) -> None:
    """A checkpoint of 1M keys, then the job's recovery after a kill of a worker."""
    keys = 1_000_000
    with tempfile.TemporaryDirectory() as out:
        storage = os.path.join(out, "chk")
        env = StreamEnvironment(cluster, parallelism=2)
        env.enable_checkpointing(2.0, storage=storage, timeout=120, retain_on_cancellation=True)
        env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=0.2))
        source = Counting(keys // 2, keys, idle=True)
        summed = env.from_source(source).key_by(lambda r: r[0]).sum(1)
        counter = summed.operator.id
        summed.for_each(lambda r: None)
        handle = env.execute("1M keys")
        assert isinstance(handle, JobHandle)

        def figures() -> dict[str, Any]:
            result: dict[str, Any] = handle.metrics()["checkpoints"]
            return result

        def wait(condition: Any, timeout: float = 600) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                assert time.monotonic() < deadline, "the job never got there"
                time.sleep(0.05)

        wait(lambda: handle.metrics()["records_in"].get(counter, 0) >= keys)
        done = figures()["completed"]
        wait(lambda: figures()["completed"] > done)  # a checkpoint of every key
        checkpoint = figures()
        print(
            f"\n  1M keys: checkpoint {checkpoint['last_duration']:.2f} s, "
            f"{checkpoint['last_size'] / 1e6:.1f} MB stored"
        )
        victim = next(w for w in cluster.workers if w.poll() is None)
        killed = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        cluster.start_worker(name=f"replacement-{victim.pid}")
        done = figures()["completed"]
        wait(lambda: figures()["completed"] > done and handle.metrics()["restarts"] >= 1)
        print(f"  recovery: {time.monotonic() - killed:.2f} s from the kill to a checkpoint")
        handle.cancel()

        stored = CheckpointStorage(storage, handle.job_id).latest()
        assert stored is not None
        olds = [load_snapshot(data) for data in stored.snapshots.values()]
        parts = {op: [s.keyed[op] for s in olds if op in s.keyed] for o in olds for op in o.keyed}
        plan = env.execution_graph()
        chain = next(c.id for c in plan.chains if counter in c.operators)

        def restore() -> None:
            runner = SubtaskRunner(plan, chain, 0, lambda e, i, b: None)
            runner.restore_state(parts)

        benchmark.pedantic(restore, rounds=3, iterations=1)
        print(f"  restore of subtask 0's key groups: {benchmark.stats.stats.min:.2f} s")
