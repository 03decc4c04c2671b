"""Argument checks and schema rules of ``pydispatch.stream``: private, raise at build time."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from ..plan._job_graph import KeySpec, Schema
from .functions import METHODS, Function

__all__ = [
    "aggregate_schema",
    "as_function",
    "check_callable",
    "check_field",
    "check_parallelism",
    "key_spec",
    "union_schema",
]

_AGGREGATIONS = ("sum", "min", "max")


def check_callable(function: Any, what: str) -> Any:
    if not callable(function):
        raise TypeError(f"{what}: expected a function, got {type(function).__name__}")
    return function


def as_function(function: Any, expected: type[Function], what: str) -> Any:
    """``function`` itself when it is a plain callable, else the bound method an instance of
    ``expected`` (a :mod:`pydispatch.stream.functions` class) stands for; ``TypeError`` naming
    what was expected otherwise."""
    if isinstance(function, Function):
        if not isinstance(function, expected):
            raise TypeError(
                f"{what}: expected a function or a {expected.__name__}, got a "
                f"{type(function).__name__}"
            )
        return getattr(function, METHODS[expected])
    if not callable(function):
        raise TypeError(
            f"{what}: expected a function or a {expected.__name__}, got {type(function).__name__}"
        )
    return function


def check_parallelism(parallelism: object, what: str) -> int:
    if isinstance(parallelism, bool):
        raise TypeError(f"{what}: parallelism must be an integer, not bool")
    try:
        p = operator.index(parallelism)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{what}: parallelism must be an integer, not {type(parallelism).__name__}"
        ) from None
    if p < 1:
        raise ValueError(f"{what}: parallelism must be >= 1, got {p}")
    return p


def key_spec(key: object, scheme: str, schema: Schema, what: str) -> KeySpec:
    """A key selector checked against what is known of the records."""
    if scheme not in ("hash", "flink"):
        raise ValueError(f"{what}: unknown key scheme {scheme!r}; use 'hash' or 'flink'")
    if isinstance(key, bool):
        raise TypeError(f"{what}: a key is a function, an index or a field name, not bool")
    if isinstance(key, int):
        if schema.columnar:
            raise TypeError(f"{what}: a columnar stream is keyed by column name, not index")
        if key < 0:
            raise ValueError(f"{what}: a key index must be >= 0, got {key}")
        return KeySpec("index", key, scheme)  # type: ignore[arg-type]
    if isinstance(key, str):
        if schema.fields is not None and key not in schema.fields:
            raise ValueError(f"{what}: no field {key!r}; the records have {list(schema.fields)}")
        return KeySpec("column", key, scheme)  # type: ignore[arg-type]
    if callable(key):
        return KeySpec("function", key, scheme)  # type: ignore[arg-type]
    raise TypeError(
        f"{what}: a key is a function, an index or a field name, not {type(key).__name__}"
    )


def check_field(field: object, schema: Schema, what: str) -> None:
    if field is None:
        if schema.columnar and what in _AGGREGATIONS:
            raise ValueError(f"{what}: a columnar stream aggregates a column: name it")
        return
    if isinstance(field, bool) or not isinstance(field, int | str):
        raise TypeError(f"{what}: field must be None, an index or a name, not {field!r}")
    if isinstance(field, int):
        if schema.columnar:
            raise TypeError(f"{what}: a columnar stream aggregates a column by name")
        if field < 0:
            raise ValueError(f"{what}: a field index must be >= 0, got {field}")
    elif schema.fields is not None and field not in schema.fields:
        raise ValueError(f"{what}: no field {field!r}; the records have {list(schema.fields)}")


def aggregate_schema(schema: Schema, key: KeySpec, agg: str, field: int | str | None) -> Schema:
    """The output of a keyed aggregation: columns ``(key, field)`` when it stays columnar."""
    if schema.columnar and key.kind == "column" and agg in (*_AGGREGATIONS, "count"):
        value = "count" if agg == "count" else str(field)
        if value == key.selector:
            raise ValueError(f"{agg}: the value column {value!r} is the key column")
        # A key and a 64-bit value per output row: exact for numeric keys.
        return Schema(columnar=True, fields=(str(key.selector), value), row_bytes=16.0)
    if agg == "reduce":
        return Schema(fields=schema.fields)
    return Schema()


def union_schema(schemas: Sequence[Schema]) -> Schema:
    """What is known of the records of several streams together."""
    first = schemas[0]
    if all(s == first for s in schemas):
        return first
    if any(s.columnar for s in schemas):
        if not all(s.columnar for s in schemas):
            raise TypeError("union: a columnar stream and a record stream; map one of them first")
        if any(s.fields != first.fields for s in schemas):
            raise ValueError(
                f"union: columnar streams with different columns: {[s.fields for s in schemas]}"
            )
        return first
    if all(s.fields == first.fields for s in schemas):
        return Schema(fields=first.fields)
    return Schema()
