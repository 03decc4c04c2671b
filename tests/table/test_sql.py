"""SQL over pydispatch equals DuckDB's answer to the same SQL over the same data.

A generated query set covers every construct the planner supports (projections and
expressions, WHERE, GROUP BY with each aggregate and COUNT DISTINCT, HAVING, inner, LEFT and
comma joins, UNION ALL and UNION, DISTINCT, ORDER BY/LIMIT/OFFSET, subqueries in FROM, WITH)
over random data with NULLs, a skewed key and an empty table. Each query runs in this process
(the reference executor) and on ``LocalCluster(workers=2)`` at parallelism 2, and its rows are
compared with DuckDB's as multisets (floats to a relative 1e-9), and in order where the query
orders them totally.
"""

from __future__ import annotations

import math
import random
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import JobHandle, StreamEnvironment
from pydispatch.table import TableEnvironment, TableResult
from pydispatch.table._planner import Planner

CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}


def _data() -> dict[str, pa.Table]:
    rng = np.random.default_rng(19)
    n = 3000
    # A skewed key: half the rows have key 0, the rest spread over 40 values.
    k = np.where(rng.random(n) < 0.5, 0, rng.integers(1, 40, n))
    g = [None if i % 11 == 0 else "abcde"[int(x)] for i, x in enumerate(rng.integers(0, 5, n))]
    v = [None if i % 13 == 0 else float(x) for i, x in enumerate(rng.normal(10, 5, n))]
    i_ = [None if j % 7 == 0 else int(x) for j, x in enumerate(rng.integers(-100, 100, n))]
    facts = pa.table({"k": pa.array(k, pa.int64()), "g": g, "v": v, "i": pa.array(i_, pa.int32())})
    dim = pa.table(
        {
            "k": pa.array([0, 1, 2, 3, 3, 50, None], pa.int64()),
            "name": ["zero", "one", "two", "three", "tres", "fifty", "none"],
            "w": [1.5, None, 2.5, 3.0, 3.5, 4.0, 5.0],
        }
    )
    return {"t": facts, "d": dim, "e": facts.slice(0, 0)}


def _generated(count: int, seed: int) -> list[str]:
    """Random aggregate queries: a grouping, some aggregates, a filter, maybe HAVING."""
    rnd = random.Random(seed)
    groupings = [["k"], ["g"], ["k", "g"], [], ["k % 3"]]
    aggregates = [
        "count(*)",
        "count(i)",
        "sum(i)",
        "sum(v)",
        "min(v)",
        "max(g)",
        "avg(i)",
        "avg(v)",
        "count(DISTINCT g)",
        "min(i)",
        "max(k)",
    ]
    filters = ["", "v > 10", "i IS NULL OR i < 0", "g IN ('a', 'b')", "k <> 0"]
    queries = []
    for _ in range(count):
        keys = rnd.choice(groupings)
        aggs = rnd.sample(aggregates, rnd.randint(1, 4))
        where = rnd.choice(filters)
        table = rnd.choice(["t", "t", "e"])
        sql = f"SELECT {', '.join([*keys, *aggs])} FROM {table}"
        sql += f" WHERE {where}" if where else ""
        sql += f" GROUP BY {', '.join(keys)}" if keys else ""
        if keys and rnd.random() < 0.3:
            sql += " HAVING count(*) > 20"
        queries.append(sql)
    return queries


FIXED = [
    "SELECT * FROM t",
    "SELECT k, v * 2 + 1 AS w, upper(g) AS big, coalesce(i, -1) AS i2 FROM t WHERE v > 12",
    "SELECT CASE WHEN i > 0 THEN 'pos' WHEN i < 0 THEN 'neg' END AS sign, g || '!' FROM t",
    "SELECT count(*), sum(v), avg(i), min(g), max(g) FROM t",
    "SELECT count(*), sum(v), avg(i) FROM e",
    "SELECT k, count(*) FROM e GROUP BY k",
    "SELECT g, count(DISTINCT k), sum(DISTINCT i) FROM t GROUP BY g",
    "SELECT k, sum(i) AS s FROM t GROUP BY k HAVING sum(i) > 0 AND count(*) > 2",
    "SELECT DISTINCT k, g FROM t",
    "SELECT DISTINCT g FROM e",
    "SELECT t.k, name, v FROM t JOIN d ON t.k = d.k WHERE v > 5",
    "SELECT t.k, name, w FROM t LEFT JOIN d ON t.k = d.k AND d.w > 2",
    "SELECT t.k, name FROM t LEFT JOIN d ON t.k = d.k WHERE name IS NULL",
    "SELECT t.i, d.name FROM t, d WHERE t.k = d.k AND t.i > 90",
    "SELECT t.k, e.g FROM t JOIN e ON t.k = e.k",
    "SELECT t.k, e.g FROM t LEFT JOIN e ON t.k = e.k",
    "SELECT name, count(*) AS c, sum(v) FROM t JOIN d ON t.k = d.k GROUP BY name",
    "SELECT a.k, b.name FROM d a JOIN d b ON a.k = b.k",
    "SELECT t.i, d.w FROM t JOIN d ON t.i = d.w",
    "SELECT t.k, a.name, b.w FROM t JOIN d a ON t.k = a.k LEFT JOIN d b ON a.k + 1 = b.k",
    "SELECT s.k, s.n, d.name FROM (SELECT k, count(*) AS n FROM t GROUP BY k) s JOIN d "
    "ON s.k = d.k",
    "SELECT d.name, sum(t.v) FROM t LEFT JOIN d ON t.k = d.k AND t.g = 'a' GROUP BY d.name",
    "SELECT k FROM t UNION ALL SELECT k FROM d",
    "SELECT i FROM t UNION ALL SELECT w FROM d",
    "SELECT k FROM t UNION SELECT k FROM d",
    "SELECT k, g FROM (SELECT k, g, v FROM t WHERE v > 0) AS s WHERE k < 5",
    "WITH x AS (SELECT k, sum(v) AS sv FROM t GROUP BY k) SELECT k, sv FROM x WHERE sv > 0",
    "SELECT k + 1 AS kk, count(*) FROM t GROUP BY k + 1",
    "SELECT count(*) FROM t WHERE k > 1000",
    "SELECT count(*), sum(t.v), count(DISTINCT e.g) FROM t JOIN e ON t.k = e.k",
    "SELECT count(*), max(d.name) FROM t JOIN d ON t.k = d.k WHERE t.k > 1000",
]
# Ordered: compared in order as well (each orders by a total key, or limits nothing tied).
ORDERED = [
    "SELECT k, g, v, i FROM t ORDER BY v DESC NULLS LAST, k, g, i LIMIT 7",
    "SELECT g, sum(i) AS s FROM t GROUP BY g ORDER BY g NULLS FIRST",
    "SELECT k, count(*) AS c FROM t GROUP BY k ORDER BY c DESC, k LIMIT 5 OFFSET 2",
    "SELECT name, count(*) AS c FROM t JOIN d ON t.k = d.k GROUP BY name ORDER BY name",
    "SELECT k FROM t UNION ALL SELECT k FROM d ORDER BY k LIMIT 3",
    "SELECT DISTINCT k FROM t ORDER BY k DESC",
    "SELECT k, v FROM t ORDER BY i, k, v LIMIT 4",
    "SELECT k FROM e ORDER BY k",
]
QUERIES = FIXED + _generated(24, seed=7)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def _key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((x is None, round(x, 6) if isinstance(x, float) else x) for x in row)


def _same_rows(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]], ordered: bool) -> bool:
    if len(got) != len(want):
        return False
    if not ordered:
        got, want = sorted(got, key=_key), sorted(want, key=_key)
    return all(
        len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
        for a, b in zip(got, want, strict=True)
    )


@pytest.fixture(scope="module")
def data() -> dict[str, pa.Table]:
    return _data()


@pytest.fixture(scope="module")
def reference(data: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, table in data.items():
        con.register(name, table)
    return con


def _tenv(target: object, data: dict[str, pa.Table]) -> TableEnvironment:
    tenv = TableEnvironment(StreamEnvironment(target, parallelism=2))
    for name, table in data.items():
        tenv.create_temporary_view(name, tenv.from_arrow(table))
    return tenv


def _check(tenv: TableEnvironment, reference: Any, sql: str, ordered: bool) -> None:
    result = tenv.execute_sql(sql)
    want = reference.sql(sql)
    rows = want.fetchall()
    assert result.columns == list(want.columns), sql
    assert _same_rows(result.rows(), rows, ordered), (sql, result.rows()[:5], rows[:5])


def test_the_query_set_covers_every_construct() -> None:
    text = " ".join(QUERIES + ORDERED).upper()
    for construct in (
        "WHERE", "GROUP BY", "COUNT(*)", "SUM(", "MIN(", "MAX(", "AVG(", "COUNT(DISTINCT",
        "HAVING", " JOIN ", "LEFT JOIN", "UNION ALL", "UNION SELECT", "DISTINCT", "ORDER BY",
        "LIMIT", "OFFSET", "WITH ", "FROM E",
    ):  # fmt: skip
        assert construct in text, construct


@pytest.mark.parametrize("sql", QUERIES + ORDERED)
def test_in_process_equals_duckdb(sql: str, data: dict[str, pa.Table], reference: Any) -> None:
    _check(_tenv(None, data), reference, sql, sql in ORDERED)


@pytest.mark.slow
def test_on_a_cluster_equals_duckdb(
    cluster: LocalCluster, data: dict[str, pa.Table], reference: Any
) -> None:
    # Ten queries a job (each its own operators and collect sink), to spare the per-job cost.
    queries = QUERIES + ORDERED
    for first in range(0, len(queries), 10):
        env = StreamEnvironment(cluster, parallelism=2)
        tenv = TableEnvironment(env)
        for name, table in data.items():
            tenv.create_temporary_view(name, tenv.from_arrow(table))
        sinks = []
        for sql in queries[first : first + 10]:
            node = tenv.sql_query(sql)._node
            stream, _ = Planner(env, 2).stream(node)
            sink = stream._sink("Collect", {"sink": "collect", "columnar": False})
            sinks.append((sql, node, sink.id))
        handle = env.execute("query set")
        assert isinstance(handle, JobHandle)
        collected = handle.result(timeout=120).collected
        for sql, node, sink_id in sinks:
            result = TableResult(node.schema, collected[sink_id])
            want = reference.sql(sql)
            assert result.columns == list(want.columns), sql
            assert _same_rows(result.rows(), want.fetchall(), sql in ORDERED), sql


def test_a_cluster_job_shuffles_by_key_across_both_workers(
    cluster: LocalCluster, data: dict[str, pa.Table], reference: Any
) -> None:
    tenv = _tenv(cluster, data)
    sql = "SELECT k, count(*), sum(v), avg(i) FROM t GROUP BY k"
    table = tenv.sql_query(sql)
    _check(tenv, reference, sql, ordered=False)
    # The plan: a source with the scan and pre-aggregation chained in, a keyed exchange,
    # the final aggregation at parallelism 2.
    env = StreamEnvironment(cluster, parallelism=2)
    stream, _ = Planner(env, 2).stream(table._node)
    plan = env.execution_graph()
    kinds = [op.kind for op in env.job_graph.operators]
    assert kinds[:3] == ["source", "map", "flat_map"]
    assert "aggregate" in kinds
    assert any(e.partitioning == "hash" for e in env.job_graph.edges)
    assert {c.parallelism for c in plan.chains} == {2}
    assert len(plan.chains) == 2  # scan+pre-aggregate+split | gather+finish
    del stream
