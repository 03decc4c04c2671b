"""The work inside one slice: DuckDB queries over Arrow tables (private).

Each subtask of a SQL job runs its share of the query with DuckDB, an embedded engine, over the
columnar batches ("chunks": ``pyarrow.Table``) that its slice holds. Why DuckDB rather than
polars or the native kernels: it scans Arrow without copying and returns Arrow; it runs any SQL
expression, aggregate and join with a vectorised engine, so every construct the planner passes
through (expressions, ``CASE``, casts, string functions) costs no code here; and the results
then have the semantics of one well-known engine (NULLs, integer sums as HUGEINT, ``/`` as
float division), the one the tests compare against. polars would need the plan translated to
its expression API construct by construct, with other NULL and type rules.

Every function here runs in a worker slot (or in this process: the in-process executor and the
planner, which runs each step over empty tables to learn its output schema and catch type
errors before anything is shipped). A slot runs one thread per subtask, so each thread has a
DuckDB connection of its own, with one DuckDB thread: the parallelism is the slices'.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..errors import SqlError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

__all__ = ["concat", "connection", "describe", "describe_error", "run"]

_local = threading.local()


def connection() -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection (in memory, one thread)."""
    con: duckdb.DuckDBPyConnection | None = getattr(_local, "con", None)
    if con is None:
        import duckdb

        con = duckdb.connect(":memory:", config={"threads": 1})
        _local.con = con
    return con


def run(sql: str, tables: dict[str, pa.Table]) -> pa.Table:
    """``sql`` over ``tables`` (each registered under its name for this query only); what
    DuckDB refuses (a value it cannot convert, met while running) is a ``SqlError``."""
    import duckdb

    con = connection()
    for name, table in tables.items():
        con.register(name, table)
    try:
        result: pa.Table = con.sql(sql).to_arrow_table()
    except duckdb.Error as e:
        raise describe_error(e) from None
    finally:
        for name in tables:
            con.unregister(name)
    return result


def describe(sql: str, tables: dict[str, pa.Schema]) -> list[tuple[str, str]]:
    """``(column, DuckDB type)`` of ``sql``'s result over empty tables of these schemas."""
    con = connection()
    for name, schema in tables.items():
        con.register(name, schema.empty_table())
    try:
        rows: list[Any] = con.sql(f"DESCRIBE {sql}").fetchall()
    finally:
        for name in tables:
            con.unregister(name)
    return [(str(r[0]), str(r[1])) for r in rows]


def concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """One table of ``tables`` (an empty one of ``schema`` when there are none)."""
    import pyarrow as pa

    if not tables:
        return schema.empty_table()
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables([t if t.schema == schema else t.cast(schema) for t in tables])


def describe_error(error: Exception) -> SqlError:
    """A DuckDB error at binding or run time as a ``SqlError``: its kind in words, its first
    lines (the candidates DuckDB lists are left out)."""
    text = str(error).strip()
    kind, _, message = text.partition(": ")
    message = message or kind
    lines = [line for line in message.splitlines() if line.strip()]
    head = lines[0].rstrip("!")
    mismatch = ("No function matches", "Cannot compare", "Could not convert", "Cannot mix")
    if any(m in head for m in mismatch) or "Conversion Error" in kind:
        head = f"type mismatch: {head}"
    elif kind.startswith("Binder Error") and "not found in FROM clause" in head:
        head = f"unknown column: {head}"
    elif kind.startswith("Catalog Error"):
        head = f"unknown name: {head}"
    else:
        head = f"{kind.lower()}: {head}" if message is not text else head
    return SqlError(head)
