"""PyFlink's user-function classes (``pyflink.datastream.functions``), for porting jobs.

A PyFlink job subclasses these and passes instances where pydispatch takes a plain function:
``stream.map(MyMap())`` calls ``MyMap().map(record)`` per record, exactly as
``stream.map(lambda r: ...)`` would call the lambda. Every operator that takes a function takes
the matching class: ``map`` a :class:`MapFunction`, ``flat_map`` a :class:`FlatMapFunction`,
``filter`` a :class:`FilterFunction`, ``key_by`` (and ``partition_custom``'s key) a
:class:`KeySelector`, ``reduce`` a :class:`ReduceFunction`. The instance is cloudpickled with
the job, so its attributes travel with it.

What differs from PyFlink: ``open(runtime_context)``/``close()`` are not called (a function has
no lifecycle of its own here; initialise lazily in the method if needed), and a method may not
be left abstract: calling an instance whose method was not overridden raises
``NotImplementedError`` naming the class.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._exports import publish
from ..dataflow.process import Context as _Context
from ..dataflow.process import OnTimerContext as _OnTimerContext
from ..dataflow.process import RuntimeContext, TimeDomain, TimerService

__all__ = [
    "AggregateFunction",
    "FilterFunction",
    "FlatMapFunction",
    "Function",
    "KeySelector",
    "KeyedProcessFunction",
    "MapFunction",
    "ReduceFunction",
    "RuntimeContext",
    "TimeDomain",
    "TimerService",
]


class Function:
    """The base of every user-function class (PyFlink's ``Function``)."""

    def open(self, runtime_context: Any) -> None:
        """Called before the first record for a :class:`KeyedProcessFunction` only; kept on
        the others for PyFlink source compatibility."""

    def close(self) -> None:
        """Called at end of input for a :class:`KeyedProcessFunction` only."""


class MapFunction(Function):
    """One output record per input record: override ``map``."""

    def map(self, value: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not override map(value)")


class FlatMapFunction(Function):
    """Any number of output records per input record: override ``flat_map`` (return or yield
    them)."""

    def flat_map(self, value: Any) -> Iterable[Any]:
        raise NotImplementedError(f"{type(self).__name__} does not override flat_map(value)")


class FilterFunction(Function):
    """Keep the records for which ``filter`` returns true."""

    def filter(self, value: Any) -> bool:
        raise NotImplementedError(f"{type(self).__name__} does not override filter(value)")


class KeySelector(Function):
    """A record's key: override ``get_key``."""

    def get_key(self, value: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not override get_key(value)")


class ReduceFunction(Function):
    """Combine two values of one key into one: override ``reduce``."""

    def reduce(self, value1: Any, value2: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not override reduce(value1, value2)")


class AggregateFunction(Function):
    """Folds values into an accumulator (an ``AggregatingStateDescriptor``'s function):
    override ``create_accumulator``, ``add(value, accumulator)`` (returns the accumulator)
    and ``get_result(accumulator)``; ``merge`` is kept for PyFlink source compatibility."""

    def create_accumulator(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not override create_accumulator()")

    def add(self, value: Any, accumulator: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not override add(value, acc)")

    def get_result(self, accumulator: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not override get_result(acc)")

    def merge(self, acc_a: Any, acc_b: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not override merge(a, b)")


class KeyedProcessFunction(Function):
    """A function over a keyed stream with keyed state and timers (``KeyedStream.process``).

    Override ``process_element(value, ctx)``, returning or yielding output records (or
    returning None); ``ctx`` is a :class:`KeyedProcessFunction.Context`: ``timestamp()``,
    ``get_current_key()``, ``timer_service()``. Override ``on_timer(timestamp, ctx)`` when
    registering timers (``ctx.time_domain()`` says which clock fired). Get state in ``open``
    from the :class:`RuntimeContext`: ``runtime_context.get_state(ValueStateDescriptor(...))``.
    """

    Context = _Context
    OnTimerContext = _OnTimerContext

    def process_element(self, value: Any, ctx: _Context) -> Iterable[Any] | None:
        raise NotImplementedError(
            f"{type(self).__name__} does not override process_element(value, ctx)"
        )

    def on_timer(self, timestamp: Any, ctx: _OnTimerContext) -> Iterable[Any] | None:
        """A timer of the current key fired; no output unless overridden."""
        return None


#: The method an instance of each class stands for (read by ``_checks.as_function``).
METHODS: dict[type[Function], str] = {
    MapFunction: "map",
    FlatMapFunction: "flat_map",
    FilterFunction: "filter",
    KeySelector: "get_key",
    ReduceFunction: "reduce",
}

# Relabel the runtime's classes users meet here (the classes above are defined here already).
publish(__name__, globals(), __all__)
for _nested in (_Context, _OnTimerContext):
    _nested.__module__ = __name__
    _nested.__qualname__ = f"KeyedProcessFunction.{_nested.__name__}"
