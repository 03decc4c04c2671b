"""Window table-valued functions over event time: ``TUMBLE`` and ``HOP`` (private).

Written as Flink writes them, ``FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), 10))`` (or the
short ``FROM TUMBLE(t, ts, 10)``; ``HOP(t, ts, slide, size)``), each becomes a subquery that
adds ``window_start`` and ``window_end`` to the table's rows (``HOP``: one row per window that
holds the row), so the rest of the planner sees plain SQL. The event time is a TIMESTAMP (sizes
are INTERVALs; windows from the epoch on, DuckDB's ``time_bucket``) or a number (an epoch in any
unit); windows are ``[k * size, (k + 1) * size)``, as Flink's without offset.

Over a bounded table a windowed aggregate is an ordinary ``GROUP BY window_start, ...``. Over an
unbounded one (``TUMBLE`` only), each group of a window is emitted once the watermark passes the
window's end: pre-aggregated per chunk, the partial rows (ordered by window) go through
pydispatch's keyed event-time window operator (``time_window``), which merges them
(:class:`MergeRows`) and fires on watermarks, and :class:`FinishRows` computes the outputs.

Flink's ``TABLE(...)``/``DESCRIPTOR(...)`` wrapping is not SQL sqlglot parses: :func:`unwrap`
rewrites it to the short form before parsing (a textual rewrite of that one construct).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SqlError
from ._engine import run
from ._steps import SchemaBytes

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

__all__ = ["FinishRows", "GroupKey", "MergeRows", "expand", "unwrap"]

_FLINK = re.compile(
    r"\bTABLE\s*\(\s*(TUMBLE|HOP)\s*\(\s*TABLE\s+([\w\"]+)\s*,\s*DESCRIPTOR\s*\(\s*([\w\"]+)\s*\)",
    re.IGNORECASE,
)


def unwrap(sql: str) -> str:
    """``TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), ...))`` as ``TUMBLE(t, ts, ...)``."""
    while True:
        found = _FLINK.search(sql)
        if found is None:
            return sql
        end = found.end()
        # TABLE( and the call's own parenthesis are open: find the one closing TABLE(.
        depth = 2
        i = end
        while i < len(sql) and depth:
            if sql[i] == "(":
                depth += 1
            elif sql[i] == ")":
                depth -= 1
            i += 1
        if depth:
            return sql  # unbalanced: the parser will say where
        head = f"{found[1]}({found[2]}, {found[3]}"
        sql = sql[: found.start()] + head + sql[end : i - 1] + sql[i:]


def expand(tree: exp.Expr, schemas: dict[str, pa.Schema]) -> exp.Expr:
    """``tree`` with every ``TUMBLE``/``HOP`` call in FROM as the subquery it stands for."""
    import pyarrow as pa
    import sqlglot
    from sqlglot import exp

    for table in list(tree.find_all(exp.Table)):
        call = table.this
        if not isinstance(call, exp.Anonymous) or str(call.this).upper() not in ("TUMBLE", "HOP"):
            continue
        kind = str(call.this).upper()
        args = list(call.expressions)
        want = 3 if kind == "TUMBLE" else 4
        if len(args) != want or not all(isinstance(a, exp.Column) for a in args[:2]):
            shape = "TUMBLE(table, time, size)" if want == 3 else "HOP(table, time, slide, size)"
            raise SqlError(f"{kind} takes {shape}, got {call.sql(dialect='duckdb')}")
        name, ts = args[0].name, args[1].name
        schema = schemas.get(name)
        if schema is None:
            raise SqlError(f"unknown table {name!r} in {kind}")
        if ts not in schema.names:
            raise SqlError(f"unknown column {ts!r} in {kind}: {name} has {schema.names}")
        kind_of_ts = schema.field(ts).type
        stamped = pa.types.is_timestamp(kind_of_ts) and kind_of_ts.tz is None
        if not (stamped or pa.types.is_integer(kind_of_ts) or pa.types.is_floating(kind_of_ts)):
            raise SqlError(
                f"type mismatch: {kind}'s time column {ts!r} is {kind_of_ts}; event time is a "
                "number (an epoch) or a TIMESTAMP"
            )
        sizes = [_size(a, kind, stamped) for a in args[2:]]
        q = '"' + ts.replace('"', '""') + '"'
        source = '"' + name.replace('"', '""') + '"'

        if kind == "TUMBLE":
            (size,) = sizes
            start = _bucket(size, q, stamped)
            body = (
                f"SELECT *, {start} AS window_start, {start} + {size} AS window_end FROM {source}"
            )
        else:
            slide, size = sizes
            last = _bucket(slide, q, stamped)
            body = (
                f"SELECT *, window_start + {size} AS window_end FROM (SELECT *, unnest("
                f"generate_series({last} - {size} + {slide}, {last}, {slide})) AS window_start "
                f"FROM {source}) AS __hop WHERE window_start + {size} > {q}"
            )
        sub = exp.Subquery(
            this=sqlglot.parse_one(body, read="duckdb"),
            alias=exp.TableAlias(this=exp.to_identifier(table.alias or name)),
        )
        if kind == "TUMBLE":
            if stamped:
                sub.meta["tumble"] = _micros(sizes[0])
                sub.meta["epoch"] = True
            else:
                sub.meta["tumble"] = float(sizes[0])
        table.replace(sub)
    return tree


def _bucket(size: str, time: str, stamped: bool) -> str:
    """The start of the window of ``size`` holding ``time`` (windows from the epoch on)."""
    if stamped:
        return f"time_bucket({size}, {time}, TIMESTAMP '1970-01-01')"
    return f"{time} - ({time} % {size})"


def _size(arg: exp.Expr, kind: str, stamped: bool) -> str:
    """A window size as SQL: a positive number, or an INTERVAL for a TIMESTAMP time."""
    from sqlglot import exp

    if stamped:
        if not isinstance(arg, exp.Interval) or _micros(arg.sql(dialect="duckdb")) <= 0:
            raise SqlError(f"{kind} over a TIMESTAMP takes INTERVAL sizes, got {arg.sql()}")
        return str(arg.sql(dialect="duckdb"))
    if not isinstance(arg, exp.Literal) or arg.is_string or not float(arg.this) > 0:
        raise SqlError(f"{kind}: window sizes are positive numbers, got {arg.sql()}")
    return str(arg.this)


def _micros(interval: str) -> int:
    """An INTERVAL's length in microseconds (DuckDB's reckoning: a month is 30 days)."""
    import duckdb

    from ._engine import connection

    try:
        rows = connection().sql(f"SELECT epoch_us({interval})").fetchall()
    except duckdb.Error as e:
        raise SqlError(f"not an interval: {interval} ({e})") from None
    return int(rows[0][0])


def _hashable(value: Any) -> Any:
    """A group key's value as the partitioner hashes it: equal values alike (NULL one value,
    a TIMESTAMP or other value by its text)."""
    if value is None:
        return "\x00NULL"
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | str | bytes):
        return value
    return str(value)


@dataclass(frozen=True)
class GroupKey:
    """A partial row's key: its first ``n`` fields (the group keys, the window's among them)."""

    n: int

    def __call__(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_hashable(v) for v in row[: self.n])


def _add(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b


def _least(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


_MERGE = {"sum": _add, "min": _least, "max": _greatest}


@dataclass(frozen=True)
class MergeRows:
    """Keyed ``reduce`` of partial rows of one group and window: the first ``n`` fields are
    the key, each other is merged by its function (``sum``, ``min`` or ``max``, NULL-aware)."""

    n: int
    merges: tuple[str, ...]

    def __call__(self, a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
        merged = [
            _MERGE[m](x, y) for m, x, y in zip(self.merges, a[self.n :], b[self.n :], strict=True)
        ]
        return (*a[: self.n], *merged)


@dataclass(frozen=True)
class FinishRows:
    """``map_batches`` over fired partial rows: a chunk of ``partial``'s schema through
    ``sql`` (over ``side0``)."""

    partial: SchemaBytes
    sql: str

    def __call__(self, rows: list[tuple[Any, ...]]) -> list[pa.Table]:
        import pyarrow as pa

        if not rows:
            return []
        schema = self.partial.schema
        columns = list(zip(*rows, strict=True))
        arrays = [pa.array(list(c), type=t) for c, t in zip(columns, schema.types, strict=True)]
        return [run(self.sql, {"side0": pa.Table.from_arrays(arrays, schema=schema)})]
