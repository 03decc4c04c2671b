"""Random pipelines: parallel runs give the records of a parallelism-1 run, data moves only over
the planned channels, and the plan's traffic estimates are exact where selectivities are."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydispatch.dataflow.local import LocalResult, run_local
from pydispatch.plan import ExecutionGraph
from pydispatch.stream import DataStream, StreamEnvironment

STEPS = st.lists(
    st.tuples(
        st.sampled_from(["map", "filter", "flat_map", "rebalance", "rescale", "disable"]),
        st.integers(1, 3),
    ),
    max_size=6,
)
FINISH = st.sampled_from(["none", "sum", "count", "reduce", "time_window"])


def _build(
    env: StreamEnvironment, data: list[int], steps: Any, finish: str, par: bool
) -> DataStream:
    stream = env.from_collection(data)
    for step, p in steps:
        if step == "map":
            stream = stream.map(lambda x: (x * 7 + 3) % 101)
        elif step == "filter":
            stream = stream.filter(lambda x: x % 3 != 0)
        elif step == "flat_map":
            stream = stream.flat_map(lambda x: [x, x + 1])
        elif step == "rebalance":
            stream = stream.rebalance().map(lambda x: x)
        elif step == "rescale":
            stream = stream.rescale().map(lambda x: x)
        else:
            stream = stream.map(lambda x: x)
            stream.disable_chaining()
        if par:
            stream.set_parallelism(p)
    keyed = stream.key_by(lambda x: x % 5)
    if finish == "sum":
        return keyed.sum()
    if finish == "count":
        return keyed.count()
    if finish == "reduce":
        return keyed.reduce(max)
    if finish == "time_window":
        return keyed.time_window(20, timestamp=lambda x: x).sum()
    return stream


def _run(stream: DataStream) -> tuple[list[Any], LocalResult, ExecutionGraph]:
    out = stream.collect()
    assert isinstance(out, list)
    env = stream.environment
    return out, run_local(env.job_graph), env.execution_graph()


def _check_channels(result: LocalResult, plan: ExecutionGraph) -> None:
    job = plan.job
    exchange_of = {x.edge: n for n, x in enumerate(plan.exchanges)}
    for (edge, src, dst), _ in result.channel_records.items():
        assert not plan.chained[edge]
        assert (src, dst) in plan.channels(exchange_of[edge])
    for n, x in enumerate(plan.exchanges):
        sent = sum(r for (e, _, _), r in result.channel_records.items() if e == x.edge)
        fan = job.operator(x.target).parallelism if x.partitioning == "broadcast" else 1
        assert sent == result.records_out[x.source] * fan, n


@given(
    data=st.lists(st.integers(0, 200), max_size=40),
    steps=STEPS,
    finish=FINISH,
    parallelism=st.integers(2, 3),
)
@settings(max_examples=60)
def test_parallel_runs_equal_the_sequential_run(
    data: list[int], steps: Any, finish: str, parallelism: int
) -> None:
    sequential, _, _ = _run(_build(StreamEnvironment(), data, steps, finish, par=False))
    env = StreamEnvironment(parallelism=parallelism)
    parallel, result, plan = _run(_build(env, data, steps, finish, par=True))
    assert sorted(map(repr, parallel)) == sorted(map(repr, sequential))
    _check_channels(result, plan)


@given(
    data=st.lists(st.integers(0, 100), max_size=30),
    kinds=st.lists(
        st.tuples(
            st.sampled_from(["rebalance", "rescale", "broadcast", "forward"]), st.integers(1, 4)
        ),
        min_size=1,
        max_size=4,
    ),
)
@settings(max_examples=60)
def test_traffic_estimates_are_exact_when_selectivities_are(
    data: list[int], kinds: list[tuple[str, int]]
) -> None:
    env = StreamEnvironment(parallelism=2)
    stream = env.from_collection(data)
    current = 2
    for kind, p in kinds:
        if kind == "forward":  # an explicit forward needs the upstream's parallelism
            stream = stream.forward().map(lambda x: x).set_parallelism(current).disable_chaining()
        else:
            stream = getattr(stream, kind)().map(lambda x: x).set_parallelism(p)
            current = p
    _, result, plan = _run(stream)
    _check_channels(result, plan)
    for x in plan.exchanges:
        sent = sum(r for (e, _, _), r in result.channel_records.items() if e == x.edge)
        assert x.records == pytest.approx(sent)
