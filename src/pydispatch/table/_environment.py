"""Table environments: the catalog of tables and views, and where their queries run (private).

A :class:`TableEnvironment` wraps a :class:`~pydispatch.stream.StreamEnvironment`: queries
become operators of that environment's jobs, so they run where its jobs run (in this process,
or on a cluster's workers, placed by the solver) at its parallelism.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import JobFailedError, SqlError
from ..stream import DataStream, StreamEnvironment
from ._planner import Node, Planner, QueryNode, SourceNode
from ._relations import Relation
from ._result import TableResult
from ._sql import DIALECT, describe_error, parse, qualified, unsupported
from ._steps import ArrowSource, CsvChunks, ParquetSource, SchemaBytes, ToChunks, ToRows
from ._table import Table

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

__all__ = ["EnvironmentSettings", "StreamTableEnvironment", "TableEnvironment", "prepare"]

#: Rows per chunk read from an in-memory table.
CHUNK_ROWS = 1 << 20


def prepare(tree: exp.Expr, catalog: Mapping[str, Node]) -> QueryNode:
    """A checked query over ``catalog``'s tables (see ``_sql``)."""
    import duckdb
    from sqlglot import exp

    from ._windows import expand

    tree = expand(tree.copy(), {name: node.schema for name, node in catalog.items()})
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    refs: dict[str, Node] = {}
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise unsupported(f"table functions in FROM ({table.sql(dialect=DIALECT)})")
        name = table.name
        if table.args.get("db") or table.args.get("catalog"):
            raise SqlError(f"unknown table {table.sql(dialect=DIALECT)!r}: no catalogs here")
        if name in ctes:
            continue
        if name not in catalog:
            known = ", ".join(sorted(n for n in catalog if not n.startswith("__"))) or "none"
            raise SqlError(f"unknown table {name!r} (tables and views: {known})")
        refs[name] = catalog[name]
    schemas = {name: node.schema for name, node in refs.items()}
    tree = tree.copy()
    qualified_tree = qualified(tree, schemas)
    from ._engine import run

    try:
        schema = run(
            tree.sql(dialect=DIALECT), {n: s.empty_table() for n, s in schemas.items()}
        ).schema
    except duckdb.Error as e:
        raise describe_error(e) from None
    bounded = all(node.bounded for node in refs.values())
    return QueryNode(qualified_tree, refs, schema, bounded)


class TableEnvironment:
    """Tables, views and SQL over a :class:`~pydispatch.stream.StreamEnvironment` (by default
    one running in this process): ``create_temporary_view``, ``sql_query``, ``execute_sql``
    and the sources ``from_arrays``, ``from_pandas``, ``from_arrow``, ``from_path``."""

    def __init__(self, env: StreamEnvironment | None = None) -> None:
        if env is not None and not isinstance(env, StreamEnvironment):
            raise TypeError(
                f"a table environment wraps a StreamEnvironment, not {type(env).__name__}"
            )
        self._env = env if env is not None else StreamEnvironment()
        self._catalog: dict[str, Node] = {}
        self._anonymous = 0

    @classmethod
    def create(cls, env: object = None) -> TableEnvironment:
        """PyFlink's constructor: ``create(env)`` over a stream environment, ``create()`` for
        one in this process, or ``create(EnvironmentSettings.in_batch_mode())`` (or streaming
        mode) for PyFlink's default, the environment
        ``StreamExecutionEnvironment.get_execution_environment()`` gives (the cluster named by
        ``PYDISPATCH_ADDRESS``, else an embedded one). A bounded table runs in batch mode
        either way."""
        if isinstance(env, EnvironmentSettings):
            from ..stream import StreamExecutionEnvironment

            return cls(StreamExecutionEnvironment.get_execution_environment())
        return cls(env if isinstance(env, StreamEnvironment) or env is None else _bad(env))

    @property
    def stream_environment(self) -> StreamEnvironment:
        return self._env

    # -- sources ----------------------------------------------------------------------------

    def from_arrow(self, table: pa.Table, *, name: str | None = None) -> Table:
        """A table of an in-memory ``pyarrow.Table`` (shipped with the jobs that read it,
        each source subtask reading a contiguous range of rows)."""
        import pyarrow as pa

        if not isinstance(table, pa.Table):
            raise TypeError(f"from_arrow takes a pyarrow.Table, not {type(table).__name__}")
        if table.num_columns == 0:
            raise ValueError("from_arrow: a table needs at least one column")
        label = name or "arrow"

        def build(env: StreamEnvironment, p: int, columns: tuple[str, ...]) -> Relation:
            part = table.select(list(columns) or [table.schema.names[0]])
            chunks = max(1, math.ceil(part.num_rows / CHUNK_ROWS) * p)
            stream = (
                env.from_source(
                    ArrowSource(part, CHUNK_ROWS),
                    parallel=True,
                    estimated_records=chunks,
                    name=f"Table {label}",
                )
                .set_parallelism(p)
                .hint(bytes_per_record=max(part.nbytes / chunks, 1.0))
            )
            return Relation(stream, part.schema, p)

        return self._table(SourceNode(label, table.schema, build))

    def from_elements(self, elements: Sequence[Any], schema: Sequence[str] | None = None) -> Table:
        """A table of rows given here (PyFlink's ``from_elements``): tuples, or single values
        for one column; ``schema`` names the columns (default ``_1``, ``_2``... as PyFlink);
        the types are inferred from the values."""
        import pyarrow as pa

        rows = [r if isinstance(r, tuple | list) else (r,) for r in elements]
        if not rows:
            raise ValueError("from_elements: no rows (a table's types come from its rows)")
        width = len(rows[0])
        if any(len(r) != width for r in rows):
            raise ValueError("from_elements: the rows differ in length")
        names = list(schema) if schema is not None else [f"_{i + 1}" for i in range(width)]
        if len(names) != width:
            raise ValueError(f"from_elements: {len(names)} names for rows of {width} values")
        columns = {n: [r[i] for r in rows] for i, n in enumerate(names)}
        try:
            return self.from_arrow(pa.table(columns))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(f"from_elements: {e}") from None

    def from_arrays(self, columns: Mapping[str, Any], *, name: str | None = None) -> Table:
        """A table of equal-length columns (numpy arrays, lists): a dict name -> column."""
        import pyarrow as pa

        if not isinstance(columns, Mapping) or not columns:
            raise TypeError("from_arrays takes a non-empty dict of column name -> values")
        try:
            table = pa.table({str(k): v for k, v in columns.items()})
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
            raise ValueError(f"from_arrays: {e}") from None
        return self.from_arrow(table, name=name)

    def from_pandas(self, frame: Any, *, name: str | None = None) -> Table:
        """A table of a pandas ``DataFrame`` (its index left out)."""
        import pyarrow as pa

        return self.from_arrow(pa.Table.from_pandas(frame, preserve_index=False), name=name)

    def from_path(self, path: str | os.PathLike[str], *, delimiter: str = ",") -> Table:
        """The view or table registered under ``path`` (PyFlink's ``from_path``), else a file:
        Parquet (``.parquet``/``.pq``: subtasks read contiguous row groups, only the columns
        a query uses) or CSV with a header line (subtasks read byte ranges, as ``read_text``;
        column types inferred from the file's first block; a quoted field may not hold a line
        break)."""
        text = os.fspath(path)
        if text in self._catalog:
            return self._table(self._catalog[text])
        full = os.path.abspath(text)
        if not os.path.isfile(full):
            raise ValueError(f"from_path: {text!r} is neither a registered table nor a file")
        if full.endswith((".parquet", ".pq")):
            return self._parquet(full)
        return self._csv(full, delimiter)

    def _parquet(self, path: str) -> Table:
        import itertools

        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        schema = meta.schema.to_arrow_schema()
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        starts = (0, *itertools.accumulate(sizes))

        def build(env: StreamEnvironment, p: int, columns: tuple[str, ...]) -> Relation:
            wanted = columns or (schema.names[0],)
            part = schema.empty_table().select(list(wanted)).schema

            def source(sql: str | None) -> DataStream:
                return env.from_source(
                    ParquetSource(path, tuple(wanted), starts, sql),
                    parallel=True,
                    estimated_records=max(len(sizes), 1),
                    name=f"Parquet {os.path.basename(path)}",
                ).set_parallelism(p)

            return Relation(None, part, p, deferred=source)

        return self._table(SourceNode(os.path.basename(path), schema, build))

    def _csv(self, path: str, delimiter: str) -> Table:
        import pyarrow as pa
        import pyarrow.csv as csv

        try:
            with csv.open_csv(path, parse_options=csv.ParseOptions(delimiter=delimiter)) as r:
                schema = r.schema
        except (pa.ArrowInvalid, StopIteration) as e:
            raise ValueError(f"from_path: cannot read {path!r} as CSV with a header: {e}") from None
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\r\n")
        # Types pyarrow could not infer (a column of NULLs only) are read as text.
        schema = pa.schema(
            [pa.field(f.name, pa.string() if pa.types.is_null(f.type) else f.type) for f in schema]
        )

        def build(env: StreamEnvironment, p: int, columns: tuple[str, ...]) -> Relation:
            lines = env.read_text(path).set_parallelism(p)
            stream = lines.map_batches(
                CsvChunks(SchemaBytes.of(schema), header, delimiter), name="CSV to chunks"
            ).set_parallelism(p)
            return Relation(stream, schema, p)

        return self._table(SourceNode(os.path.basename(path), schema, build))

    def from_data_stream(self, stream: DataStream, schema: object = None) -> Table:
        """A table of a data stream's records: tuples or lists (by position), dicts (by name),
        single values (one column), or columns (``from_arrays``).

        ``schema``: a ``pyarrow.Schema``; a dict of column name -> type (a DuckDB type name
        such as ``"BIGINT"``, ``"DOUBLE"``, ``"VARCHAR"``, or a ``pyarrow`` type); or a list of
        names. Without it the columns are the stream's known fields, else one column ``f0``
        (PyFlink's name for an atomic type); a column whose type is not given is BIGINT."""
        if not isinstance(stream, DataStream):
            raise TypeError(f"from_data_stream takes a DataStream, not {type(stream).__name__}")
        if stream.environment is not self._env:
            raise ValueError("from_data_stream: the stream belongs to another environment")
        arrow = _schema(schema, stream.schema.fields)
        graph = self._env.job_graph
        ops = {i.op for i in stream._inputs}
        bounded = all(
            graph.operator(a).params.get("bounded", True)
            for a in graph.ancestors(ops)
            if graph.operator(a).kind == "source"
        )
        p = graph.operator(next(iter(ops))).parallelism if len(ops) == 1 else self._env.parallelism

        def build(env: StreamEnvironment, _: int, columns: tuple[str, ...]) -> Relation:
            chunks = stream.map_batches(ToChunks(SchemaBytes.of(arrow)), name="Records to chunks")
            return Relation(chunks.set_parallelism(p), arrow, p, bounded)

        return self._table(SourceNode("data stream", arrow, build, bounded))

    # -- the catalog ------------------------------------------------------------------------

    def _table(self, node: Node) -> Table:
        return Table(self, node)

    def create_temporary_view(self, name: str, table: Table | DataStream) -> None:
        """Register ``table`` (or a data stream, as ``from_data_stream`` would make it) under
        ``name`` for SQL; an existing view of that name is replaced."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"create_temporary_view: {name!r} is not a valid table name")
        if isinstance(table, DataStream):
            table = self.from_data_stream(table)
        if not isinstance(table, Table) or table._tenv is not self:
            raise TypeError("create_temporary_view takes a Table of this environment")
        self._catalog[name] = table._node

    def drop_temporary_view(self, name: str) -> bool:
        return self._catalog.pop(name, None) is not None

    def list_tables(self) -> list[str]:
        return sorted(n for n in self._catalog if not n.startswith("__"))

    list_temporary_views = list_tables

    def _query(self, sql: str, refs: Mapping[str, Node]) -> Table:
        """A query over ``refs`` (and the catalog), for the Table API."""
        return self._table(prepare(parse(sql), {**self._catalog, **refs}))

    def sql_query(self, sql: str) -> Table:
        """A SELECT (or UNION, WITH ...) as a table, checked now, run when executed."""
        tree = parse(sql)
        if not _is_query(tree):
            raise SqlError("sql_query takes a query (SELECT ...); use execute_sql for statements")
        return self._table(prepare(tree, self._catalog))

    def execute_sql(self, sql: str) -> TableResult:
        """Run a statement: a query (its rows), ``CREATE [TEMPORARY] VIEW name AS query`` or
        ``DROP VIEW [IF EXISTS] name``."""
        from sqlglot import exp

        tree = parse(sql)
        if _is_query(tree):
            return self._execute(prepare(tree, self._catalog))
        if isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() == "VIEW":
            target = tree.this
            name = target.name if isinstance(target, exp.Table) else str(target)
            body = tree.expression
            if body is None or not _is_query(body):
                raise unsupported("CREATE VIEW without AS query")
            if (
                name in self._catalog
                and not tree.args.get("replace")
                and not tree.args.get("exists")
            ):
                raise SqlError(f"view {name!r} exists already; CREATE OR REPLACE VIEW replaces it")
            self._catalog[name] = prepare(body, self._catalog)
            return TableResult.ok()
        if isinstance(tree, exp.Drop) and str(tree.args.get("kind", "")).upper() == "VIEW":
            name = tree.this.name
            if name not in self._catalog and not tree.args.get("exists"):
                raise SqlError(f"unknown view {name!r}")
            self._catalog.pop(name, None)
            return TableResult.ok()
        raise unsupported(
            f"{type(tree).__name__.upper()} statements (queries, CREATE VIEW and DROP VIEW only)"
        )

    def _execute(self, node: Node) -> TableResult:
        import duckdb

        if not node.bounded:
            raise SqlError(
                "a query over an unbounded table has no end to wait for: run it with "
                "to_data_stream(table) and a sink (for_each, write_text), then execute()"
            )
        planner = Planner(self._env, self._env.parallelism)
        stream, _ = planner.stream(node)
        try:
            chunks = stream.collect()
        except duckdb.Error as e:  # a value DuckDB cannot convert, met while running
            raise describe_error(e) from None
        except JobFailedError as e:  # the same, met in a worker: its message, not its trace
            found = re.search(r"pydispatch\.errors\.SqlError: (.*)", str(e))
            if found is None:
                raise
            raise SqlError(found[1]) from None
        assert isinstance(chunks, list)
        return TableResult(node.schema, chunks)

    def to_data_stream(self, table: Table) -> DataStream:
        """The table's rows as a data stream of tuples."""
        if not isinstance(table, Table) or table._tenv is not self:
            raise TypeError("to_data_stream takes a Table of this environment")
        stream, _ = Planner(self._env, self._env.parallelism).stream(table._node)
        return stream.flat_map(ToRows()).name("Chunks to rows")


class EnvironmentSettings:
    """PyFlink's settings of a table environment, for ``TableEnvironment.create(settings)``:
    ``in_batch_mode()`` or ``in_streaming_mode()`` (or ``new_instance()...build()``). The mode
    is kept for reading only: a query over bounded tables runs in batch mode, one over an
    unbounded table in streaming mode, whatever it says."""

    def __init__(self, streaming: bool = True) -> None:
        self.streaming = streaming

    @classmethod
    def in_batch_mode(cls) -> EnvironmentSettings:
        return cls(streaming=False)

    @classmethod
    def in_streaming_mode(cls) -> EnvironmentSettings:
        return cls(streaming=True)

    @classmethod
    def new_instance(cls) -> EnvironmentSettings:
        """A builder: ``new_instance().in_batch_mode().build()`` (the mode methods are
        classmethods, so they also answer on an instance)."""
        return cls()

    def build(self) -> EnvironmentSettings:
        return self

    def is_streaming_mode(self) -> bool:
        return self.streaming

    def __repr__(self) -> str:
        return f"EnvironmentSettings({'streaming' if self.streaming else 'batch'} mode)"


class StreamTableEnvironment(TableEnvironment):
    """PyFlink's ``StreamTableEnvironment``: ``StreamTableEnvironment.create(env)`` over a
    (``StreamExecutionEnvironment``) environment; bounded tables run in batch mode."""

    @classmethod
    def create(cls, env: object = None) -> StreamTableEnvironment:
        if not isinstance(env, StreamEnvironment):
            raise TypeError(
                "StreamTableEnvironment.create takes a StreamEnvironment "
                "(StreamExecutionEnvironment.get_execution_environment())"
            )
        return cls(env)


def _bad(env: object) -> StreamEnvironment:
    raise TypeError(
        f"TableEnvironment.create takes a StreamEnvironment or nothing, not {type(env).__name__}"
    )


def _is_query(tree: exp.Expr) -> bool:
    from sqlglot import exp

    return isinstance(tree, exp.Select | exp.Union | exp.Intersect | exp.Except | exp.Subquery)


def _schema(schema: object, fields: Sequence[str] | None) -> pa.Schema:
    import pyarrow as pa

    if isinstance(schema, pa.Schema):
        return schema
    if schema is None:
        names: Sequence[str] = fields if fields else ["f0"]
        return pa.schema([(n, pa.int64()) for n in names])
    if isinstance(schema, Mapping):
        return pa.schema([(str(n), _arrow_type(t, str(n))) for n, t in schema.items()])
    if isinstance(schema, Sequence) and not isinstance(schema, str):
        if all(isinstance(n, str) for n in schema):
            return pa.schema([(n, pa.int64()) for n in schema])
        if all(isinstance(n, tuple) and len(n) == 2 for n in schema):
            return pa.schema([(str(n), _arrow_type(t, str(n))) for n, t in schema])
    raise TypeError(
        "from_data_stream: schema is a pyarrow.Schema, a dict of name -> type, or a list of names"
    )


def _arrow_type(kind: object, name: str) -> pa.DataType:
    import duckdb
    import pyarrow as pa

    if isinstance(kind, pa.DataType):
        return kind
    if not isinstance(kind, str):
        raise TypeError(f"from_data_stream: the type of {name!r} is a type name or a pyarrow type")
    from ._engine import connection

    try:
        arrow: pa.Schema = (
            connection().sql(f"SELECT CAST(NULL AS {kind}) AS x").to_arrow_table().schema
        )
    except duckdb.Error:
        raise SqlError(f"from_data_stream: unknown type {kind!r} for column {name!r}") from None
    return arrow.field("x").type
