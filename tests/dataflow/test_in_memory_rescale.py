"""Collections and arrays restored at another parallelism, without processes: each slice is
shipped its own split only (``job_run._slice_job``, in memory or as /dev/shm files), and what
the old subtasks left unread is read, by record number, by the new subtask whose split holds
it (``positions.RowRanges``): rescaled 2 -> 3 -> 1, every record exactly once."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from pydispatch.dataflow import handle
from pydispatch.dataflow.job_run import _slice_job
from pydispatch.dataflow.positions import PositionedReader, RowRanges
from pydispatch.dataflow.snapshots import Snapshot, restore_part
from pydispatch.plan import ExecutionGraph, JobGraph
from pydispatch.stream import StreamEnvironment

ELEMENTS = 12_000  # above handle.SPILL_ELEMENTS: spilled when asked
ROWS = 2_000_000  # 16 MB of int64, above handle.SPILL_BYTES; a column batch is 262,144 rows

Source = Callable[[StreamEnvironment], Any]


def _collection(env: StreamEnvironment) -> Any:
    return env.from_collection(list(range(ELEMENTS)))


def _arrays(env: StreamEnvironment) -> Any:
    return env.from_arrays({"v": np.arange(ROWS, dtype=np.int64)})


def _job(source: Source, parallelism: int, spill: bool, spilled: list[str]) -> JobGraph:
    env = StreamEnvironment(parallelism=parallelism)
    source(env).map_batches(lambda batch: batch).for_each(print)
    job = env.job_graph
    if spill:  # as handle.submit_job does for an ipc:// dispatcher
        job, directories = handle.spill_sources(job, "ipc:///tmp/i17e-test")
        assert directories, "nothing was spilled"
        spilled += directories
    return job


def _slices(job: JobGraph, parallelism: int) -> list[tuple[ExecutionGraph, dict[str, Any]]]:
    """Each slice's plan and source parameters, as the slice gets them."""
    out = []
    for index in range(parallelism):
        plan = ExecutionGraph(_slice_job(job, index))
        out.append((plan, plan.job.operator(plan.chains[0].operators[0]).params))
    return out


def _values(batch: Any) -> list[int]:
    return [int(v) for v in batch["v"]] if isinstance(batch, dict) else list(batch)


def _read(readers: list[PositionedReader], batches: int) -> list[int]:
    out: list[int] = []
    for reader in readers:
        iterator = reader.batches(7)
        for _ in range(batches):
            out += _values(next(iterator, []))
    return out


@pytest.mark.parametrize("spill", [False, True], ids=["in memory", "spilled to /dev/shm"])
@pytest.mark.parametrize("source", [_collection, _arrays], ids=["collection", "arrays"])
def test_in_memory_sources_rescale_2_3_1_reading_every_record_once(
    source: Source, spill: bool
) -> None:
    spilled: list[str] = []
    try:
        seen = _rescale_2_3_1(source, spill, spilled)
    finally:
        for directory in spilled:
            shutil.rmtree(directory, ignore_errors=True)
    total = ROWS if source is _arrays else ELEMENTS
    assert len(seen) == total  # none twice...
    assert sorted(seen) == list(range(total))  # ...none lost


def _rescale_2_3_1(source: Source, spill: bool, spilled: list[str]) -> list[int]:
    at_2 = _slices(_job(source, 2, spill, spilled), 2)
    ops = tuple(at_2[0][0].chains[0].operators)
    first = [PositionedReader(params, i, 2, None) for i, (_, params) in enumerate(at_2)]
    seen = _read(first, 1)  # part of each split
    olds = [Snapshot(ops, i, 2, 1, r.position()) for i, r in enumerate(first)]
    assert all(0 < s.position < len(seen) for s in olds)
    at_3 = _slices(_job(source, 3, spill, spilled), 3)
    parts = [restore_part(plan, 0, i, olds, 1) for i, (plan, _) in enumerate(at_3)]
    assert all(isinstance(p.position, RowRanges) for p in parts)
    second = [
        PositionedReader(params, i, 3, parts[i].position) for i, (_, params) in enumerate(at_3)
    ]
    seen += _read(second, 1)
    olds = [Snapshot(ops, i, 3, 2, r.position()) for i, r in enumerate(second)]
    assert any(s.position.ranges for s in olds)  # something left for the last run
    [(plan, params)] = _slices(_job(source, 1, spill, spilled), 1)
    last = PositionedReader(params, 0, 1, restore_part(plan, 0, 0, olds, 2).position)
    return seen + _read([last], 10**6)


def test_row_ranges_deal_what_is_left_to_the_subtask_whose_split_holds_it() -> None:
    # 12 records at 2: old 0 emitted 2 of 0-5, old 1 emitted 6 of 6-11 (all).
    olds = [(0, 2, 2), (1, 2, 6)]
    shares = [RowRanges.rescaled(olds, 12, i, 3).ranges for i in range(3)]
    assert shares == [((2, 4),), ((4, 6),), ()]  # splits 0-3, 4-7, 8-11
    # At 3 -> 1: the ranges left by each old subtask, merged in order.
    again = [(0, 3, RowRanges(((3, 4),))), (1, 3, RowRanges(((5, 6),))), (2, 3, RowRanges(()))]
    assert RowRanges.rescaled(again, 12, 0, 1).ranges == ((3, 4), (5, 6))


def test_a_restored_position_at_the_same_parallelism_reads_on() -> None:
    params = {"source": "elements", "elements": tuple(range(10)), "bounded": True}
    reader = PositionedReader(params, 0, 1, RowRanges(((2, 4), (7, 9))))
    batches = reader.batches(3)
    assert next(batches) == [2, 3]
    assert reader.position() == RowRanges(((7, 9),))
    assert [r for b in batches for r in b] == [7, 8]
    assert reader.position() == RowRanges(())


def test_a_checkpoint_missing_an_old_subtask_of_a_collection_is_refused() -> None:
    job = _job(_collection, 3, False, [])
    [(plan, _)] = _slices(_job(_collection, 1, False, []), 1)
    ops = tuple(ExecutionGraph(job).chains[0].operators)
    olds = [Snapshot(ops, i, 3, 1, 0) for i in (0, 2)]
    with pytest.raises(ValueError, match=r"holds subtasks \[0, 2\].*parallelism 3"):
        restore_part(plan, 0, 0, olds, 1)
