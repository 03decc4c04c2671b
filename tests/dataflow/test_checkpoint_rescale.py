"""A count-positioned source (a parallel factory) restored from a savepoint at another
parallelism on a real cluster: the old subtasks' splits are dealt out to the new ones, each
read on from its count; the results are the uninterrupted run's."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest

from _support.process_guard import eventually
from pydispatch.dataflow.checkpoint_storage import read_checkpoint
from pydispatch.dataflow.snapshots import load_snapshot
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import FixedDelay, JobHandle, StreamEnvironment

CLUSTER = {"workers": 3, "slots": 1, "heartbeat_timeout": 3.0}
PER_SUBTASK = 400
KEYS = 7


def records(index: int, parallelism: int, pace: float) -> Iterator[Any]:
    """Subtask ``index`` of ``parallelism``'s records (the same on every call)."""
    for i in range(PER_SUBTASK):
        yield f"k{(i * 3 + index) % KEYS}", 1
        if pace:
            time.sleep(pace)


def reference() -> list[tuple[str, int]]:
    counts = Counter(f"k{(i * 3 + j) % KEYS}" for j in range(2) for i in range(PER_SUBTASK))
    return sorted(counts.items())


def run(
    cluster: LocalCluster, tmp_path: Path, parallelism: int, pace: float, savepoint: str = ""
) -> tuple[JobHandle, int, int]:
    env = StreamEnvironment(cluster, parallelism=parallelism)
    env.enable_checkpointing(0.3, storage=str(tmp_path / f"chk-{parallelism}"))
    env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=0.2))

    def factory(index: int, parallelism: int) -> Iterator[Any]:
        return records(index, parallelism, pace)

    source = env.from_source(factory, parallel=True)
    counted = source.key_by(lambda r: r[0]).sum(1)
    sink = counted._sink("Collect", {"sink": "collect", "columnar": False}).id
    handle = env.execute(f"factory at {parallelism}", from_savepoint=savepoint)
    assert isinstance(handle, JobHandle)
    return handle, source.operator.id, sink


def test_a_parallel_factory_restores_from_a_savepoint_at_3_and_at_1(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    handle, source, _ = run(cluster, tmp_path, 2, pace=0.005)

    def emitted() -> int:
        return int(handle.metrics()["records_out"].get(source, 0))

    eventually(lambda: emitted() >= PER_SUBTASK // 2, "part of the input read", 60)
    where = handle.savepoint(tmp_path / "sp", stop=True)
    with pytest.raises(CancelledError):
        handle.result(timeout=60)
    stored = read_checkpoint(where)
    positions = [load_snapshot(b).position for b in stored.snapshots.values()]
    counts = [p for p in positions if p is not None]
    assert len(counts) == 2
    assert all(0 < c < PER_SUBTASK for c in counts)  # both splits read part way
    for parallelism in (3, 1):  # more subtasks than old splits, then fewer
        again, _, sink = run(cluster, tmp_path, parallelism, pace=0.0, savepoint=where)
        assert sorted(again.result(timeout=120).collected[sink]) == reference()
        assert again.metrics()["checkpoints"]["restored_from"] == where
