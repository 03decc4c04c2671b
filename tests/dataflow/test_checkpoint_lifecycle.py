"""What becomes of a job's checkpoints when it ends, on a real cluster (Flink's rule for
externalized checkpoints): a job that finishes leaves none behind; a cancelled one's are
removed, or kept with ``retain_on_cancellation`` (and a kept one restarts the job); a
savepoint is never removed."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest

from _support.process_guard import eventually
from pydispatch.dataflow.checkpoint_storage import read_checkpoint
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import FixedDelay, JobHandle, SplitSource, StreamEnvironment

CLUSTER = {"workers": 2, "slots": 1, "heartbeat_timeout": 3.0}
KEYS = 5
PER_SPLIT = 600


class Gated(SplitSource):
    """``PER_SPLIT`` records ``(key, 1)`` in each of two splits, slowly enough for
    checkpoints to complete; past the middle they wait for the file ``gate``."""

    def __init__(self, gate: str) -> None:
        self.gate = gate

    def splits(self) -> list[int]:
        return [0, 1]

    def read(self, split: int, position: Any) -> Iterator[Any]:
        i = position or 0
        while i < PER_SPLIT:
            if i >= PER_SPLIT // 2 and not os.path.exists(self.gate):
                time.sleep(0.02)
                yield None
                continue
            yield (f"k{(i + split) % KEYS}", 1), i + 1
            i += 1
            if i % 20 == 0:
                time.sleep(0.02)


def final_counts() -> list[tuple[str, int]]:
    counts = Counter(f"k{(i + s) % KEYS}" for s in range(2) for i in range(PER_SPLIT))
    return sorted(counts.items())


def start(
    cluster: LocalCluster, storage: Path, gate: Path, name: str, **config: Any
) -> tuple[JobHandle, int]:
    """The gated job, checkpointing every 0.2 s into ``storage``; its collect sink's id."""
    savepoint = config.pop("from_savepoint", "")
    env = StreamEnvironment(cluster, parallelism=2)
    env.enable_checkpointing(0.2, storage=str(storage), **config)
    env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=0.2))
    counted = env.from_source(Gated(str(gate))).key_by(lambda r: r[0]).sum(1)
    sink = counted._sink("Collect", {"sink": "collect", "columnar": False}).id
    handle = env.execute(name, from_savepoint=savepoint)
    assert isinstance(handle, JobHandle)
    return handle, sink


def completed(handle: JobHandle) -> int:
    figures: dict[str, Any] = handle.metrics()["checkpoints"]
    return int(figures["completed"])


def test_a_finished_job_leaves_no_checkpoint_but_its_savepoint(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    storage, gate = tmp_path / "chk", tmp_path / "gate"
    handle, sink = start(cluster, storage, gate, "finishes")
    eventually(lambda: completed(handle) >= 2, "two checkpoints", 60)
    assert any(storage.iterdir())  # the job's checkpoints are there while it runs
    where = handle.savepoint(tmp_path / "sp")
    gate.write_text("")
    result = handle.result(timeout=120)
    assert sorted(result.collected[sink]) == final_counts()
    assert list(storage.iterdir()) == []  # no directory of the job left behind
    assert read_checkpoint(where).checkpoint >= 1  # the savepoint stays


def test_a_cancelled_job_keeps_its_retained_checkpoints_when_asked_and_restarts_from_one(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    storage, gate = tmp_path / "chk", tmp_path / "gate"
    handle, _ = start(cluster, storage, gate, "kept", retained=2, retain_on_cancellation=True)
    eventually(lambda: completed(handle) >= 4, "four checkpoints", 60)
    handle.cancel()
    with pytest.raises(CancelledError):
        handle.result(timeout=60)
    [job_dir] = storage.iterdir()
    latest = handle.metrics()["checkpoints"]["latest"]
    # Checkpoints beyond ``retained`` were removed as newer ones completed.
    assert sorted(p.name for p in job_dir.iterdir()) == [f"chk-{latest - 1}", f"chk-{latest}"]
    assert (job_dir / f"chk-{latest}" / "_metadata").is_file()
    gate.write_text("")
    again, sink = start(
        cluster, tmp_path / "chk2", gate, "again", from_savepoint=str(job_dir / f"chk-{latest}")
    )
    assert sorted(again.result(timeout=120).collected[sink]) == final_counts()


def test_a_cancelled_job_loses_its_checkpoints_by_default_not_its_savepoint(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    storage, gate = tmp_path / "chk", tmp_path / "gate"
    handle, _ = start(cluster, storage, gate, "removed")
    eventually(lambda: completed(handle) >= 2, "two checkpoints", 60)
    where = handle.savepoint(tmp_path / "sp", stop=True)  # stop: cancelled after it
    with pytest.raises(CancelledError):
        handle.result(timeout=60)
    assert list(storage.iterdir()) == []  # (removed before the outcome is told)
    assert read_checkpoint(where).checkpoint >= 2
