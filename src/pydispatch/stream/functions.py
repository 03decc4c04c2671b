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

__all__ = [
    "FilterFunction",
    "FlatMapFunction",
    "Function",
    "KeySelector",
    "MapFunction",
    "ReduceFunction",
]


class Function:
    """The base of every user-function class (PyFlink's ``Function``)."""

    def open(self, runtime_context: object) -> None:
        """Kept for PyFlink source compatibility; pydispatch does not call it."""

    def close(self) -> None:
        """Kept for PyFlink source compatibility; pydispatch does not call it."""


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


#: The method an instance of each class stands for (read by ``_checks.as_function``).
METHODS: dict[type[Function], str] = {
    MapFunction: "map",
    FlatMapFunction: "flat_map",
    FilterFunction: "filter",
    KeySelector: "get_key",
    ReduceFunction: "reduce",
}
