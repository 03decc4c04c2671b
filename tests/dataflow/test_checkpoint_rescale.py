"""Count-positioned sources restored from a savepoint at another parallelism on a real
cluster: a parallel factory (the old subtasks' splits are dealt out to the new ones, each read
on from its count), and collections (in memory and spilled to /dev/shm) and arrays (mapped
from /dev/shm): what the old subtasks left unread is read by record number by the new
subtask whose split holds it; the results are the uninterrupted run's."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _support.process_guard import eventually
from pydispatch.dataflow import handle as job_handle
from pydispatch.dataflow.checkpoint_storage import read_checkpoint
from pydispatch.dataflow.positions import RowRanges
from pydispatch.dataflow.snapshots import Snapshot, load_snapshot
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


# -- collections: 2 -> 3 -> 1, each run stopped by a savepoint part way -------------------

SMALL = [(f"k{i % KEYS}", i) for i in range(1_000)]  # shipped with each slice
LARGE = [(f"k{i % KEYS}", i) for i in range(job_handle.SPILL_ELEMENTS + 2_000)]  # /dev/shm


def collections_reference() -> list[tuple[str, int]]:
    sums: Counter[str] = Counter()
    for key, value in SMALL + LARGE:
        sums[key] += value
    return sorted(sums.items())


def run_collections(
    cluster: LocalCluster, tmp_path: Path, parallelism: int, pace: float, savepoint: str = ""
) -> tuple[JobHandle, list[int], int]:
    env = StreamEnvironment(cluster, parallelism=parallelism)
    env.set_network(batch_records=20)  # many batches: positions part way
    env.enable_checkpointing(0.3, storage=str(tmp_path / f"chk-{parallelism}"))
    env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=0.2))

    def slow(scale: float) -> Any:
        def step(record: Any) -> Any:
            if pace:
                time.sleep(pace * scale)
            return record

        return step

    small = env.from_collection(SMALL)
    large = env.from_collection(LARGE)
    # Paced in their sources' chains, so that both are part read at a savepoint.
    paced = small.map(slow(len(LARGE) / len(SMALL))).union(large.map(slow(1.0)))
    summed = paced.key_by(lambda r: r[0]).sum(1)
    sink = summed._sink("Collect", {"sink": "collect", "columnar": False}).id
    handle = env.execute(f"collections at {parallelism}", from_savepoint=savepoint)
    assert isinstance(handle, JobHandle)
    return handle, [small.operator.id, large.operator.id], sink


def stop_part_way(
    handle: JobHandle, sources: list[int], path: Path, least: tuple[int, ...] = (40, 400)
) -> list[Snapshot]:
    """Once each source emitted ``least`` records, a savepoint with stop; its snapshots."""

    def emitted(source: int) -> int:
        return int(handle.metrics()["records_out"].get(source, 0))

    wanted = dict(zip(sources, least, strict=True))
    eventually(lambda: all(emitted(s) >= n for s, n in wanted.items()), "part read", 60)
    where = handle.savepoint(path, stop=True)
    with pytest.raises(CancelledError):
        handle.result(timeout=60)
    return [load_snapshot(b) for b in read_checkpoint(where).snapshots.values()]


def left_unread(snapshots: list[Snapshot], source: int, total: int) -> int:
    """How many of the source's records no subtask had emitted at the savepoint."""
    held = [s for s in snapshots if source in s.ops]
    left = 0
    for s in held:
        if isinstance(s.position, RowRanges):
            left += sum(b - a for a, b in s.position.ranges)
        else:
            split = total * (s.index + 1) // s.parallelism - total * s.index // s.parallelism
            left += split - int(s.position or 0)
    return left


@pytest.mark.slow
def test_collections_restore_at_3_then_at_1_every_record_once(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    assert cluster.address.startswith("ipc://")  # (the large collection goes by /dev/shm)
    handle, sources, _ = run_collections(cluster, tmp_path, 2, pace=0.0005)
    at_2 = stop_part_way(handle, sources, tmp_path / "sp2")
    totals = (len(SMALL), len(LARGE))
    before = [left_unread(at_2, s, n) for s, n in zip(sources, totals, strict=True)]
    assert all(0 < left < n for left, n in zip(before, totals, strict=True)), before
    again, sources, _ = run_collections(cluster, tmp_path, 3, 0.0005, str(tmp_path / "sp2"))
    at_3 = stop_part_way(again, sources, tmp_path / "sp3")
    assert all(isinstance(s.position, RowRanges) for s in at_3 if s.position is not None)
    after = [left_unread(at_3, s, n) for s, n in zip(sources, totals, strict=True)]
    assert all(0 < a < b for a, b in zip(after, before, strict=True)), (before, after)
    last, _, sink = run_collections(cluster, tmp_path, 1, 0.0, str(tmp_path / "sp3"))
    assert sorted(last.result(timeout=120).collected[sink]) == collections_reference()
    assert last.metrics()["checkpoints"]["restored_from"] == str(tmp_path / "sp3")


# -- arrays: 2 -> 3 -> 1, spilled to /dev/shm (MappedColumn: every slice maps its rows) -----

ROWS = 1_200_000  # 4 int64 columns: 38 MB (spilled), a column batch is 65,536 rows


def arrays() -> dict[str, Any]:
    n = np.arange(ROWS, dtype=np.int64)
    return {"k": n % KEYS, "v": n, "pad": n, "pad2": n}


def run_arrays(
    cluster: LocalCluster, tmp_path: Path, parallelism: int, pace: float, savepoint: str = ""
) -> tuple[JobHandle, list[int], int]:
    env = StreamEnvironment(cluster, parallelism=parallelism)
    env.enable_checkpointing(0.3, storage=str(tmp_path / f"chk-{parallelism}"))
    env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=0.2))

    def paced(row: dict[str, Any]) -> tuple[int, int]:
        if pace and row["v"] % 8192 == 0:
            time.sleep(pace)  # (chained to the source: a batch at a time)
        return int(row["k"]), int(row["v"])

    source = env.from_arrays(arrays())
    summed = source.map(paced).key_by(lambda r: r[0]).sum(1)
    sink = summed._sink("Collect", {"sink": "collect", "columnar": False}).id
    handle = env.execute(f"arrays at {parallelism}", from_savepoint=savepoint)
    assert isinstance(handle, JobHandle)
    return handle, [source.operator.id], sink


@pytest.mark.slow
def test_arrays_restore_at_3_then_at_1_every_row_once(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    handle, sources, _ = run_arrays(cluster, tmp_path, 2, pace=0.03)
    at_2 = stop_part_way(handle, sources, tmp_path / "sp2", (65_536,))
    before = left_unread(at_2, sources[0], ROWS)
    assert 0 < before < ROWS
    assert sum(c.nbytes for c in arrays().values()) >= job_handle.SPILL_BYTES  # /dev/shm
    again, sources, _ = run_arrays(cluster, tmp_path, 3, 0.03, str(tmp_path / "sp2"))
    at_3 = stop_part_way(again, sources, tmp_path / "sp3", (65_536,))
    assert all(isinstance(s.position, RowRanges) for s in at_3 if s.position is not None)
    assert 0 < left_unread(at_3, sources[0], ROWS) < before
    last, _, sink = run_arrays(cluster, tmp_path, 1, 0.0, str(tmp_path / "sp3"))
    n = np.arange(ROWS)
    expected = sorted((k, int(n[n % KEYS == k].sum())) for k in range(KEYS))
    assert sorted(last.result(timeout=120).collected[sink]) == expected
