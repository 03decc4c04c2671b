"""KeyedProcessFunction, keyed state and timers against the in-process reference executor."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pydispatch.dataflow.local import run_local
from pydispatch.stream import DataStream, StreamEnvironment
from pydispatch.stream.functions import (
    AggregateFunction,
    KeyedProcessFunction,
    ReduceFunction,
    RuntimeContext,
    TimeDomain,
)
from pydispatch.stream.state import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)

RNG = random.Random(3)
WORDS = [RNG.choice("abcdefghij") for _ in range(500)]


def _collect(stream: DataStream) -> list[Any]:
    result = stream.collect()
    assert isinstance(result, list)
    return result


class RunningCount(KeyedProcessFunction):
    def open(self, runtime_context: RuntimeContext) -> None:
        self.count = runtime_context.get_state(ValueStateDescriptor("count", "LONG"))
        self.subtask = runtime_context.get_index_of_this_subtask()

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        count = (self.count.value() or 0) + 1
        self.count.update(count)
        yield ctx.get_current_key(), count


@pytest.mark.parametrize("parallelism", [1, 3])
def test_value_state_is_per_key_and_equals_a_keyed_count(parallelism: int) -> None:
    env = StreamEnvironment(parallelism=parallelism)
    got = _collect(env.from_collection(WORDS).key_by(lambda w: w).process(RunningCount()))
    env2 = StreamEnvironment(parallelism=parallelism)
    counts = _collect(env2.from_collection(WORDS).key_by(lambda w: w).map(lambda w: (w, 1)))
    assert len(counts) == len(WORDS)
    assert sorted(got) == sorted(
        (w, n) for w, total in Counter(WORDS).items() for n in range(1, total + 1)
    )


class EveryKind(KeyedProcessFunction):
    """List, map and reducing state side by side, and clear()."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.seen = runtime_context.get_list_state(ListStateDescriptor("seen"))
        self.positions = runtime_context.get_map_state(MapStateDescriptor("positions"))

        class Longest(ReduceFunction):
            def reduce(self, a: Any, b: Any) -> Any:
                return max(a, b, key=len)

        self.longest = runtime_context.get_reducing_state(
            ReducingStateDescriptor("longest", Longest())
        )

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> list[Any]:
        key, word, position = value
        self.seen.add(word)
        self.positions.put(word, position)
        self.longest.add(word)
        if word == "stop":  # everything of this key goes
            out = [(key, "final", sorted(self.seen.get()), self.positions.items())]
            self.seen.clear()
            self.positions.clear()
            self.longest.clear()
            return out
        if word == "drop":
            self.positions.remove("drop")
            self.seen.update([w for w in self.seen.get() if w != "drop"])
        return [
            (
                key,
                len(self.seen.get()),
                self.positions.contains(word),
                self.positions.is_empty(),
                sorted(self.positions.keys()),
                self.longest.get(),
            )
        ]


def test_list_map_and_reducing_state() -> None:
    records = [
        ("x", "a", 0),
        ("y", "bb", 1),
        ("x", "ccc", 2),
        ("x", "drop", 3),
        ("y", "stop", 4),
        ("y", "d", 5),
        ("x", "a", 6),
    ]
    env = StreamEnvironment(parallelism=2)
    got = _collect(env.from_collection(records).key_by(lambda r: r[0]).process(EveryKind()))
    assert sorted(got, key=repr) == sorted(
        [
            ("x", 1, True, False, ["a"], "a"),
            ("y", 1, True, False, ["bb"], "bb"),
            ("x", 2, True, False, ["a", "ccc"], "ccc"),
            ("x", 2, False, False, ["a", "ccc"], "drop"),  # "drop" removed again
            ("y", "final", ["bb", "stop"], [("bb", 1), ("stop", 4)]),
            ("y", 1, True, False, ["d"], "d"),  # cleared: starts again
            ("x", 3, True, False, ["a", "ccc"], "drop"),
        ],
        key=repr,
    )


class WindowSums(KeyedProcessFunction):
    """Tumbling event-time windows made of state and event-time timers."""

    size = 10

    def open(self, runtime_context: RuntimeContext) -> None:
        self.sums = runtime_context.get_map_state(MapStateDescriptor("sums"))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> None:
        stamp = ctx.timestamp()
        assert stamp == value[1]
        start = stamp - stamp % self.size
        self.sums.put(start, (self.sums.get(start) or 0) + value[2])
        ctx.timer_service().register_event_time_timer(start + self.size)

    def on_timer(self, timestamp: Any, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        assert ctx.time_domain() is TimeDomain.EVENT_TIME
        start = timestamp - self.size
        watermark = ctx.timer_service().current_watermark()
        assert watermark > timestamp  # every record at or before the timer was processed
        yield ctx.get_current_key(), start, self.sums.get(start), watermark == float("inf")
        self.sums.remove(start)


def _events(n: int = 400) -> list[tuple[str, int, int]]:
    rng = random.Random(11)
    return [(rng.choice("pqrs"), i // 3, rng.randrange(10)) for i in range(n)]


def _window_reference(events: list[tuple[str, int, int]]) -> list[tuple[Any, Any, Any]]:
    sums: dict[tuple[str, int], int] = defaultdict(int)
    for key, stamp, value in events:
        sums[key, stamp - stamp % 10] += value
    return sorted((k, s, v) for (k, s), v in sums.items())


@pytest.mark.parametrize("parallelism", [1, 2])
def test_event_time_timers_fire_as_the_watermark_passes(parallelism: int) -> None:
    events = _events()
    env = StreamEnvironment(parallelism=parallelism)
    source = env.from_source(lambda: iter(events), bounded=False)
    got = _collect(source.key_by(lambda e: e[0]).process(WindowSums(), timestamp=1))
    assert sorted(r[:3] for r in got) == _window_reference(events)
    # Streaming with a timestamp: all but the last windows fire before the end of input.
    at_end = {r[1] for r in got if r[3]}
    assert at_end == {max(e[1] for e in events) // 10 * 10}
    # The same windows as the built-in time window's.
    env2 = StreamEnvironment(parallelism=parallelism)
    windows = _collect(
        env2.from_source(lambda: iter(events), bounded=False)
        .key_by(lambda e: e[0])
        .time_window(10, timestamp=1)
        .sum(2)
    )
    assert sorted(windows) == _window_reference(events)


def test_without_a_timestamp_event_timers_fire_at_end_of_input() -> None:
    class Stamped(KeyedProcessFunction):
        def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> None:
            assert ctx.timestamp() is None
            assert ctx.timer_service().current_watermark() == float("-inf")
            ctx.timer_service().register_event_time_timer(value[1] + 10)
            ctx.timer_service().register_event_time_timer(value[1] + 10)  # one timer only
            ctx.timer_service().register_event_time_timer(value[1] + 99)
            ctx.timer_service().delete_event_time_timer(value[1] + 99)

        def on_timer(self, timestamp: Any, ctx: KeyedProcessFunction.OnTimerContext) -> list[Any]:
            return [(ctx.get_current_key(), timestamp, ctx.timestamp())]

    env = StreamEnvironment(parallelism=2)
    events = [("a", 1), ("b", 5), ("a", 3), ("a", 1)]
    got = _collect(env.from_collection(events).key_by(lambda e: e[0]).process(Stamped()))
    assert sorted(got) == [("a", 11, 11), ("a", 13, 13), ("b", 15, 15)]


class ProcessingTimers(KeyedProcessFunction):
    FUTURE = 10**15  # milliseconds since the epoch: in the year 33658

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> None:
        timers = ctx.timer_service()
        assert timers.current_processing_time() > 1_700_000_000_000
        timers.register_processing_time_timer(value[1])  # long past: fires after the batch
        timers.register_processing_time_timer(self.FUTURE + value[1])  # fires at end of input

    def on_timer(self, timestamp: Any, ctx: KeyedProcessFunction.OnTimerContext) -> list[Any]:
        assert ctx.time_domain() is TimeDomain.PROCESSING_TIME
        late = timestamp > ctx.timer_service().current_processing_time()
        return [(ctx.get_current_key(), "end" if late else "due", timestamp % self.FUTURE)]


def test_processing_time_timers_fire_when_due_and_the_rest_at_end_of_input() -> None:
    records = [("u", 1), ("v", 2), ("u", 3), ("u", 3)]  # the second ("u", 3) sets no new timer
    env = StreamEnvironment(parallelism=2)
    got = _collect(env.from_collection(records).key_by(lambda r: r[0]).process(ProcessingTimers()))
    assert sorted(got) == sorted([(k, when, n) for k, n in set(records) for when in ("due", "end")])


def test_process_rejects_what_is_not_a_keyed_process_function() -> None:
    env = StreamEnvironment()
    stream = env.from_collection([1, 2])
    with pytest.raises(TypeError, match="call key_by"):
        stream.process(RunningCount())
    with pytest.raises(TypeError, match="expected a KeyedProcessFunction"):
        stream.key_by(lambda x: x).process(lambda x: x)  # type: ignore[arg-type]


def test_bad_output_and_state_misuse_are_named() -> None:
    class ReturnsInt(KeyedProcessFunction):
        def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Any:
            return 5

    env = StreamEnvironment()
    with pytest.raises(TypeError, match="process_element must return or yield"):
        env.from_collection([1]).key_by(lambda x: x).process(ReturnsInt()).collect()

    class TwoKinds(KeyedProcessFunction):
        def open(self, runtime_context: RuntimeContext) -> None:
            runtime_context.get_state(ValueStateDescriptor("s"))
            runtime_context.get_list_state(ListStateDescriptor("s"))

    env = StreamEnvironment()
    with pytest.raises(ValueError, match="state 's' is a value state"):
        env.from_collection([1]).key_by(lambda x: x).process(TwoKinds()).collect()

    class NotOverridden(KeyedProcessFunction):
        pass

    env = StreamEnvironment()
    with pytest.raises(NotImplementedError, match="NotOverridden does not override"):
        env.from_collection([1]).key_by(lambda x: x).process(NotOverridden()).collect()


def test_each_subtask_has_its_own_function_and_the_user_instance_is_untouched() -> None:
    function = RunningCount()
    env = StreamEnvironment(parallelism=3)
    env.from_collection(WORDS).key_by(lambda w: w).process(function)._sink(
        "Collect", {"sink": "collect", "columnar": False}
    )
    result = run_local(env.job_graph)
    assert not hasattr(function, "count")  # open() ran on the subtasks' copies
    subtasks = result.subtask_results
    (parts,) = subtasks.values()
    assert len(parts) == 3


def test_columnar_input_reaches_the_function_as_dict_rows() -> None:
    class Largest(KeyedProcessFunction):
        def open(self, runtime_context: RuntimeContext) -> None:
            self.largest = runtime_context.get_reducing_state(
                ReducingStateDescriptor("largest", max)
            )

        def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> list[Any]:
            self.largest.add(value["v"])
            return [(ctx.get_current_key(), self.largest.get())]

    env = StreamEnvironment(parallelism=2)
    keys = np.array([1, 2, 1, 1, 2], dtype=np.int64)
    values = np.array([5, 1, 3, 9, 4], dtype=np.int64)
    stream = env.from_arrays({"k": keys, "v": values}).key_by("k").process(Largest())
    assert sorted(_collect(stream)) == [(1, 5), (1, 5), (1, 9), (2, 1), (2, 4)]


class Mean(AggregateFunction):
    def create_accumulator(self) -> Any:
        return (0, 0)

    def add(self, value: Any, accumulator: Any) -> Any:
        return accumulator[0] + value, accumulator[1] + 1

    def get_result(self, accumulator: Any) -> Any:
        return accumulator[0] / accumulator[1]


class RunningMean(KeyedProcessFunction):
    def open(self, runtime_context: RuntimeContext) -> None:
        self.mean = runtime_context.get_aggregating_state(
            AggregatingStateDescriptor("mean", Mean())
        )

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> list[Any]:
        before = self.mean.get()
        self.mean.add(value[1])
        if value[1] < 0:
            self.mean.clear()
        return [(value[0], before, self.mean.get())]


def test_aggregating_state_folds_through_an_aggregate_function() -> None:
    records = [("a", 2), ("a", 4), ("b", 1), ("a", -6), ("a", 3)]
    env = StreamEnvironment(parallelism=2)
    got = _collect(env.from_collection(records).key_by(lambda r: r[0]).process(RunningMean()))
    assert sorted(got, key=repr) == sorted(
        [("a", None, 2.0), ("a", 2.0, 3.0), ("b", None, 1.0), ("a", 3.0, None), ("a", None, 3.0)],
        key=repr,
    )
    with pytest.raises(TypeError, match="no create_accumulator"):
        AggregatingStateDescriptor("x", object())
