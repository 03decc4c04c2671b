"""Window table-valued functions: TUMBLE and HOP over bounded tables equal DuckDB's GROUP BY of
the same windows, and a TUMBLE aggregate over an unbounded stream on a cluster emits, for every
window the watermark closed, the bounded answer."""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import duckdb
import pyarrow as pa
import pytest

from _support.process_guard import eventually
from pydispatch.errors import SqlError
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import JobHandle, StreamEnvironment
from pydispatch.table import TableEnvironment

cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}


def _event(t: int) -> tuple[str, int, float]:
    return ("abc"[t % 3 if t % 5 else 0], t, float(t % 7) if t % 11 else None)  # type: ignore[return-value]


EVENTS = [_event(t) for t in range(2000)]
SCHEMA = {"k": "VARCHAR", "ts": "BIGINT", "v": "DOUBLE"}
TUMBLE = (
    "SELECT window_start, window_end, k, count(*) AS c, sum(v) AS s, max(v) AS m, avg(v) AS a "
    "FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), 100)) GROUP BY window_start, window_end, k"
)
TUMBLE_REFERENCE = (
    "SELECT ts - ts % 100, ts - ts % 100 + 100, k, count(*), sum(v), max(v), avg(v) "
    "FROM ev GROUP BY 1, 2, 3"
)


@pytest.fixture(scope="module")
def reference() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    table = pa.table(
        {"k": [e[0] for e in EVENTS], "ts": [e[1] for e in EVENTS], "v": [e[2] for e in EVENTS]}
    )
    con.register("ev", table)
    return con


def _bounded(reference: Any) -> TableEnvironment:
    tenv = TableEnvironment(StreamEnvironment(parallelism=2))
    tenv.create_temporary_view("ev", tenv.from_arrow(reference.table("ev").to_arrow_table()))
    return tenv


def _close(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(want)
    for a, b in zip(sorted(got), sorted(want), strict=True):
        assert a[:-1] == b[:-1]
        assert a[-1] == pytest.approx(b[-1])


def test_tumble_over_a_bounded_table_equals_group_by_window(reference: Any) -> None:
    got = _bounded(reference).execute_sql(TUMBLE).rows()
    _close(got, reference.sql(TUMBLE_REFERENCE).fetchall())


def test_hop_over_a_bounded_table_equals_group_by_each_window(reference: Any) -> None:
    sql = "SELECT window_start, k, count(*) FROM HOP(ev, ts, 50, 150) GROUP BY window_start, k"
    got = sorted(_bounded(reference).execute_sql(sql).rows())
    want = sorted(
        reference.sql(
            "SELECT w, k, count(*) FROM ev, range(-100, 2000, 50) AS r(w) "
            "WHERE ts >= w AND ts < w + 150 GROUP BY w, k"
        ).fetchall()
    )
    assert got == want


def test_window_errors_name_the_problem(reference: Any) -> None:
    tenv = _bounded(reference)
    with pytest.raises(SqlError, match="TUMBLE takes TUMBLE"):
        tenv.sql_query("SELECT * FROM TUMBLE(ev, ts)")
    with pytest.raises(
        SqlError, match=r"type mismatch: TUMBLE's time column 'k' is string; event time is a number"
    ):
        tenv.sql_query("SELECT * FROM TUMBLE(ev, k, 10)")
    with pytest.raises(SqlError, match="unknown column 'nope' in HOP"):
        tenv.sql_query("SELECT * FROM HOP(ev, nope, 1, 2)")


def test_tumble_over_an_unbounded_stream_in_process_fires_every_window(reference: Any) -> None:
    env = StreamEnvironment(parallelism=2)
    tenv = TableEnvironment(env)
    source = env.from_source(lambda: iter(EVENTS), bounded=False)
    tenv.create_temporary_view("ev", tenv.from_data_stream(source, SCHEMA))
    table = tenv.sql_query(TUMBLE)
    with pytest.raises(SqlError, match="to_data_stream"):
        tenv.execute_sql(TUMBLE)
    with pytest.raises(SqlError, match="over an unbounded table"):
        tenv.sql_query("SELECT k, count(*) FROM ev GROUP BY k").execute()
    rows = tenv.to_data_stream(table).collect()
    assert isinstance(rows, list)
    _close(rows, reference.sql(TUMBLE_REFERENCE).fetchall())


def test_tumble_over_an_unbounded_stream_on_a_cluster_emits_closed_windows(
    cluster: LocalCluster, tmp_path: Path, reference: Any
) -> None:
    """The source never ends: each window's rows are emitted once the watermark passed its
    end, and equal the bounded answer for that window."""
    out = tmp_path / "windows"
    out.mkdir()

    def events() -> Iterator[tuple[str, int, float]]:
        for t in itertools.count():
            yield _event(t)
            if t % 200 == 0:
                time.sleep(0.002)

    def emit(row: tuple[Any, ...]) -> None:
        start, _, key = row[:3]
        (out / f"{key}-{start}").write_text(repr(row))

    env = StreamEnvironment(cluster, parallelism=2)
    tenv = TableEnvironment(env)
    tenv.create_temporary_view(
        "ev", tenv.from_data_stream(env.from_source(events, bounded=False), SCHEMA)
    )
    tenv.to_data_stream(tenv.sql_query(TUMBLE)).for_each(emit)
    handle = env.execute("windows")
    assert isinstance(handle, JobHandle)
    want = {(r[2], r[0]): r for r in reference.sql(TUMBLE_REFERENCE).fetchall() if r[0] < 1900}
    eventually(
        lambda: all((out / f"{k}-{s}").exists() for k, s in want), "windows up to 1900 fired"
    )
    assert handle.status() == "RUNNING"
    assert handle.cancel()
    for (key, start), expected in want.items():
        got = ast.literal_eval((out / f"{key}-{start}").read_text())
        assert got[:-1] == expected[:-1]
        assert got[-1] == pytest.approx(expected[-1])


def test_windows_over_a_timestamp_with_null_keys_bounded_and_unbounded() -> None:
    base = dt.datetime(2024, 1, 1)
    rows = [
        (None if i % 9 == 0 else "ab"[i % 2], base + dt.timedelta(seconds=7 * i), float(i % 5))
        for i in range(2000)
    ]
    table = pa.table(
        {
            "k": [r[0] for r in rows],
            "ts": pa.array([r[1] for r in rows], pa.timestamp("us")),
            "v": [r[2] for r in rows],
        }
    )
    con = duckdb.connect()
    con.register("ev", table)
    sql = (
        "SELECT window_start, window_end, k, count(*), sum(v) FROM TABLE(TUMBLE(TABLE ev, "
        "DESCRIPTOR(ts), INTERVAL '10' MINUTES)) GROUP BY window_start, window_end, k"
    )
    want = con.sql(
        "SELECT w, w + INTERVAL '10' MINUTES, k, count(*), sum(v) FROM (SELECT *, "
        "time_bucket(INTERVAL '10' MINUTES, ts, TIMESTAMP '1970-01-01') AS w FROM ev) "
        "GROUP BY ALL"
    ).fetchall()
    key = _row_key
    bounded = TableEnvironment(StreamEnvironment(parallelism=2))
    bounded.create_temporary_view("ev", bounded.from_arrow(table))
    assert sorted(bounded.execute_sql(sql).rows(), key=key) == sorted(want, key=key)
    hop = (
        "SELECT window_start, count(*) "
        "FROM HOP(ev, ts, INTERVAL '5' MINUTES, INTERVAL '10' MINUTES)"
    )
    hopped = bounded.execute_sql(hop + " GROUP BY window_start").rows()
    assert sum(n for _, n in hopped) == 2 * len(rows)  # every row in two windows
    env = StreamEnvironment(parallelism=2)
    endless = TableEnvironment(env)
    source = env.from_source(lambda: iter(rows), bounded=False)
    schema = {"k": "VARCHAR", "ts": "TIMESTAMP", "v": "DOUBLE"}
    endless.create_temporary_view("ev", endless.from_data_stream(source, schema))
    streamed = endless.to_data_stream(endless.sql_query(sql)).collect()
    assert isinstance(streamed, list)
    assert sorted(streamed, key=key) == sorted(want, key=key)
    with pytest.raises(SqlError, match="INTERVAL sizes"):
        bounded.sql_query("SELECT * FROM TUMBLE(ev, ts, 10)")


def _row_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((x is None, x) for x in row)
