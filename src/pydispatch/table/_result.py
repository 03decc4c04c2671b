"""What ``execute_sql`` and ``Table.execute`` return (private; re-exported by
``pydispatch.table``)."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CloseableIterator", "TableResult", "python_rows"]


def python_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """A table's rows as tuples of Python values, as DuckDB's ``fetchall`` gives them (a
    HUGEINT, which Arrow carries as a decimal of scale 0, as an int)."""
    import pyarrow as pa

    columns: list[list[Any]] = []
    for column, field in zip(table.columns, table.schema, strict=True):
        values = column.to_pylist()
        if pa.types.is_decimal(field.type) and field.type.scale == 0:
            values = [None if v is None else int(v) for v in values]
        columns.append(values)
    if not columns:
        return [() for _ in range(table.num_rows)]
    return list(zip(*columns, strict=True))


class CloseableIterator:
    """Rows one by one; also a context manager, as PyFlink's ``collect()`` result is."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = iter(rows)

    def __iter__(self) -> CloseableIterator:
        return self

    def __next__(self) -> tuple[Any, ...]:
        return next(self._rows)

    def close(self) -> None:
        self._rows = iter(())

    def __enter__(self) -> CloseableIterator:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TableResult:
    """The result of a statement: its rows (tuples), column names and types.

    Iterate it (``for row in result``), ``collect()`` it (an iterator that is also a context
    manager, as in PyFlink), ``print()`` it (Flink's tableau form), or take it whole:
    ``to_arrow()``, ``to_pandas()``. A statement that returns no rows (``CREATE VIEW``) has
    one row ``("OK",)`` under the column ``result``, as Flink's have."""

    def __init__(self, schema: pa.Schema, chunks: list[pa.Table]) -> None:
        from ._engine import concat

        self._table = concat(
            [
                c if c.schema.names == schema.names else c.rename_columns(schema.names)
                for c in chunks
            ],
            schema,
        )
        self._rows: list[tuple[Any, ...]] | None = None

    @classmethod
    def ok(cls) -> TableResult:
        import pyarrow as pa

        table = pa.table({"result": ["OK"]})
        return cls(table.schema, [table])

    @property
    def columns(self) -> list[str]:
        return list(self._table.schema.names)

    @property
    def types(self) -> list[str]:
        return [str(t) for t in self._table.schema.types]

    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            self._rows = python_rows(self._table)
        return self._rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows())

    def __len__(self) -> int:
        return int(self._table.num_rows)

    def collect(self) -> CloseableIterator:
        return CloseableIterator(self.rows())

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_pandas(self) -> Any:
        return self._table.to_pandas()

    def print(self) -> None:
        """The rows as a table, with a line per row and the row count under it."""
        header = self.columns
        cells = [["NULL" if v is None else str(v) for v in row] for row in self.rows()]
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
        rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        lines = [
            rule,
            "| " + " | ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)) + " |",
            rule,
        ]
        for r in cells:
            lines.append(
                "| " + " | ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) + " |"
            )
        lines.append(rule)
        count = len(cells)
        lines.append(f"{count} row{'s' if count != 1 else ''} in set")
        print("\n".join(lines))

    def __repr__(self) -> str:
        return f"TableResult(columns={self.columns}, rows={len(self)})"
