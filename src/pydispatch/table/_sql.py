"""From SQL text to a checked query (private): parsing, names, types, and the errors a SQL user
understands.

The text is parsed by sqlglot (DuckDB's dialect), its table names looked up in the catalog, its
columns resolved and qualified by sqlglot's optimizer (``qualify``), and the whole statement
then bound by DuckDB over empty tables of the catalog's schemas, which checks every type and
gives the result's columns. Each failure becomes a :class:`~pydispatch.errors.SqlError` that
names the problem; none is a traceback from inside.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..errors import SqlError
from ._engine import describe_error

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

__all__ = ["DIALECT", "describe_error", "duckdb_types", "parse", "qualified", "unsupported"]

#: The SQL dialect statements are read and written in.
DIALECT = "duckdb"


def parse(sql: str) -> exp.Expr:
    """One statement, parsed (a ``SqlError`` with the position for a syntax error)."""
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    from ._windows import unwrap

    if not isinstance(sql, str) or not sql.strip():
        raise SqlError("expected a SQL statement, got an empty string")
    try:
        statements = [s for s in sqlglot.parse(unwrap(sql), read=DIALECT) if s is not None]
    except ParseError as e:
        first: dict[str, Any] = e.errors[0] if e.errors else {}
        line, column = first.get("line"), first.get("col")
        near = first.get("highlight") or ""
        what = str(first.get("description") or e).split(". Line")[0]
        raise SqlError(
            f"SQL syntax error at line {line}, column {column}"
            + (f" near {near!r}" if near else "")
            + f": {what}",
            line=line,
            column=column,
        ) from None
    except TokenError as e:
        raise SqlError(f"SQL syntax error: {e}") from None
    if len(statements) != 1:
        raise SqlError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


def unsupported(what: str) -> SqlError:
    return SqlError(f"unsupported SQL: {what}")


_POSITION = re.compile(r"Line: (\d+), Col: (\d+)")


def qualified(tree: exp.Expr, schemas: dict[str, pa.Schema]) -> exp.Expr:
    """``tree`` with every column qualified by its table alias and ``*`` expanded, or a
    ``SqlError`` naming an unknown or ambiguous column."""
    from sqlglot.errors import OptimizeError
    from sqlglot.optimizer.qualify import qualify

    mapping: dict[str, object] = {name: duckdb_types(s) for name, s in schemas.items()}
    try:
        return qualify(tree.copy(), schema=mapping, dialect=DIALECT, validate_qualify_columns=True)
    except OptimizeError as e:
        text = str(e)
        found = _POSITION.search(text)
        line, column = (int(found[1]), int(found[2])) if found else (None, None)
        text = _POSITION.sub("", text).strip().rstrip(".")
        unknown = re.match(r"Column '(.+)' could not be resolved", text)
        if unknown:
            known = sorted({c for s in schemas.values() for c in s.names})
            text = f"unknown column {unknown[1]!r} (columns in scope include {known})"
        where = f" at line {line}, column {column}" if line else ""
        raise SqlError(f"{text}{where}", line=line, column=column) from None


def duckdb_types(schema: pa.Schema) -> dict[str, str]:
    """Column -> DuckDB type name of an Arrow schema (DuckDB's own mapping)."""
    from ._engine import describe

    return dict(describe("SELECT * FROM t", {"t": schema}))
