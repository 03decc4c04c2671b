"""Keyed process functions on a real cluster (dispatcher, worker and slot processes): the same
job gives the in-process reference executor's records; watermarks cross the data plane and
fire event-time timers before the end of input; processing-time timers fire while a subtask
waits for input."""

from __future__ import annotations

import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle

from pydispatch.dataflow.local import run_local
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import DataStream, JobHandle, StreamEnvironment
from pydispatch.stream.functions import KeyedProcessFunction, RuntimeContext, TimeDomain
from pydispatch.stream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor

# Functions defined here travel by value: slot processes cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}


class Sessions(KeyedProcessFunction):
    """Per key: event-time windows of 10 (map state + event timers), a running count (value
    state), the values seen (list state), and one processing-time timer at the end."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.sums = runtime_context.get_map_state(MapStateDescriptor("sums"))
        self.count = runtime_context.get_state(ValueStateDescriptor("count"))
        self.values = runtime_context.get_list_state(ListStateDescriptor("values"))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        start = ctx.timestamp() // 10 * 10
        self.sums.put(start, (self.sums.get(start) or 0) + value[2])
        self.count.update((self.count.value() or 0) + 1)
        self.values.add(value[2])
        ctx.timer_service().register_event_time_timer(start + 10)
        ctx.timer_service().register_processing_time_timer(10**15)
        yield "count", ctx.get_current_key(), self.count.value()

    def on_timer(self, timestamp: Any, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        key = ctx.get_current_key()
        if ctx.time_domain() is TimeDomain.PROCESSING_TIME:
            yield "values", key, sorted(self.values.get())
            return
        start = timestamp - 10
        finite = ctx.timer_service().current_watermark() != float("inf")
        yield "window", key, start, self.sums.get(start), finite
        self.sums.remove(start)


EVENTS = [(random.Random(i).choice("abcdefgh"), i // 5, i % 11) for i in range(4000)]


def _build(env: StreamEnvironment) -> DataStream:
    source = env.from_source(
        lambda index, p: iter(EVENTS[index::p]), bounded=False, parallel=True
    ).set_parallelism(2)
    return source.key_by(lambda e: e[0]).process(Sessions(), timestamp=1)


def _without_flags(records: list[Any]) -> Counter[Any]:
    return Counter(r[:4] if r[0] == "window" else (r[0], r[1], repr(r[2])) for r in records)


def test_a_process_function_on_the_cluster_gives_the_reference_records(
    cluster: LocalCluster,
) -> None:
    local = StreamEnvironment(parallelism=2)
    _build(local)._sink("Collect", {"sink": "collect", "columnar": False})
    ran = run_local(local.job_graph)
    (reference,) = ran.collected.values()
    env = StreamEnvironment(cluster, parallelism=2)
    sink = _build(env)._sink("Collect", {"sink": "collect", "columnar": False})
    handle = env.execute("sessions")
    assert isinstance(handle, JobHandle)
    got = handle.result(timeout=120).collected[sink.id]
    assert _without_flags(got) == _without_flags(reference)
    assert handle.records_in == ran.records_in
    assert handle.records_out == ran.records_out
    windows = [r for r in got if r[0] == "window"]
    assert len(windows) == len({(e[0], e[1] // 10) for e in EVENTS})
    # Watermarks crossed the data plane: most windows fired before the end of input.
    assert sum(1 for w in windows if w[4]) > len(windows) // 2


class RunningCount(KeyedProcessFunction):
    def open(self, runtime_context: RuntimeContext) -> None:
        self.count = runtime_context.get_state(ValueStateDescriptor("count"))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        count = (self.count.value() or 0) + 1
        self.count.update(count)
        yield value, count


def test_a_batch_process_function_on_the_cluster(cluster: LocalCluster) -> None:
    words = [random.Random(i).choice(["x", "y", "z", 1, 2]) for i in range(3000)]
    env = StreamEnvironment(cluster, parallelism=2)
    handle = env.from_collection(words).key_by(lambda w: w).process(RunningCount())
    got = handle.collect()
    assert isinstance(got, list)
    assert sorted(got, key=repr) == sorted(
        ((w, n) for w, total in Counter(words).items() for n in range(1, total + 1)), key=repr
    )


class Reminder(KeyedProcessFunction):
    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        timers = ctx.timer_service()
        timers.register_processing_time_timer(timers.current_processing_time() + 100)
        if isinstance(value, tuple):
            yield value

    def on_timer(self, timestamp: Any, ctx: KeyedProcessFunction.OnTimerContext) -> list[Any]:
        return [("reminder", ctx.get_current_key())]


def test_processing_time_timers_fire_while_the_subtask_waits_for_input(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    marker = str(tmp_path / "fired")

    def source() -> Iterator[Any]:
        yield "k"
        # Hold the input open until the timer's output reached the sink (or half a minute passed:
        # then the timer did not fire while waiting, and the last record says so).
        deadline = time.monotonic() + 30
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield ("source saw the timer", os.path.exists(marker))

    def mark(record: Any) -> None:
        if record[0] == "reminder":
            with open(marker, "w"):
                pass

    # One record a batch: a source's partial batch leaves only with its next record.
    env = StreamEnvironment(cluster, parallelism=1).set_network(batch_records=1)
    timed = env.from_source(source, bounded=False).key_by(lambda r: r[0]).process(Reminder())
    timed.for_each(mark)
    sink = timed._sink("Collect", {"sink": "collect", "columnar": False})
    handle = env.execute("reminders")
    assert isinstance(handle, JobHandle)
    got = handle.result(timeout=120).collected[sink.id]
    assert ("reminder", "k") in got
    assert ("reminder", "source saw the timer") in got  # its own timer, at end of input
    # The first timer fired while its subtask waited for input: the source saw its output
    # before sending its last record (without the idle wake-up: only after it).
    assert ("source saw the timer", True) in got
