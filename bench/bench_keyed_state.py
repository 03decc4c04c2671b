"""Keyed state: snapshot and restore of a million keys, and the state API's cost per record.

Run: ``PYTHONPATH=src python -m pytest bench/bench_keyed_state.py -q -s --benchmark-disable-gc``
(``-s`` prints the ratios and sizes). Each figure is a ratio to a baseline measured in the
same run, on the same data:

- snapshot of a running keyed sum over records (1M keys) cut by key group
  (``SubtaskRunner.snapshot_state``) against one ``pickle.dumps`` of the whole state dict;
  restore (``restore_state``) against one ``pickle.loads``;
- the same for the columnar keyed sum (the native aggregator's partials) against pickling
  its partial arrays whole;
- a ``KeyedProcessFunction`` counting with a ``ValueState`` against the built-in streaming
  keyed count, records pushed through a subtask runner (no network).
"""

from __future__ import annotations

import pickle
import time
from typing import Any

import numpy as np
import pytest

from pydispatch.dataflow.subtask import SubtaskRunner
from pydispatch.plan import ExecutionGraph
from pydispatch.stream import StreamEnvironment
from pydispatch.stream.functions import KeyedProcessFunction, RuntimeContext
from pydispatch.stream.state import ValueStateDescriptor

KEYS = 1_000_000
RECORDS = 300_000


def _keyed_runner(plan: ExecutionGraph) -> tuple[SubtaskRunner, int]:
    chain = next(c for c in plan.chains if plan.job.operator(c.operators[0]).kind != "source")
    return SubtaskRunner(plan, chain.id, 0, lambda *_: None), chain.operators[0]


def _records_plan(process: KeyedProcessFunction | None = None) -> ExecutionGraph:
    env = StreamEnvironment()
    keyed = env.from_source(lambda: iter([]), bounded=False).key_by(lambda r: r[0])
    out = keyed.sum(1) if process is None else keyed.process(process)
    out.for_each(lambda _: None)
    return env.execution_graph()


def _columns_plan() -> ExecutionGraph:
    env = StreamEnvironment()
    keys = np.arange(KEYS)
    env.from_arrays({"k": keys, "v": np.ones(KEYS)}).key_by("k").sum("v").for_each(lambda _: 0)
    return env.execution_graph()


def _ratio(what: str, mine: float, baseline: float, extra: str = "") -> None:
    print(f"\n{what}: {mine:.3f} s vs {baseline:.3f} s baseline = {mine / baseline:.2f}x {extra}")


def _best(function: Any, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("path", ["records", "columns"])
def bench_snapshot_and_restore_a_million_keys(benchmark: Any, path: str) -> None:
    plan = _records_plan() if path == "records" else _columns_plan()
    runner, op_id = _keyed_runner(plan)
    if path == "records":
        records = [(i, i) for i in range(KEYS)]
        for start in range(0, KEYS, 4096):
            runner.push(op_id, records[start : start + 4096])
        whole: Any = runner.state[op_id].state
    else:
        ones = np.ones(KEYS, np.int64)
        runner.push(op_id, {"k": np.arange(KEYS), "v": np.ones(KEYS), "__rows": ones})
        whole = runner.state[op_id].state.partial()
    snapshot = benchmark.pedantic(runner.snapshot_state, rounds=3, iterations=1)
    size = sum(s.size for s in snapshot.values())
    baseline_blob = pickle.dumps(whole, protocol=5)
    mine = min(benchmark.stats.stats.data)
    _ratio(
        f"snapshot, {path}",
        mine,
        _best(lambda: pickle.dumps(whole, protocol=5)),
        f"({size / 1e6:.1f} MB in {len(snapshot[op_id].groups)} key groups; "
        f"whole: {len(baseline_blob) / 1e6:.1f} MB)",
    )
    parts = {op_id: [snapshot[op_id]]}

    def restore() -> None:
        _keyed_runner(plan)[0].restore_state(parts)

    _ratio(f"restore, {path}", _best(restore), _best(lambda: pickle.loads(baseline_blob)))


class Count(KeyedProcessFunction):
    def open(self, runtime_context: RuntimeContext) -> None:
        self.count = runtime_context.get_state(ValueStateDescriptor("count"))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Any:
        count = (self.count.value() or 0) + 1
        self.count.update(count)
        return ((value[0], count),)


def bench_process_function_against_the_built_in_count(benchmark: Any) -> None:
    records = [(i % 10_000, 1) for i in range(RECORDS)]

    def push_all(plan: ExecutionGraph) -> None:
        runner, op_id = _keyed_runner(plan)
        for start in range(0, RECORDS, 4096):
            runner.push(op_id, records[start : start + 4096])

    process_plan, built_in = _records_plan(Count()), _records_plan()
    benchmark.pedantic(push_all, args=(process_plan,), rounds=3, iterations=1)
    mine = min(benchmark.stats.stats.data)
    _ratio(
        "process function vs built-in keyed sum",
        mine,
        _best(lambda: push_all(built_in)),
        f"({RECORDS / mine / 1e3:.0f} k records/s)",
    )
