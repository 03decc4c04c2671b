"""Keyed process functions: the user's function over keyed state and timers (private).

``KeyedStream.process(function)`` (PyFlink's ``KeyedProcessFunction``) becomes an operator of
kind ``"process"``; both executors run it with :class:`KeyedProcess`:

- each subtask has its own copy of the function (Flink deserializes one per subtask), opened
  with a :class:`RuntimeContext` (``get_state(descriptor)``... over the subtask's
  :class:`~pydispatch.dataflow.keyed_state.HeapKeyedStateBackend`) and closed at end of input;
- ``process_element(value, ctx)`` per record, the backend's current key set to the record's key;
  it returns (or yields) output records, or None;
- timers (:class:`TimerService`), one per key and time: **event time** fires when the
  watermark passes the timer, i.e. every input channel has sent a later timestamp (the
  operator's ``timestamp`` field; each channel's timestamps ascend, so every record stamped at
  or before the timer has been processed when it fires); **processing time** fires when the
  wall clock (milliseconds since the epoch, as PyFlink's) reaches it, checked after each batch
  and while the subtask waits for input. ``on_timer(timestamp, ctx)`` runs with the timer's key;
- end of input: the watermark goes to infinity, so every event-time timer fires, in time
  order, then every processing-time timer (Flink's batch-mode rule, and the only one giving
  the same results in both executors); timers registered while those fire are fired too when
  they are not later than the latest pending at end of input, dropped otherwise (a timer
  that re-registers itself one step later would otherwise never let the job end).

The reference executor (``dataflow.local``, :func:`run_reference`) has the whole input at
once: in streaming mode with a timestamp it merges the input channels by timestamp and moves
the watermark after each record (a channel's latest timestamp; a channel without records left
counts no more), so timers fire between records as they would in a pipelined run. Without a
timestamp, or in batch mode, event-time timers fire at end of input.
"""

from __future__ import annotations

import heapq
import math
import pickle
import time
from collections.abc import Callable, Iterable
from enum import Enum
from types import GeneratorType
from typing import Any

from ..plan._job_graph import Operator
from .keyed_state import (
    AggregatingState,
    AggregatingStateDescriptor,
    HeapKeyedStateBackend,
    ListState,
    ListStateDescriptor,
    MapState,
    MapStateDescriptor,
    ReducingState,
    ReducingStateDescriptor,
    ValueState,
    ValueStateDescriptor,
)
from .operators import getter
from .routing import max_parallelism

__all__ = [
    "Context",
    "KeyedProcess",
    "OnTimerContext",
    "RuntimeContext",
    "TimeDomain",
    "TimerService",
    "run_reference",
]


class TimeDomain(Enum):
    """Which clock a timer is set on (PyFlink's ``TimeDomain``)."""

    EVENT_TIME = 0
    PROCESSING_TIME = 1


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class TimerService:
    """Timers of the current key, and the operator's clocks (PyFlink's ``TimerService``)."""

    def __init__(self, operator: KeyedProcess) -> None:
        self._operator = operator

    def current_processing_time(self) -> int:
        """Milliseconds since the epoch."""
        return self._operator.clock()

    def current_watermark(self) -> Any:
        """The event time every input channel has passed (``-inf`` before the first
        watermark, ``inf`` at end of input): event-time timers below it have fired."""
        return self._operator.watermark

    def register_event_time_timer(self, timestamp: Any) -> None:
        self._operator.backend.event_timers.register(_time(timestamp), self._key())

    def register_processing_time_timer(self, timestamp: Any) -> None:
        self._operator.backend.processing_timers.register(_time(timestamp), self._key())

    def delete_event_time_timer(self, timestamp: Any) -> None:
        self._operator.backend.event_timers.delete(timestamp, self._key())

    def delete_processing_time_timer(self, timestamp: Any) -> None:
        self._operator.backend.processing_timers.delete(timestamp, self._key())

    def _key(self) -> Any:
        return self._operator.backend.current_key()


def _time(timestamp: Any) -> Any:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise TypeError(f"a timer's time must be a number, not {type(timestamp).__name__}")
    if timestamp != timestamp:  # NaN never compares, so it would never fire
        raise ValueError("a timer's time must not be NaN")
    return timestamp


class RuntimeContext:
    """What ``open(runtime_context)`` gets (PyFlink's ``RuntimeContext``): the subtask, and
    its keyed state by descriptor."""

    def __init__(self, operator: KeyedProcess) -> None:
        self._operator = operator

    def get_state(self, state_descriptor: ValueStateDescriptor) -> ValueState:
        state = self._operator.backend.state(state_descriptor, "value")
        assert isinstance(state, ValueState)
        return state

    def get_list_state(self, state_descriptor: ListStateDescriptor) -> ListState:
        state = self._operator.backend.state(state_descriptor, "list")
        assert isinstance(state, ListState)
        return state

    def get_map_state(self, state_descriptor: MapStateDescriptor) -> MapState:
        state = self._operator.backend.state(state_descriptor, "map")
        assert isinstance(state, MapState)
        return state

    def get_reducing_state(self, state_descriptor: ReducingStateDescriptor) -> ReducingState:
        state = self._operator.backend.state(state_descriptor, "reducing")
        assert isinstance(state, ReducingState)
        return state

    def get_aggregating_state(
        self, state_descriptor: AggregatingStateDescriptor
    ) -> AggregatingState:
        state = self._operator.backend.state(state_descriptor, "aggregating")
        assert isinstance(state, AggregatingState)
        return state

    def get_task_name(self) -> str:
        return self._operator.op.name

    def get_index_of_this_subtask(self) -> int:
        return self._operator.index

    def get_number_of_parallel_subtasks(self) -> int:
        return self._operator.parallelism

    def get_max_number_of_parallel_subtasks(self) -> int:
        return self._operator.backend.max_parallelism


class Context:
    """What ``process_element`` gets besides the record (PyFlink's
    ``KeyedProcessFunction.Context``)."""

    def __init__(self, operator: KeyedProcess) -> None:
        self._operator = operator
        self._timers = TimerService(operator)

    def timestamp(self) -> Any:
        """The record's event time (its ``timestamp`` field), or the firing timer's time;
        None when the operator has no timestamp."""
        return self._operator.stamp

    def timer_service(self) -> TimerService:
        return self._timers

    def get_current_key(self) -> Any:
        return self._operator.backend.current_key()


class OnTimerContext(Context):
    """What ``on_timer`` gets (PyFlink's ``KeyedProcessFunction.OnTimerContext``)."""

    def time_domain(self) -> TimeDomain:
        return self._operator.domain


class KeyedProcess:
    """One subtask of a ``process`` operator (see the module docstring): ``push`` records,
    ``advance`` watermarks, ``tick`` the clock, then ``finish``; every call returns the
    output records it produced."""

    def __init__(
        self,
        op: Operator,
        index: int,
        parallelism: int,
        clock: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        self.op = op
        self.index = index
        self.parallelism = parallelism
        self.clock = clock
        self.key_of = getter(op.params["key"])
        stamp = op.params.get("timestamp")
        self.time_of = None if stamp is None else getter(stamp)
        self.backend = HeapKeyedStateBackend(op.params["key"].scheme, max_parallelism(op))
        # The subtask's own copy: a function may keep state handles and fields of its own.
        self.function: Any = _copy(op.function)
        self.watermark: Any = -math.inf
        self.stamp: Any = None
        self.domain = TimeDomain.EVENT_TIME
        self.channels = 0  # input channels sending watermarks (set by the executor)
        self.marks: dict[Any, Any] = {}
        self._context = Context(self)
        self._timer_context = OnTimerContext(self)
        self.function.open(RuntimeContext(self))

    def push(self, records: list[Any]) -> list[Any]:
        out: list[Any] = []
        function, context, backend, key_of = self.function, self._context, self.backend, self.key_of
        time_of = self.time_of
        for record in records:
            backend.key = key_of(record)
            self.stamp = None if time_of is None else time_of(record)
            _extend(out, function.process_element(record, context), "process_element")
        out.extend(self.tick())
        return out

    def advance(self, channel: Any, mark: Any) -> list[Any]:
        """A watermark from one input channel; the event-time timers it passes, fired."""
        if channel in self.marks and mark <= self.marks[channel]:
            return []
        self.marks[channel] = mark
        if len(self.marks) < self.channels:
            return []
        watermark = min(self.marks.values())
        if watermark <= self.watermark:
            return []
        self.watermark = watermark
        return self._fire(TimeDomain.EVENT_TIME, watermark, strict=True)

    def tick(self) -> list[Any]:
        """Fire the processing-time timers the clock has reached."""
        queue = self.backend.processing_timers
        if queue.peek() is None:
            return []
        # Only the timers there now: one a timer re-registers for "now" fires at the next
        # tick, not in an endless loop within this one.
        return self._fire(TimeDomain.PROCESSING_TIME, self.clock(), strict=False, most=len(queue))

    def timer_wait(self) -> float | None:
        """Seconds until the earliest processing-time timer is due (0 if it is), or None."""
        due = self.backend.processing_timers.peek()
        if due is None:
            return None
        wait: float = (due - self.clock()) / 1000
        return max(0.0, wait)

    def finish(self) -> list[Any]:
        out: list[Any] = []
        for domain, queue in (
            (TimeDomain.EVENT_TIME, self.backend.event_timers),
            (TimeDomain.PROCESSING_TIME, self.backend.processing_timers),
        ):
            pending = queue.timers()
            if pending:
                if domain is TimeDomain.EVENT_TIME:
                    self.watermark = math.inf
                out.extend(self._fire(domain, pending[-1][0], strict=False))
        self.function.close()
        return out

    def _fire(
        self, domain: TimeDomain, limit: Any, strict: bool, most: float = math.inf
    ) -> list[Any]:
        queue = (
            self.backend.event_timers
            if domain is TimeDomain.EVENT_TIME
            else self.backend.processing_timers
        )
        out: list[Any] = []
        self.domain = domain
        fired = 0
        while fired < most:
            timer = queue.pop_before(limit, strict)
            if timer is None:
                break
            fired += 1
            timestamp, key = timer
            self.backend.set_current_key(key)
            self.stamp = timestamp
            _extend(out, self.function.on_timer(timestamp, self._timer_context), "on_timer")
        return out

    def snapshot_groups(self) -> dict[int, bytes]:
        return self.backend.snapshot_groups()

    def restore_groups(self, groups: dict[int, bytes]) -> None:
        self.backend.restore_groups(groups)


def _copy(function: Any) -> Any:
    import cloudpickle  # the job's pickler: the function may come from a job's own file

    return pickle.loads(cloudpickle.dumps(function))


def _extend(out: list[Any], produced: Iterable[Any] | None, method: str) -> None:
    kind = type(produced)
    if kind is list or kind is tuple or kind is GeneratorType:  # the usual: no ABC check
        out.extend(produced)  # type: ignore[arg-type]
        return
    if produced is None:
        return
    if isinstance(produced, str | bytes | dict) or not isinstance(produced, Iterable):
        raise TypeError(
            f"{method} must return or yield output records (an iterable), or None; "
            f"got {type(produced).__name__}"
        )
    out.extend(produced)


def run_reference(
    op: Operator, channels: list[list[Any]], index: int, parallelism: int, streaming: bool
) -> list[Any]:
    """The reference executor's run of one ``process`` subtask over its whole input, one
    record list per input channel (see the module docstring)."""
    process = KeyedProcess(op, index, parallelism)
    time_of = process.time_of
    out: list[Any] = []
    if streaming and time_of is not None:
        live = [records for records in channels if records]
        process.channels = len(live)
        remaining = [len(records) for records in live]
        merged = heapq.merge(
            *(
                ((time_of(r), c, i, r) for i, r in enumerate(records))
                for c, records in enumerate(live)
            ),
            key=lambda item: (item[0], item[1], item[2]),
        )
        for stamp, c, _, record in merged:
            out.extend(process.push([record]))
            remaining[c] -= 1
            out.extend(process.advance(c, stamp if remaining[c] else math.inf))
    else:
        out.extend(process.push([r for records in channels for r in records]))
    out.extend(process.finish())
    return out
