"""The PyFlink seed example, the Table API, sources, results and the errors a SQL user reads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pydispatch.errors import SqlError
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import NoRestart, StreamEnvironment
from pydispatch.stream.functions import (
    FilterFunction,
    FlatMapFunction,
    KeySelector,
    MapFunction,
    ReduceFunction,
)
from pydispatch.table import (
    EnvironmentSettings,
    StreamTableEnvironment,
    TableEnvironment,
    TableResult,
)

CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}

# PyFlink's example with its three import lines changed and PyFlink's create_temporary_view.
SEED = """
from pydispatch.stream import StreamExecutionEnvironment
from pydispatch.table import StreamTableEnvironment
from pydispatch.stream.functions import MapFunction


class MyMapFunction(MapFunction):
    def map(self, value):
        return value + 1


env = StreamExecutionEnvironment.get_execution_environment()
data_stream = env.from_collection([1, 2, 3, 4, 5])
mapped_stream = data_stream.map(MyMapFunction())

table_env = StreamTableEnvironment.create(env)
mapped_table = table_env.from_data_stream(mapped_stream)
table_env.create_temporary_view("mapped_table", mapped_table)
result = table_env.execute_sql("SELECT * FROM mapped_table")
for row in result:
    print(row)
"""


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "PYDISPATCH_ADDRESS"} | env
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ,
    )


@pytest.mark.slow
def test_the_seed_example_prints_two_to_six_on_an_embedded_cluster() -> None:
    done = _run(SEED)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "(2,)\n(3,)\n(4,)\n(5,)\n(6,)\n"
    assert done.stderr == ""  # the embedded cluster ends quietly at exit


@pytest.mark.slow
def test_the_seed_example_runs_on_the_cluster_named_by_pydispatch_address(
    cluster: LocalCluster,
) -> None:
    done = _run(SEED, PYDISPATCH_ADDRESS=cluster.address)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "(2,)\n(3,)\n(4,)\n(5,)\n(6,)\n"


class _Double(MapFunction):
    def map(self, value: int) -> int:
        return value * 2


class _Odd(FilterFunction):
    def filter(self, value: int) -> bool:
        return value % 2 == 1


class _Twice(FlatMapFunction):
    def flat_map(self, value: int) -> list[int]:
        return [value, value]


class _Parity(KeySelector):
    def get_key(self, value: int) -> int:
        return value % 2


class _Add(ReduceFunction):
    def reduce(self, a: int, b: int) -> int:
        return a + b


def test_function_classes_are_accepted_wherever_a_function_is() -> None:
    env = StreamEnvironment()
    out = (
        env.from_collection(range(10))
        .filter(_Odd())
        .flat_map(_Twice())
        .map(_Double())
        .key_by(_Parity())
        .reduce(_Add())
        .collect()
    )
    assert out == [2 * 2 * sum(range(1, 10, 2))]
    with pytest.raises(TypeError, match="expected a function or a MapFunction, got a _Odd"):
        env.from_collection([1]).map(_Odd())

    class Lazy(MapFunction):
        pass

    with pytest.raises(NotImplementedError, match="Lazy does not override map"):
        env.from_collection([1]).map(Lazy()).collect()


@pytest.mark.slow
def test_the_table_api_over_the_same_plans(cluster: LocalCluster) -> None:
    tenv = TableEnvironment(StreamEnvironment(cluster, parallelism=2))
    orders = tenv.from_arrays(
        {"order_id": np.arange(100), "cust": np.arange(100) % 7, "amount": np.arange(100) * 1.5}
    )
    customers = tenv.from_pandas(pd.DataFrame({"id": range(7), "name": list("abcdefg")}))
    per_customer = (
        orders.where("amount > 10")
        .join(customers, "cust = id")
        .group_by("name")
        .select("name", "count(*) AS n", "sum(amount) AS total")
    )
    assert per_customer.columns == ["name", "n", "total"]
    got = sorted(per_customer.execute())
    con = duckdb.connect()
    con.register("o", orders.execute().to_arrow())
    con.register("c", customers.execute().to_arrow())
    want = con.sql(
        "SELECT name, count(*), sum(amount) FROM o JOIN c ON cust = id WHERE amount > 10 "
        "GROUP BY name ORDER BY name"
    ).fetchall()
    assert got == want
    top = orders.select("order_id", "amount").order_by("amount DESC").limit(3).execute()
    assert [r[0] for r in top] == [99, 98, 97]
    both = orders.select("cust").union_all(customers.select("id AS cust")).distinct()
    assert sorted(r[0] for r in both.execute()) == list(range(7))
    left = customers.left_outer_join(orders.where("order_id < 3"), "id = cust")
    assert len(left.execute()) == 7  # customers 0-2 have one order each, 3-6 none


def test_views_sql_query_create_view_and_to_data_stream() -> None:
    env = StreamEnvironment()
    tenv = StreamTableEnvironment.create(env)
    tenv.create_temporary_view("nums", tenv.from_arrays({"x": list(range(10))}))
    evens = tenv.sql_query("SELECT x FROM nums WHERE x % 2 = 0")
    tenv.create_temporary_view("evens", evens)
    assert sorted(tenv.execute_sql("SELECT sum(x) FROM evens")) == [(20,)]
    assert tenv.from_path("evens").columns == ["x"]
    created = tenv.execute_sql("CREATE TEMPORARY VIEW big AS SELECT x FROM nums WHERE x > 6")
    assert list(created) == [("OK",)]
    assert sorted(tenv.execute_sql("SELECT * FROM big")) == [(7,), (8,), (9,)]
    assert tenv.list_tables() == ["big", "evens", "nums"]
    stream = tenv.to_data_stream(evens).map(lambda row: row[0] * 10)
    assert sorted(stream.collect()) == [0, 20, 40, 60, 80]
    result = tenv.execute_sql("SELECT x, x * 2 AS y FROM big")
    with result.collect() as rows:
        assert sorted(rows) == [(7, 14), (8, 16), (9, 18)]


def test_from_data_stream_of_tuples_dicts_and_columns() -> None:
    env = StreamEnvironment()
    tenv = TableEnvironment.create(env)
    pairs = env.from_collection([("a", 1), ("b", 2), ("a", 3)])
    t = tenv.from_data_stream(pairs, {"word": "VARCHAR", "n": "BIGINT"})
    tenv.create_temporary_view("pairs", t)
    got = sorted(tenv.execute_sql("SELECT word, sum(n) FROM pairs GROUP BY word"))
    assert got == [("a", 4), ("b", 2)]
    dicts = env.from_collection([{"a": 1.5, "b": "x"}, {"a": 2.5, "b": None}])
    t2 = tenv.from_data_stream(dicts, {"a": pa.float64(), "b": "VARCHAR"})
    assert sorted(t2.select("a * 2", "b IS NULL").execute()) == [(3.0, False), (5.0, True)]
    columns = env.from_arrays({"k": np.array([1, 2, 2]), "v": np.array([1.0, 2.0, 3.0])})
    t3 = tenv.from_data_stream(columns, {"k": "BIGINT", "v": "DOUBLE"})
    assert sorted(t3.group_by("k").select("k", "sum(v)").execute()) == [(1, 1.0), (2, 5.0)]
    nothing = tenv.from_data_stream(env.from_collection([]).map(lambda x: x))
    assert list(nothing.select("count(*)", "sum(f0)").execute()) == [(0, None)]
    strings = tenv.from_data_stream(env.from_collection(["x", "y"]))  # f0 BIGINT by default
    with pytest.raises(Exception, match="give from_data_stream a schema"):
        strings.execute()


def test_csv_and_parquet_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {"k": rng.integers(0, 5, 5000), "v": rng.normal(size=5000), "s": ["x,y", "z"] * 2500}
    )
    frame.loc[::9, "v"] = None
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    parquet = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet, row_group_size=700)
    con = duckdb.connect()
    want = sorted(
        con.sql(
            f"SELECT k, count(*), count(v), sum(v), max(s) FROM '{parquet}' GROUP BY k"
        ).fetchall()
    )
    tenv = TableEnvironment(StreamEnvironment(parallelism=3))
    for path in (csv, parquet):
        tenv.create_temporary_view("f", tenv.from_path(str(path)))
        got = sorted(
            tenv.execute_sql("SELECT k, count(*), count(v), sum(v), max(s) FROM f GROUP BY k")
        )
        assert [r[:3] for r in got] == [r[:3] for r in want], path
        assert all(abs(a[3] - b[3]) < 1e-9 for a, b in zip(got, want, strict=True))
    with pytest.raises(ValueError, match="neither a registered table nor a file"):
        tenv.from_path(str(tmp_path / "missing.csv"))


def test_table_result_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    tenv = TableEnvironment()
    tenv.create_temporary_view("t", tenv.from_arrays({"a": [1, None], "b": ["x", "yy"]}))
    result = tenv.execute_sql("SELECT a, b FROM t")
    assert isinstance(result, TableResult)
    assert result.columns == ["a", "b"]
    result.print()
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "|    a |  b |"
    assert out[3] == "|    1 |  x |"
    assert out[4] == "| NULL | yy |"
    assert out[-1] == "2 rows in set"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT a FROM t WHERE", r"syntax error at line 1, column 21"),
        ("SELEC a FROM t", r"syntax error"),
        ("SELECT a FROM nope", r"unknown table 'nope' \(tables and views: t, u\)"),
        ("SELECT zz FROM t", r"unknown column 'zz'"),
        ("SELECT sum(b) FROM t", r"type mismatch: .*sum\(VARCHAR\)"),
        ("SELECT a + b FROM t", r"type mismatch|Could not convert"),
        ("SELECT a, count(*) FROM t", r"must appear in the GROUP BY"),
        ("SELECT a, row_number() OVER () FROM t", r"unsupported SQL: window functions"),
        ("SELECT * FROM t CROSS JOIN u", r"unsupported SQL: CROSS JOIN"),
        ("SELECT * FROM t JOIN u ON t.a < u.c", r"unsupported SQL: a join with 'u' without"),
        ("SELECT * FROM t RIGHT JOIN u ON t.a = u.c", r"unsupported SQL: RIGHT"),
        ("SELECT a FROM t WHERE a IN (SELECT c FROM u)", r"unsupported SQL: subqueries inside"),
        ("SELECT a FROM t INTERSECT SELECT c FROM u", r"unsupported SQL: INTERSECT"),
        ("INSERT INTO t VALUES (1, 'x')", r"unsupported SQL: INSERT"),
        ("SELECT 1; SELECT 2", r"one SQL statement, got 2"),
    ],
)
def test_errors_name_the_problem(sql: str, message: str) -> None:
    tenv = TableEnvironment()
    tenv.create_temporary_view("t", tenv.from_arrays({"a": [1, 2], "b": ["x", "y"]}))
    tenv.create_temporary_view("u", tenv.from_arrays({"c": [1]}))
    with pytest.raises(SqlError, match=message) as caught:
        tenv.execute_sql(sql)
    assert caught.value.__cause__ is None
    assert "Traceback" not in str(caught.value)


def test_a_syntax_error_carries_its_position() -> None:
    tenv = TableEnvironment()
    with pytest.raises(SqlError) as caught:
        tenv.sql_query("SELECT a,\nFROM")
    assert caught.value.line == 2
    assert caught.value.column is not None


def test_an_unbounded_table_refuses_what_needs_the_end_of_input() -> None:
    env = StreamEnvironment()
    endless = env.from_source(lambda: iter([1, 2]), bounded=False)
    tenv = StreamTableEnvironment.create(env)
    tenv.create_temporary_view("s", tenv.from_data_stream(endless))
    assert tenv.sql_query("SELECT f0 + 1 FROM s WHERE f0 > 1").columns == ["(f0 + 1)"]
    with pytest.raises(SqlError, match="over an unbounded table"):
        tenv.execute_sql("SELECT count(*) FROM s")


@pytest.mark.parametrize("on_cluster", [False, True])
def test_a_value_that_fails_while_running_is_a_sql_error(
    on_cluster: bool, request: pytest.FixtureRequest
) -> None:
    target = request.getfixturevalue("cluster") if on_cluster else None
    env = StreamEnvironment(target, parallelism=2).set_restart_strategy(NoRestart)
    tenv = TableEnvironment(env)
    tenv.create_temporary_view("t", tenv.from_arrays({"g": ["1", "x"]}))
    with pytest.raises(SqlError, match="type mismatch: Could not convert string 'x'") as caught:
        tenv.execute_sql("SELECT CAST(g AS INTEGER) FROM t")
    assert "Traceback" not in str(caught.value)


# PyFlink's Table API introduction, with its import line changed.
BATCH = """
from pydispatch.table import EnvironmentSettings, TableEnvironment

env_settings = EnvironmentSettings.in_batch_mode()
table_env = TableEnvironment.create(env_settings)
table = table_env.from_elements([(1, 'Hi'), (2, 'Hello'), (3, 'Hi')], ['id', 'data'])
table_env.create_temporary_view("source", table)
table_env.execute_sql("SELECT data, count(*) AS n FROM source GROUP BY data ORDER BY data").print()
"""


def test_pyflinks_batch_table_example(cluster: LocalCluster) -> None:
    done = _run(BATCH, PYDISPATCH_ADDRESS=cluster.address)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "|  data | n |"
    assert lines[3:5] == ["| Hello | 1 |", "|    Hi | 2 |"]
    settings = EnvironmentSettings.new_instance().in_streaming_mode().build()
    assert settings.is_streaming_mode()
    assert not EnvironmentSettings.in_batch_mode().is_streaming_mode()


def test_from_elements_infers_types_and_names() -> None:
    tenv = TableEnvironment.create()
    t = tenv.from_elements([(1, "a", 1.5), (2, None, None)])
    assert t.columns == ["_1", "_2", "_3"]
    assert sorted(t.select("_1 + 1", "_2 IS NULL", "_3 * 2").execute()) == [
        (2, False, 3.0),
        (3, True, None),
    ]
    assert list(tenv.from_elements([7, 8], ["x"]).execute()) == [(7,), (8,)]
    with pytest.raises(ValueError, match="differ in length"):
        tenv.from_elements([(1, 2), (3,)])
