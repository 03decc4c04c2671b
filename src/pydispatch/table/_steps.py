"""What the operators of a SQL job call (private): picklable steps over Arrow chunks.

A SQL job's records are chunks, ``pyarrow.Table``\\ s of many rows, never single rows: the
planner (``_planner``) strings these steps onto pydispatch operators:

- :class:`LocalQuery` (``map``): a chunk through a DuckDB query (scan, filter, projection,
  pre-aggregation; chained into the source or the stage before);
- :class:`Split` (``flat_map``): a chunk cut by the hash of its key columns into one
  :class:`Part` per downstream subtask, keyed by a value the keyed edge routes to that subtask:
  pydispatch's partitioner (:func:`pydispatch.partition.partition` over the key columns, the
  key-group scheme of ``dataflow.routing``) decides where every row goes;
- :class:`Merge` (keyed ``reduce``): the parts a subtask receives gathered per input side,
  pre-aggregated partials compacted as they come (so memory is bounded by the groups);
- :class:`Finish` (``map`` of the reduce's single result per key, at end of input): the final
  aggregation, join, distinct or sort of the subtask's share, by DuckDB;
- sources and conversions: :class:`ArrowSource`, :class:`ParquetSource`, :class:`CsvChunks`,
  :class:`ToChunks`, and :class:`ToRows` for ``to_data_stream``.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..dataflow.routing import keyed_subtasks
from ..partition import scatter
from ._engine import concat, run

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "ArrowSource",
    "CsvChunks",
    "Finish",
    "LocalQuery",
    "Merge",
    "ParquetSource",
    "Part",
    "SchemaBytes",
    "Split",
    "ToChunks",
    "ToRows",
    "key_array",
]


@dataclass(frozen=True)
class SchemaBytes:
    """An Arrow schema kept as its IPC bytes: a job master unpickles a SQL job's steps without
    importing pyarrow (a quarter of a second); the slots decode it when they run them."""

    data: bytes

    @classmethod
    def of(cls, schema: pa.Schema) -> SchemaBytes:
        return cls(schema.serialize().to_pybytes())

    @functools.cached_property
    def schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.ipc.read_schema(pa.py_buffer(self.data))


@dataclass(frozen=True)
class LocalQuery:
    """A chunk (registered as ``input``) through ``sql``."""

    sql: str

    def __call__(self, chunk: pa.Table) -> pa.Table:
        return run(self.sql, {"input": chunk})


class Part:
    """What one subtask gathers for one key: the chunks of each input side."""

    def __init__(self, sides: list[list[pa.Table]], rows: int) -> None:
        self.sides = sides
        self.rows = rows
        self.compacted = 0  # rows after the last compaction

    @classmethod
    def of(cls, side: int, sides: int, chunk: pa.Table) -> Part:
        tables: list[list[pa.Table]] = [[] for _ in range(sides)]
        tables[side].append(chunk)
        return cls(tables, chunk.num_rows)


def key_array(column: Any) -> npt.NDArray[Any]:
    """A key column as the partitioner takes it: equal SQL values give equal hashes (an integer
    and the equal float hash alike; NULLs are one value; other types by their text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_decimal(kind):
        column = column.cast(pa.float64())
        kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        if column.null_count:
            column = column.cast(pa.float64()).fill_null(float("nan"))
        return np.asarray(column.to_numpy(zero_copy_only=False))
    if pa.types.is_boolean(kind):
        return np.asarray(column.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.uint8)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        column = pc.cast(column, pa.string())
    return np.asarray(column.fill_null("").to_numpy(zero_copy_only=False), dtype=object)


@dataclass(frozen=True)
class Split:
    """A chunk into one :class:`Part` per downstream subtask that gets rows of it.

    ``keys``: the columns hashed (``drop``: removed from the parts); none, or one downstream
    subtask, sends the whole chunk to subtask 0 (``always``: even when empty, so that a global
    aggregate's single subtask runs on an empty input). ``routes[t]``: a key the keyed edge
    sends to subtask ``t``; ``max_parallelism``: that edge's key groups."""

    side: int
    sides: int
    keys: tuple[str, ...]
    routes: tuple[int, ...]
    max_parallelism: int
    always: bool = False
    drop: bool = False

    def __call__(self, chunk: pa.Table) -> list[tuple[int, Part]]:
        q = len(self.routes)
        body = chunk.drop_columns(list(self.keys)) if self.drop else chunk
        if not self.keys or q == 1:
            if body.num_rows == 0 and not self.always:
                return []
            return [(self.routes[0], Part.of(self.side, self.sides, body))]
        if body.num_rows == 0:
            return []
        keys = tuple(key_array(chunk.column(k)) for k in self.keys)
        ids = keyed_subtasks(keys, "hash", q, self.max_parallelism)
        order, offsets = scatter(ids, q)
        bounds = offsets.tolist()
        out = []
        for t in range(q):
            lo, hi = bounds[t], bounds[t + 1]
            if hi > lo:
                piece = body.take(order[lo:hi])
                out.append((self.routes[t], Part.of(self.side, self.sides, piece)))
        return out


@dataclass(frozen=True)
class Merge:
    """Keyed ``reduce``: two parts of one key into one. With ``compact_sql`` (a query over
    ``side0`` giving rows of the same ``schema``: a re-aggregation of partials, a DISTINCT), the
    gathered chunks are compacted once they hold ``limit`` rows and twice the last compaction's
    output."""

    compact_sql: str | None = None
    schema: SchemaBytes | None = None
    limit: int = 1 << 16

    def __call__(self, a: tuple[int, Part], b: tuple[int, Part]) -> tuple[int, Part]:
        key, into = a
        other = b[1]
        for side, tables in enumerate(other.sides):
            into.sides[side].extend(tables)
        into.rows += other.rows
        if (
            self.compact_sql is not None
            and self.schema is not None
            and into.rows > max(self.limit, 2 * into.compacted)
            and len(into.sides[0]) > 1
        ):
            schema = self.schema.schema
            merged = run(self.compact_sql, {"side0": concat(into.sides[0], schema)})
            if merged.schema != schema:
                merged = merged.cast(schema)
            into.sides[0] = [merged]
            into.rows = into.compacted = merged.num_rows
        return key, into


@dataclass(frozen=True)
class Finish:
    """A subtask's gathered part (its sides registered as ``side0``, ``side1``) through
    ``sql``; a side that received nothing is an empty table of its schema."""

    sql: str
    schemas: tuple[SchemaBytes, ...]

    def __call__(self, record: tuple[int, Part]) -> pa.Table:
        part = record[1]
        tables = {f"side{i}": concat(part.sides[i], s.schema) for i, s in enumerate(self.schemas)}
        return run(self.sql, tables)


@dataclass(frozen=True)
class ArrowSource:
    """A parallel source over an in-memory table: subtask ``i`` of ``p`` reads rows
    ``[n*i/p, n*(i+1)/p)`` in chunks of ``chunk_rows`` (at least one chunk, maybe empty)."""

    table: pa.Table
    chunk_rows: int = 1 << 20

    def __call__(self, index: int, parallelism: int) -> Iterator[pa.Table]:
        n = self.table.num_rows
        lo, hi = n * index // parallelism, n * (index + 1) // parallelism
        yield self.table.slice(lo, min(self.chunk_rows, hi - lo))
        for start in range(lo + self.chunk_rows, hi, self.chunk_rows):
            yield self.table.slice(start, min(self.chunk_rows, hi - start))


@dataclass(frozen=True)
class ParquetSource:
    """A parallel source over a Parquet file: subtask ``i`` of ``p`` reads a contiguous range
    of its row groups, one chunk per row group, only ``columns``, with DuckDB (which prunes row
    groups by the row numbers asked); ``sql`` (a query over ``input``), when given, runs in
    the same DuckDB query, fused with the read. ``starts``: each row group's first row, and
    the file's row count last."""

    path: str
    columns: tuple[str, ...]
    starts: tuple[int, ...]
    sql: str | None = None

    def __call__(self, index: int, parallelism: int) -> Iterator[pa.Table]:
        groups = len(self.starts) - 1
        lo, hi = groups * index // parallelism, groups * (index + 1) // parallelism
        path = self.path.replace("'", "''")
        cols = ", ".join('"' + c.replace('"', '""') + '"' for c in self.columns)
        for group in range(lo, max(hi, lo + 1)):
            first, last = (self.starts[group], self.starts[group + 1]) if hi > lo else (0, 0)
            scan = (
                f"SELECT {cols} FROM read_parquet('{path}', file_row_number = true) "
                f"WHERE file_row_number >= {first} AND file_row_number < {last}"
            )
            yield run(scan if self.sql is None else f"WITH input AS ({scan}) {self.sql}", {})


@dataclass(frozen=True)
class CsvChunks:
    """``map_batches`` over a CSV file's lines (``read_text``'s byte-range split): the lines of
    a batch parsed as one CSV chunk of ``schema``; a line equal to ``header`` is skipped."""

    arrow: SchemaBytes
    header: str | None
    delimiter: str = ","

    def __call__(self, lines: list[str]) -> list[pa.Table]:
        import pyarrow.csv as csv

        body = [line for line in lines if line and line != self.header]
        if not body:
            return []
        schema = self.arrow.schema
        data = ("\n".join(body) + "\n").encode()
        return [
            csv.read_csv(
                io.BytesIO(data),
                read_options=csv.ReadOptions(column_names=schema.names),
                parse_options=csv.ParseOptions(delimiter=self.delimiter),
                convert_options=csv.ConvertOptions(
                    column_types=dict(zip(schema.names, schema.types, strict=True))
                ),
            )
        ]


@dataclass(frozen=True)
class ToChunks:
    """``map_batches``: a data stream's records as chunks of ``schema``: a dict of numpy
    columns as is; records by position (tuples, lists), by name (dicts) or, for one column,
    as the value itself."""

    arrow: SchemaBytes

    def __call__(self, batch: Any) -> list[pa.Table]:
        import pyarrow as pa

        schema = self.arrow.schema
        names = schema.names
        if isinstance(batch, dict):
            columns = [batch[n] for n in names]
        elif not batch:
            return []
        else:
            first = batch[0]
            if isinstance(first, dict):
                columns = [[r.get(n) for r in batch] for n in names]
            elif isinstance(first, tuple | list):
                width = len(names)
                bad = next((r for r in batch if len(r) != width), None)
                if bad is not None:
                    raise ValueError(
                        f"from_data_stream: record {bad!r} has {len(bad)} fields; the table "
                        f"has {width} columns {names}"
                    )
                columns = [list(c) for c in zip(*batch, strict=True)]
            elif len(names) == 1:
                columns = [list(batch)]
            else:
                raise ValueError(
                    f"from_data_stream: record {first!r} is one value; the table has "
                    f"{len(names)} columns {names}: make the records tuples or dicts"
                )
        arrays = []
        for name, kind, column in zip(names, schema.types, columns, strict=True):
            try:
                arrays.append(pa.array(column, type=kind))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as e:
                raise ValueError(
                    f"from_data_stream: column {name!r} does not hold {kind} values ({e}); "
                    "give from_data_stream a schema with its type"
                ) from None
        return [pa.Table.from_arrays(arrays, schema=schema)]


@dataclass(frozen=True)
class ToRows:
    """``flat_map``: a chunk's rows as tuples (``to_data_stream``)."""

    def __call__(self, chunk: pa.Table) -> list[tuple[Any, ...]]:
        from ._result import python_rows

        return python_rows(chunk)
