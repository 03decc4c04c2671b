"""SQL text from qualified trees (private): the planner's small rewriting helpers.

Column references ``alias.column`` of a qualified tree become the one column
``"alias.column"`` the scans make (:func:`renamed`) or the bare column a scan reads
(:func:`stripped`); the rest splits conditions and finds aggregates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._sql import DIALECT

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = [
    "aggregates",
    "conjuncts",
    "decomposable",
    "quoted",
    "renamed",
    "sql",
    "stripped",
    "tables",
    "where",
]


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql(e: exp.Expr) -> str:
    return e.sql(dialect=DIALECT)


def conjuncts(e: exp.Expr | None) -> list[exp.Expr]:
    from sqlglot import exp

    if e is None:
        return []
    if isinstance(e, exp.And):
        return conjuncts(e.this) + conjuncts(e.expression)
    if isinstance(e, exp.Paren):
        return conjuncts(e.this) if isinstance(e.this, exp.And) else [e]
    return [e]


def tables(e: exp.Expr) -> set[str]:
    from sqlglot import exp

    return {c.table for c in e.find_all(exp.Column) if c.table}


def renamed(e: exp.Expr) -> exp.Expr:
    """``alias.column`` references as the one column ``"alias.column"`` the scans made."""
    from sqlglot import exp

    def rename(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.table:
            return exp.Column(this=exp.Identifier(this=f"{node.table}.{node.name}", quoted=True))
        return node

    return e.copy().transform(rename)


def stripped(e: exp.Expr) -> exp.Expr:
    """``alias.column`` references as the bare column (a scan's input)."""
    from sqlglot import exp

    def strip(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.table:
            return exp.Column(this=exp.Identifier(this=node.name, quoted=True))
        return node

    return e.copy().transform(strip)


def aggregates(e: exp.Expr) -> list[exp.Expr]:
    from sqlglot import exp

    return list(e.find_all(exp.AggFunc))


def decomposable(agg: exp.Expr) -> bool:
    from sqlglot import exp

    if isinstance(agg.parent, exp.Filter):
        return False
    if isinstance(agg, exp.Min | exp.Max):
        return True
    if isinstance(agg, exp.Count | exp.Sum | exp.Avg):
        return not isinstance(agg.this, exp.Distinct)
    return False


def where(conditions: list[exp.Expr]) -> str:
    return f" WHERE {' AND '.join(sql(renamed(c)) for c in conditions)}" if conditions else ""
