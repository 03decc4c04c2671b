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
from hypothesis import given, settings
from hypothesis import strategies as st

from _support.runners import RunnerPipeline
from pydispatch.dataflow.keyed_state import (
    KeyedSnapshot,
    groups_of_keys,
    owned_groups,
    split_snapshots,
)
from pydispatch.dataflow.local import run_local
from pydispatch.partition import key_group_range
from pydispatch.plan import ExecutionGraph
from pydispatch.stream import StreamEnvironment
from pydispatch.stream.functions import KeyedProcessFunction, RuntimeContext, TimeDomain
from pydispatch.stream.state import MapStateDescriptor, ValueStateDescriptor

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


# -- windows and process functions: state and timers ------------------------------------------


class WindowByTimers(KeyedProcessFunction):
    """Tumbling event-time windows of 10 made of map state and event-time timers."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.sums = runtime_context.get_map_state(MapStateDescriptor("sums"))
        self.seen = runtime_context.get_state(ValueStateDescriptor("seen"))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> None:
        start = ctx.timestamp() // 10 * 10
        self.sums.put(start, (self.sums.get(start) or 0) + value[2])
        self.seen.update((self.seen.value() or 0) + 1)
        ctx.timer_service().register_event_time_timer(start + 10)
        ctx.timer_service().register_processing_time_timer(10**15)  # one per key: at the end

    def on_timer(self, timestamp: Any, ctx: KeyedProcessFunction.OnTimerContext) -> list[Any]:
        if ctx.time_domain() is TimeDomain.PROCESSING_TIME:
            return [("seen", ctx.get_current_key(), self.seen.value())]
        start = timestamp - 10
        total = self.sums.get(start)
        self.sums.remove(start)
        return [(ctx.get_current_key(), start, total)]


EVENTS = [(random.Random(i).choice("pqrstuvw"), i // 4, i % 7) for i in range(2000)]
SPLIT_TIME = 283  # phase one: the events before it; phase two: the rest


def _windowed_job(events: list[Any], parallelism: int, kind: str) -> tuple[ExecutionGraph, int]:
    env = StreamEnvironment().set_parallelism(parallelism)
    if kind == "count":  # one channel: a key's records keep their order across the phases
        source = env.from_source(lambda: iter(events), bounded=False)
    else:
        source = env.from_source(
            lambda index, p: iter(events[index::p]), bounded=False, parallel=True
        ).set_parallelism(2)
    keyed = source.key_by(lambda e: e[0])
    if kind == "process":
        out = keyed.process(WindowByTimers(), timestamp=1)
    elif kind == "time":
        out = keyed.time_window(10, timestamp=1).sum(2)
    else:
        out = keyed.count_window(3).reduce(lambda a, b: (a[0], a[1], a[2] * 2 + b[2]))
    sink = out._sink("Collect", {"sink": "collect", "columnar": False})
    return env.execution_graph(), sink.id


@pytest.mark.parametrize("kind", ["process", "time", "count"])
@pytest.mark.parametrize("new_parallelism", [3, 1])
def test_windows_and_timers_continue_after_rescaling(kind: str, new_parallelism: int) -> None:
    whole_plan, sink = _windowed_job(EVENTS, 2, kind)
    whole = RunnerPipeline(whole_plan)
    whole.run_sources()
    whole.finish()
    expected = Counter(whole.collected(sink))
    reference = run_local(whole_plan.job).collected[sink]
    assert Counter(reference) == expected  # the runners give the reference's records

    first_events = [e for e in EVENTS if e[1] < SPLIT_TIME]
    first, parts = _snapshot_after(_windowed_job(first_events, 2, kind)[0])
    fired_before = Counter(first.collected(sink))
    assert fired_before  # windows fired in phase one already (watermarks / full counts)
    assert any(s.groups for snapshots in parts.values() for s in snapshots)
    rest_events = EVENTS[len(first_events) :]
    rest = RunnerPipeline(_windowed_job(rest_events, new_parallelism, kind)[0], restore=parts)
    rest.run_sources()
    rest.finish()
    assert fired_before + Counter(rest.collected(sink)) == expected


def test_a_process_function_restored_keeps_its_timers() -> None:
    plan, _ = _windowed_job([e for e in EVENTS if e[1] < 40], 2, "process")
    _, parts = _snapshot_after(plan)
    ((op_id, snapshots),) = parts.items()
    empty, _ = _windowed_job([], 1, "process")
    restored = RunnerPipeline(empty, restore=parts)
    (runner,) = [r for r in restored.runners.values() if op_id in r.state]
    process = runner.state[op_id]
    keys = {e[0] for e in EVENTS if e[1] < 40}
    assert len(process.backend.processing_timers) == len(keys)
    # Windows up to 30 fired in phase one (the watermark passed them); 30-40 is pending.
    assert sorted(process.backend.event_timers.timers()) == [(40, k) for k in sorted(keys)]
    assert sum(len(s.groups) for s in snapshots) == len(
        set(groups_of_keys(sorted(keys), "hash", snapshots[0].max_parallelism).tolist())
    )


def test_a_snapshot_of_another_operator_kind_is_refused_by_name() -> None:
    _, parts = _snapshot_after(_records_job(FIRST, 2, streaming=True)[0])
    keys = np.arange(10, dtype=np.int64)
    plan, _ = _columns_job(keys, keys, 2, "sum")
    assert set(parts) <= {op.id for op in plan.job.operators if op.kind == "aggregate"}
    with pytest.raises(ValueError, match=r"cannot restore Keyed Aggregation \(sum\)"):
        RunnerPipeline(plan, restore=parts)


@settings(max_examples=25, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 30), st.integers(-5, 5)), max_size=300),
    cut=st.floats(0, 1),
    old=st.integers(1, 4),
    new=st.integers(1, 4),
)
def test_any_cut_any_parallelism_gives_the_uninterrupted_records(
    data: list[tuple[int, int]], cut: float, old: int, new: int
) -> None:
    split = int(len(data) * cut)
    whole_plan, sink = _records_job(data, old, streaming=True)
    whole = RunnerPipeline(whole_plan)
    whole.run_sources()
    whole.finish()
    first, parts = _snapshot_after(_records_job(data[:split], old, streaming=True)[0])
    rest = RunnerPipeline(_records_job(data[split:], new, streaming=True)[0], restore=parts)
    rest.run_sources()
    rest.finish()
    got = Counter(first.collected(sink)) + Counter(rest.collected(sink))
    assert got == Counter(whole.collected(sink))
