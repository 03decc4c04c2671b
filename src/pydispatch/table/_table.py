"""The Table API (private; re-exported by ``pydispatch.table``): tables built by method calls
over the same plans as SQL.

Each method writes the SQL it stands for over the tables it combines (``select`` is
``SELECT ... FROM this``, ``group_by(...).select(...)`` adds ``GROUP BY``, ``join`` is an inner
equi-join) and checks it at once, so a wrong column fails where it is written. Expressions are
SQL expression strings (``"a + 1 AS b"``, ``"count(*) AS n"``), as PyFlink's string expressions
were; a method taking several accepts them as several arguments or comma-separated.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from ..stream import DataStream
    from ._planner import Node
    from ._result import TableResult

__all__ = ["GroupedTable", "Table"]

_names = itertools.count()


class _Environment(Protocol):
    def _query(self, sql: str, refs: Mapping[str, Node]) -> Table: ...

    def _execute(self, node: Node) -> TableResult: ...

    def to_data_stream(self, table: Table) -> DataStream: ...


def _name() -> str:
    return f"__table{next(_names)}"


def _list(what: str, items: tuple[str, ...]) -> str:
    if not items or not all(isinstance(i, str) and i.strip() for i in items):
        raise TypeError(f"{what} takes SQL expressions as non-empty strings")
    return ", ".join(items)


class Table:
    """A table: data, or a query over tables; nothing runs until ``execute()`` (or a SQL
    statement over it, or ``to_data_stream``)."""

    def __init__(self, tenv: _Environment, node: Node) -> None:
        self._tenv = tenv
        self._node = node

    @property
    def schema(self) -> pa.Schema:
        """The columns and their (Arrow) types."""
        return self._node.schema

    @property
    def columns(self) -> list[str]:
        return list(self._node.schema.names)

    def get_schema(self) -> pa.Schema:
        return self.schema

    def __repr__(self) -> str:
        return f"Table({', '.join(self.columns)})"

    def _over(self, template: str, *others: Table) -> Table:
        refs = {_name(): t._node for t in (self, *others)}
        for other in others:
            if other._tenv is not self._tenv:
                raise ValueError("the tables belong to different table environments")
        sql = template
        for i, name in enumerate(refs):
            sql = sql.replace(f"{{{i}}}", name)
        return self._tenv._query(sql, refs)

    def select(self, *fields: str) -> Table:
        return self._over(f"SELECT {_list('select', fields)} FROM {{0}}")

    def where(self, predicate: str) -> Table:
        return self._over(f"SELECT * FROM {{0}} WHERE {_list('where', (predicate,))}")

    filter = where

    def group_by(self, *keys: str) -> GroupedTable:
        return GroupedTable(self, _list("group_by", keys))

    def distinct(self) -> Table:
        return self._over("SELECT DISTINCT * FROM {0}")

    def order_by(self, *keys: str) -> Table:
        return self._over(f"SELECT * FROM {{0}} ORDER BY {_list('order_by', keys)}")

    def limit(self, fetch: int, offset: int = 0) -> Table:
        if isinstance(fetch, bool) or not isinstance(fetch, int) or fetch < 0 or offset < 0:
            raise ValueError("limit: fetch and offset are integers >= 0")
        return self._over(f"SELECT * FROM {{0}} LIMIT {fetch} OFFSET {offset}")

    def join(self, right: Table, condition: str) -> Table:
        """Inner equi-join; the two tables' column names must differ (rename with
        ``select("a AS b")``), ``condition`` names them bare: ``"id = order_id"``."""
        return self._join("JOIN", right, condition)

    def left_outer_join(self, right: Table, condition: str) -> Table:
        return self._join("LEFT JOIN", right, condition)

    def _join(self, verb: str, right: Table, condition: str) -> Table:
        if not isinstance(right, Table):
            raise TypeError(f"join takes a Table, not {type(right).__name__}")
        clash = sorted(set(self.columns) & set(right.columns))
        if clash:
            raise ValueError(f"join: both tables have the columns {clash}; rename one side's")
        on = _list("join", (condition,))
        return self._over(f"SELECT * FROM {{0}} {verb} {{1}} ON {on}", right)

    def union_all(self, other: Table) -> Table:
        return self._over("SELECT * FROM {0} UNION ALL SELECT * FROM {1}", other)

    def execute(self) -> TableResult:
        """Run the table's query (a job of its environment) and return its rows."""
        return self._tenv._execute(self._node)

    def to_pandas(self) -> Any:
        return self.execute().to_pandas()


class GroupedTable:
    """A table grouped by keys: ``select`` its groups' keys and aggregates."""

    def __init__(self, table: Table, keys: str) -> None:
        self._table = table
        self._keys = keys

    def select(self, *fields: str) -> Table:
        return self._table._over(
            f"SELECT {_list('select', fields)} FROM {{0}} GROUP BY {self._keys}"
        )
