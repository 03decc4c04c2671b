"""Keyed state snapshots at the subtask-runner level: a job stopped part way, snapshotted, and
continued from its snapshots at another parallelism gives the results of one uninterrupted run.

The runners are the distributed executor's own (``SubtaskRunner``), wired in this process by
``tests/_support/runners.py``; the reference results come from the in-process executor
(``dataflow.local``) or from one run of the same runners.
"""

from __future__ import annotations

import pickle
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest

from _support.runners import RunnerPipeline
from pydispatch.dataflow.keyed_state import KeyedSnapshot, owned_groups, split_snapshots
from pydispatch.dataflow.local import run_local
from pydispatch.partition import key_group_range
from pydispatch.plan import ExecutionGraph
from pydispatch.stream import StreamEnvironment

RNG = random.Random(17)
KEYS = [f"k{i}" for i in range(40)] + list(range(25))
DATA = [(RNG.choice(KEYS), RNG.randrange(100)) for _ in range(3000)]
FIRST, REST = DATA[:1700], DATA[1700:]


def _records_job(
    data: list[Any], parallelism: int, *, streaming: bool, agg: str = "sum"
) -> tuple[ExecutionGraph, int]:
    env = StreamEnvironment().set_parallelism(parallelism)
    if streaming:
        source = env.from_source(lambda: iter(data), bounded=False)
    else:
        source = env.from_collection(data).set_parallelism(2)
    keyed = source.key_by(lambda r: r[0])
    if agg == "sum":
        out = keyed.sum(1)
    elif agg == "reduce":
        out = keyed.reduce(lambda a, b: (a[0], a[1] * 3 + b[1]))
    else:
        out = keyed.count()
    sink = out._sink("Collect", {"sink": "collect", "columnar": False})
    return env.execution_graph(), sink.id


def _snapshot_after(plan: ExecutionGraph) -> tuple[RunnerPipeline, dict[int, list[KeyedSnapshot]]]:
    pipeline = RunnerPipeline(plan)
    pipeline.run_sources()
    # As barriers travel: every upstream chain's snapshot (and the partials its combiners
    # send first) reaches a chain before that chain snapshots.
    parts: dict[int, list[KeyedSnapshot]] = {}
    for chain in plan.chains:
        pipeline.drain()
        for index in range(chain.parallelism):
            for op_id, snapshot in pipeline.runners[chain.id, index].snapshot_state().items():
                parts.setdefault(op_id, []).append(snapshot)
    pipeline.drain()
    return pipeline, parts


@pytest.mark.parametrize("agg", ["sum", "reduce", "count"])
@pytest.mark.parametrize("new_parallelism", [3, 1, 2])
def test_streaming_record_aggregation_continues_after_rescaling(
    agg: str, new_parallelism: int
) -> None:
    whole_plan, whole_sink = _records_job(DATA, 2, streaming=True, agg=agg)
    whole = RunnerPipeline(whole_plan)
    whole.run_sources()
    whole.finish()
    expected = Counter(whole.collected(whole_sink))
    assert sum(expected.values()) == len(DATA)  # an update per record

    first_plan, sink = _records_job(FIRST, 2, streaming=True, agg=agg)
    first, parts = _snapshot_after(first_plan)
    assert set(parts) == {op.id for op in first_plan.job.operators if op.kind == "aggregate"}
    rest_plan, rest_sink = _records_job(REST, new_parallelism, streaming=True, agg=agg)
    assert rest_sink == sink
    rest = RunnerPipeline(rest_plan, restore=pickle.loads(pickle.dumps(parts)))
    rest.run_sources()
    rest.finish()
    got = Counter(first.collected(sink)) + Counter(rest.collected(rest_sink))
    assert got == expected


@pytest.mark.parametrize("new_parallelism", [3, 1])
def test_batch_record_aggregation_with_combiners_rescales(new_parallelism: int) -> None:
    reference = run_local(_records_job(DATA, 2, streaming=False)[0].job)
    (expected,) = reference.collected.values()
    first_plan, sink = _records_job(FIRST, 2, streaming=False)
    first, parts = _snapshot_after(first_plan)
    assert first.collected(sink) == []  # batch mode: nothing before the end of input
    rest = RunnerPipeline(_records_job(REST, new_parallelism, streaming=False)[0], restore=parts)
    rest.run_sources()
    rest.finish()
    assert sorted(rest.collected(sink), key=repr) == sorted(expected, key=repr)


def _columns_job(keys: Any, values: Any, parallelism: int, agg: str) -> tuple[ExecutionGraph, int]:
    env = StreamEnvironment().set_parallelism(parallelism)
    keyed = env.from_arrays({"k": keys, "v": values}).set_parallelism(2).key_by("k")
    out = keyed.count() if agg == "count" else getattr(keyed, agg)("v")
    sink = out._sink("Collect", {"sink": "collect", "columnar": True})
    return env.execution_graph(), sink.id


@pytest.mark.parametrize("agg", ["sum", "min", "max", "count"])
@pytest.mark.parametrize("new_parallelism", [3, 1])
def test_columnar_aggregation_rescales(agg: str, new_parallelism: int) -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 500, 20_000).astype(np.int32)
    values = rng.integers(-1000, 1000, 20_000).astype(np.int16)
    reference = run_local(_columns_job(keys, values, 2, agg)[0].job)
    (expected,) = reference.collected.values()
    first_plan, sink = _columns_job(keys[:12_000], values[:12_000], 2, agg)
    _, parts = _snapshot_after(first_plan)
    (op_id,) = parts
    assert len(parts[op_id]) == 2
    assert all(s.groups for s in parts[op_id])
    rest_plan = _columns_job(keys[12_000:], values[12_000:], new_parallelism, agg)[0]
    rest = RunnerPipeline(rest_plan, restore=parts)
    rest.run_sources()
    rest.finish()
    got = rest.collected(sink)
    value = "count" if agg == "count" else "v"
    assert sorted((r["k"], r[value]) for r in got) == sorted(
        zip(expected["k"].tolist(), expected[value].tolist(), strict=True)
    )


def test_snapshots_are_cut_by_the_key_groups_each_subtask_owns() -> None:
    plan, _ = _records_job(DATA, 2, streaming=True)
    _, parts = _snapshot_after(plan)
    ((_op_id, snapshots),) = parts.items()
    mp = snapshots[0].max_parallelism
    for index, snapshot in enumerate(snapshots):
        assert set(snapshot.groups) <= set(key_group_range(index, 2, mp))
    for q in (1, 3, 5):
        split = split_snapshots(snapshots, q)
        assert len(split) == q
        merged = {g: b for s in split for g, b in s.groups.items()}
        assert merged == {g: b for s in snapshots for g, b in s.groups.items()}
        for index, part in enumerate(split):
            assert set(part.groups) <= set(key_group_range(index, q, mp))
            assert part.groups == owned_groups(snapshots, mp, index, q)


def test_restore_refuses_another_max_parallelism_and_bad_snapshots() -> None:
    plan, _ = _records_job(FIRST, 2, streaming=True)
    _, parts = _snapshot_after(plan)
    ((_, snapshots),) = parts.items()
    with pytest.raises(ValueError, match="max parallelism"):
        owned_groups(snapshots, 256, 0, 2)
    with pytest.raises(ValueError, match="two snapshots"):
        owned_groups(snapshots + snapshots, snapshots[0].max_parallelism, 0, 1)
    with pytest.raises(ValueError, match="outside"):
        KeyedSnapshot(128, {200: b""})
