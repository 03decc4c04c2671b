"""Tables and SQL over pydispatch's dataflow, as PyFlink's ``pyflink.table``.

A :class:`TableEnvironment` (or :class:`StreamTableEnvironment`, over a stream environment)
holds tables (``from_arrays``, ``from_pandas``, ``from_arrow``, ``from_path`` for CSV and
Parquet files, ``from_data_stream``) and views (``create_temporary_view``); ``sql_query``
makes a :class:`Table` of a query, ``execute_sql`` runs a statement and returns a
:class:`TableResult` (rows as tuples: iterate, ``collect()``, ``print()``). A query runs as a
dataflow job of the environment: scans and filters chained into the sources, a local
pre-aggregation, a keyed shuffle by the group or join keys (pydispatch's partitioner), the final
aggregation or join in parallel, each step a DuckDB query over the slice's Arrow chunks; on a
cluster, placed by the solver like any job. The SQL dialect is DuckDB's (parsed by sqlglot);
what is supported and what differs from Flink is in the README. Needs the ``table`` extra
(sqlglot, duckdb, pyarrow).

Private modules: ``_environment`` (environments, catalog, sources), ``_table`` (the Table API),
``_result`` (``TableResult``), ``_sql`` (parsing, checks, errors), ``_windows`` (TUMBLE, HOP),
``_planner`` (a query as operators) with ``_aggregates`` and ``_rewrite``, ``_relations`` (the
moves it is made of), ``_steps`` (what the operators call, in the workers), ``_engine`` (DuckDB
in a slice).
"""

from __future__ import annotations

import importlib.util

from .._exports import publish
from ..errors import SqlError
from ._environment import EnvironmentSettings, StreamTableEnvironment, TableEnvironment
from ._result import CloseableIterator, TableResult
from ._table import GroupedTable, Table

__all__ = [
    "CloseableIterator",
    "EnvironmentSettings",
    "GroupedTable",
    "SqlError",
    "StreamTableEnvironment",
    "Table",
    "TableEnvironment",
    "TableResult",
]

publish(__name__, globals(), __all__)

# Found, not imported: a job master unpickling a SQL job's steps imports this package, and
# needs none of the three (slots import them when they run the steps).
for _needed in ("duckdb", "pyarrow", "sqlglot"):
    if importlib.util.find_spec(_needed) is None:  # pragma: no cover - in the test install
        raise ImportError(
            f"pydispatch.table needs {_needed}: pip install 'pydispatch-cluster[table]'"
        )
