"""Jobs run in process (StreamEnvironment() without a target): results against references."""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydispatch.stream import StreamEnvironment

WORDS = st.lists(st.sampled_from(["a", "b", "spam", "eggs", "é", "x" * 20]), max_size=8)


def test_seed_example() -> None:
    env = StreamEnvironment()
    assert env.from_elements([1, 2, 3, 4, 5]).map(lambda x: x + 1).collect() == [2, 3, 4, 5, 6]


def test_parallelism_one_keeps_order_and_parallel_runs_keep_the_multiset() -> None:
    data = list(range(100))
    one = StreamEnvironment().from_collection(data).map(lambda x: x * 2).collect()
    assert one == [x * 2 for x in data]
    env = StreamEnvironment(parallelism=3)
    many = env.from_collection(data).rebalance().map(lambda x: x * 2).collect()
    assert sorted(many) == one


@given(lines=st.lists(WORDS.map(" ".join), max_size=30), parallelism=st.integers(1, 4))
@settings(max_examples=40)
def test_word_count_equals_counter(lines: list[str], parallelism: int) -> None:
    env = StreamEnvironment(parallelism=parallelism)
    counts = (
        env.from_collection(lines)
        .flat_map(str.split)
        .map(lambda w: (w, 1))
        .key_by(0)
        .sum(1)
        .collect()
    )
    assert isinstance(counts, list)
    assert len(counts) == len({k for k, _ in counts})  # one final result per key (batch mode)
    assert dict(counts) == collections.Counter(w for line in lines for w in line.split())


def test_word_count_with_a_key_function_and_count() -> None:
    lines = ["to be or not to be", "that is the question"]
    env = StreamEnvironment(parallelism=2)
    counts = env.from_collection(lines).flat_map(str.split).key_by(lambda w: w).count().collect()
    assert dict(counts) == collections.Counter(" ".join(lines).split())


def test_keyed_sum_over_a_million_rows_on_the_columnar_path() -> None:
    rng = np.random.default_rng(5)
    rows = 1_000_000
    keys = rng.integers(0, 5_000, rows)
    values = rng.integers(-1_000, 1_000, rows).astype(np.int32)
    env = StreamEnvironment(parallelism=2)
    out = env.from_arrays({"k": keys, "v": values}).key_by("k").sum("v").collect()
    assert isinstance(out, dict)
    assert sorted(out) == ["k", "v"]
    expected = np.zeros(5_000, dtype=np.int64)
    np.add.at(expected, keys, values)
    present = np.bincount(keys, minlength=5_000) > 0
    order = np.argsort(out["k"])
    np.testing.assert_array_equal(out["k"][order], np.flatnonzero(present))
    np.testing.assert_array_equal(out["v"][order], expected[present])
    assert out["v"].dtype == np.int64  # int32 values are summed in 64 bits


@pytest.mark.parametrize("agg", ["min", "max", "count"])
def test_columnar_min_max_count_equal_numpy(agg: str) -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 50, 20_000).astype(np.int16)
    values = rng.normal(size=20_000)
    env = StreamEnvironment(parallelism=3)
    keyed = env.from_arrays({"k": keys, "v": values}).key_by("k")
    stream = keyed.count() if agg == "count" else getattr(keyed, agg)("v")
    out = stream.collect()
    assert isinstance(out, dict)
    column = "count" if agg == "count" else "v"
    got = dict(zip(out["k"].tolist(), out[column].tolist(), strict=True))
    ufunc = {"min": np.minimum, "max": np.maximum}.get(agg)
    for k in np.unique(keys).tolist():
        mine = values[keys == k]
        want = len(mine) if ufunc is None else float(ufunc.reduce(mine))
        assert got[k] == want


def test_record_path_sum_min_max_reduce_on_dict_fields() -> None:
    records = [{"user": u, "amount": a} for u, a in [("a", 3), ("b", 1), ("a", -2), ("c", 7)]]
    env = StreamEnvironment(parallelism=2)
    stream = env.from_collection(records).key_by("user")
    assert dict(stream.sum("amount").collect()) == {"a": 1, "b": 1, "c": 7}
    assert dict(stream.min("amount").collect()) == {"a": -2, "b": 1, "c": 7}
    assert dict(stream.max("amount").collect()) == {"a": 3, "b": 1, "c": 7}
    merged = stream.reduce(lambda x, y: {"user": x["user"], "amount": x["amount"] * y["amount"]})
    assert sorted(merged.collect(), key=lambda r: r["user"]) == [
        {"user": "a", "amount": -6},
        {"user": "b", "amount": 1},
        {"user": "c", "amount": 7},
    ]


def test_sum_of_whole_records_and_tuple_keys() -> None:
    env = StreamEnvironment(parallelism=2)
    data = [((1, "x"), 2), ((1, "y"), 3), ((1, "x"), 4)]
    out = env.from_collection(data).key_by(0).sum(1).collect()
    assert sorted(out) == [((1, "x"), 6), ((1, "y"), 3)]
    numbers = env.from_collection(range(10)).key_by(lambda x: x % 3).sum().collect()
    assert sorted(numbers) == [(0, 18), (1, 12), (2, 15)]


def test_unbounded_source_makes_rolling_aggregations() -> None:
    env = StreamEnvironment()
    out = (
        env.from_source(lambda: iter([("a", 1), ("b", 2), ("a", 3)]), bounded=False)
        .key_by(0)
        .sum(1)
        .collect()
    )
    assert out == [("a", 1), ("b", 2), ("a", 4)]  # one update per record, in order
    assert env.execution_graph().runtime_mode == "streaming"


def test_replayable_parallel_source_gets_index_and_parallelism() -> None:
    def factory(index: int, parallelism: int) -> range:
        return range(index, 20, parallelism)

    env = StreamEnvironment(parallelism=3)
    assert sorted(env.from_source(factory, parallel=True).collect()) == list(range(20))


def _reference_count_windows(records: list[tuple[str, int]], size: int) -> list[tuple[str, int]]:
    out, state = [], collections.defaultdict(list)
    for key, value in records:
        state[key].append(value)
        if len(state[key]) == size:
            out.append((key, sum(state.pop(key))))
    return out


@given(
    records=st.lists(st.tuples(st.sampled_from("abc"), st.integers(-5, 5)), max_size=40),
    size=st.integers(1, 4),
)
@settings(max_examples=40)
def test_count_windows(records: list[tuple[str, int]], size: int) -> None:
    env = StreamEnvironment()
    out = env.from_collection(records).key_by(0).count_window(size).sum(1).collect()
    # parallelism 1: windows fire in arrival order; incomplete windows never fire (Flink)
    assert out == _reference_count_windows(records, size)


@given(
    records=st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(-50, 200), st.integers(0, 9)), max_size=40
    ),
    parallelism=st.integers(1, 3),
)
@settings(max_examples=40)
def test_time_windows(records: list[tuple[str, int, int]], parallelism: int) -> None:
    env = StreamEnvironment(parallelism=parallelism)
    keyed = env.from_collection(records).key_by(0)
    out = keyed.time_window(10, timestamp=1).sum(2).collect()
    expected: dict[tuple[str, int], int] = collections.Counter()
    for key, stamp, value in records:
        expected[key, stamp // 10 * 10] += value
    assert sorted(out) == sorted((k, start, v) for (k, start), v in expected.items())
    counts = keyed.time_window(10, timestamp=lambda r: r[1]).count().collect()
    assert {(k, s): n for k, s, n in counts} == dict(
        collections.Counter((k, t // 10 * 10) for k, t, _ in records)
    )


def test_time_windows_fire_by_window_start() -> None:
    records = [("a", 25, 1), ("b", 3, 1), ("a", 7, 1), ("a", 21, 1)]
    env = StreamEnvironment()
    out = env.from_collection(records).key_by(0).time_window(10, timestamp=1).count().collect()
    assert out == [("b", 0, 1), ("a", 0, 1), ("a", 20, 2)]
    reduced = (
        env.from_collection(records)
        .key_by(0)
        .time_window(10, timestamp=1)
        .reduce(lambda x, y: (x[0], max(x[1], y[1]), x[2] + y[2]))
        .collect()
    )
    assert reduced == [("b", 3, 1), ("a", 7, 1), ("a", 25, 2)]


def _write(path: Path, text: str) -> str:
    path.write_bytes(text.encode("utf-8"))
    return os.fspath(path)


@given(
    lines=st.lists(st.text(alphabet="ab,é\r", max_size=12), max_size=20),
    parallelism=st.integers(1, 5),
    trailing_newline=st.booleans(),
)
@settings(max_examples=60)
def test_read_text_splits_cover_every_line_once(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[str],
    parallelism: int,
    trailing_newline: bool,
) -> None:
    text = "\n".join(lines) + ("\n" if trailing_newline and lines else "")
    path = _write(tmp_path_factory.mktemp("text") / "in.txt", text)
    env = StreamEnvironment(parallelism=parallelism)
    got = env.read_text(path).collect()
    expected = [line.rstrip("\r") for line in text.split("\n")]
    if text.endswith("\n") or not text:
        expected = expected[:-1]
    assert got == expected  # splits in subtask order concatenate to the file


def test_read_text_several_files(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.txt", "1\n2\n3\n")
    b = _write(tmp_path / "b.txt", "4\n5")
    env = StreamEnvironment(parallelism=2)
    assert sorted(env.read_text([a, b]).map(int).collect()) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("parallelism", [1, 2, 7])
def test_read_csv_with_header_keys_by_column(tmp_path: Path, parallelism: int) -> None:
    rows = [("k1", "3"), ("k2", "4"), ("k1", "5"), ("k3", "1")] * 5
    text = "key,value\n" + "".join(f"{k},{v}\n" for k, v in rows)
    path = _write(tmp_path / "t.csv", text)
    env = StreamEnvironment(parallelism=parallelism)
    stream = env.read_csv(path, header=True)
    assert stream.schema.fields == ("key", "value")
    out = stream.map(lambda r: (r["key"], int(r["value"]))).key_by(0).sum(1).collect()
    assert dict(out) == {"k1": 40, "k2": 20, "k3": 5}
    plain = env.read_csv(path).collect()
    assert plain[0] == ("key", "value")
    assert len(plain) == len(rows) + 1
    named = env.read_csv(path, header=True, columns=["a", "b"]).collect()
    assert named[0] == {"a": "k1", "b": "3"}
    assert len(named) == len(rows)


def test_columnar_rows_become_dicts_under_a_python_function() -> None:
    env = StreamEnvironment(parallelism=2)
    cols = {"k": np.array([1, 2, 3]), "v": np.array([0.5, 1.5, 2.5])}
    out = env.from_arrays(cols).filter(lambda r: r["k"] != 2).collect()
    assert out == [{"k": 1, "v": 0.5}, {"k": 3, "v": 2.5}]
    identity = env.from_arrays(cols).collect()
    assert isinstance(identity, dict)
    np.testing.assert_array_equal(identity["v"], cols["v"])


def test_write_text_and_for_each_sinks(tmp_path: Path) -> None:
    env = StreamEnvironment()
    seen: list[Any] = []
    env.from_elements(["x", "y"]).write_text(tmp_path / "one.txt")
    env.from_elements([1, 2, 3]).map(lambda x: x * x).for_each(seen.append)
    result = env.execute("sinks")
    assert (tmp_path / "one.txt").read_text() == "x\ny\n"
    assert seen == [1, 4, 9]
    assert result.runtime_mode == "batch"
    with pytest.raises(RuntimeError, match="no sinks"):
        env.execute()  # every sink has run

    par = StreamEnvironment(parallelism=3)
    par.from_collection(range(7)).write_text(tmp_path / "many")
    par.execute()
    files = sorted(os.listdir(tmp_path / "many"))
    assert files == ["1", "2", "3"]  # Flink's layout: one file per subtask, numbered from 1
    lines = [line for f in files for line in (tmp_path / "many" / f).read_text().split()]
    assert lines == [str(i) for i in range(7)]


def test_metrics_count_records_in_and_out() -> None:
    env = StreamEnvironment(parallelism=2)
    env.from_collection(range(10)).filter(lambda x: x % 2 == 0).flat_map(lambda x: [x, x]).for_each(
        lambda _: None
    )
    result = env.execute()
    assert result.records_out == {0: 10, 1: 5, 2: 10, 3: 0}
    assert result.records_in == {0: 0, 1: 10, 2: 5, 3: 10}


def test_collect_runs_only_what_feeds_pending_sinks() -> None:
    env = StreamEnvironment()
    source = env.from_elements([1, 2, 3])
    assert source.map(lambda x: -x).collect() == [-1, -2, -3]
    assert source.filter(lambda x: x > 1).collect() == [2, 3]
    assert source.collect() == [1, 2, 3]


def test_windows_over_columnar_rows() -> None:
    cols = {"k": np.array([1, 1, 2, 1]), "t": np.array([0, 5, 7, 12]), "v": np.array([1, 2, 3, 4])}
    env = StreamEnvironment(parallelism=2)
    keyed = env.from_arrays(cols).key_by("k")
    assert sorted(keyed.time_window(10, timestamp="t").sum("v").collect()) == [
        (1, 0, 3),
        (1, 10, 4),
        (2, 0, 3),
    ]
    assert sorted(keyed.count_window(2).max("v").collect()) == [(1, 2)]
