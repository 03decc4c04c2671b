"""The native keyed hash aggregation (src/core/aggregate.pyx via pydispatch.dataflow.aggregation)
against numpy and pure-Python references."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydispatch import _core
from pydispatch.dataflow.aggregation import AGGREGATIONS, KeyedAggregator, group_aggregate
from pydispatch.dataflow.keyed_operators import TimeWindow as _TimeWindow
from pydispatch.dataflow.operators import rows
from pydispatch.stream import StreamEnvironment


def reference(keys: list[Any], values: list[Any], agg: str) -> dict[Any, Any]:
    """Per key, in first-seen order, the aggregate a plain Python loop gives."""
    groups: dict[Any, list[Any]] = defaultdict(list)
    for k, v in zip(keys, values, strict=True):
        groups[k].append(v)
    out: dict[Any, Any] = {}
    for k, vs in groups.items():
        if agg == "count":
            out[k] = len(vs)
        elif agg == "sum":
            out[k] = sum(vs)
        elif agg == "mean":
            out[k] = sum(vs) / len(vs)
        else:
            out[k] = (min if agg == "min" else max)(vs)
    return out


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-5, 5), max_size=300),
    agg=st.sampled_from(AGGREGATIONS),
    data=st.data(),
)
def test_int64_keys_equal_a_python_loop_in_first_seen_order(
    keys: list[int], agg: str, data: st.DataObject
) -> None:
    values = data.draw(
        st.lists(st.integers(-(10**6), 10**6), min_size=len(keys), max_size=len(keys))
    )
    got_keys, got = group_aggregate(
        np.array(keys, dtype=np.int64), np.array(values, dtype=np.int64), agg
    )
    want = reference(keys, values, agg)
    assert got_keys.tolist() == list(want)
    assert got_keys.dtype == np.int64
    if agg == "mean":
        np.testing.assert_allclose(got, list(want.values()))
        assert got.dtype == np.float64
    else:
        assert got.tolist() == list(want.values())
        assert got.dtype == np.int64


@settings(max_examples=40, deadline=None)
@given(
    keys=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=200),
    agg=st.sampled_from(["sum", "count", "min", "max"]),
)
def test_float_keys_group_nan_together_and_zero_with_minus_zero(
    keys: list[float], agg: str
) -> None:
    values = np.arange(len(keys), dtype=np.float64)
    got_keys, got = group_aggregate(np.array(keys, dtype=np.float64), values, agg)

    def canon(k: float) -> Any:
        return "nan" if math.isnan(k) else k + 0.0

    want = reference([canon(k) for k in keys], values.tolist(), agg)
    assert [canon(k) for k in got_keys.tolist()] == list(want)
    assert got.tolist() == list(want.values())


def test_ten_thousand_keys_over_many_batches_equal_numpy() -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 10_000, 200_000)
    values = rng.integers(-50, 50, 200_000).astype(np.int16)
    running = {agg: KeyedAggregator(agg, keys.dtype, values.dtype) for agg in AGGREGATIONS}
    for start in range(0, keys.shape[0], 7_919):  # uneven batches: the table grows mid-run
        for aggregator in running.values():
            aggregator.update(keys[start : start + 7_919], values[start : start + 7_919])
    present = np.flatnonzero(np.bincount(keys, minlength=10_000))
    wide = values.astype(np.int64)
    counts = np.bincount(keys, minlength=10_000)[present]
    sums = np.bincount(keys, weights=wide, minlength=10_000)[present].astype(np.int64)
    mins = np.full(10_000, 1 << 20)
    np.minimum.at(mins, keys, wide)
    maxs = np.full(10_000, -(1 << 20))
    np.maximum.at(maxs, keys, wide)
    want = {
        "sum": sums,
        "count": counts,
        "min": mins[present],
        "max": maxs[present],
        "mean": sums / counts,
    }
    for agg, aggregator in running.items():
        got_keys, got = aggregator.result(sort=True)
        np.testing.assert_array_equal(got_keys, present)
        np.testing.assert_allclose(got, want[agg])
    assert running["min"].result()[1].dtype == np.int16  # min/max keep the value dtype
    assert running["sum"].result()[1].dtype == np.int64  # sums of small ints in 64 bits


def test_partials_merge_to_the_one_pass_result() -> None:
    """A combiner's partials (values with row counts) merged by another aggregator equal the
    aggregation of the raw rows: the local-global split changes nothing."""
    rng = np.random.default_rng(9)
    keys = rng.integers(0, 300, 30_000).astype(np.uint64) * np.uint64(2**60 // 300)
    values = rng.normal(size=30_000)
    for agg in AGGREGATIONS:
        merged: KeyedAggregator | None = None
        for part in np.array_split(np.arange(30_000), 7):
            local = KeyedAggregator(agg, keys.dtype, values.dtype)
            local.update(keys[part], values[part])
            pk, pv, pc = local.partial()
            if merged is None:
                merged = KeyedAggregator(agg, pk.dtype, None if agg == "count" else pv.dtype)
            merged.update(pk, None if agg == "count" else pv, weights=pc)
        assert merged is not None
        got_keys, got = merged.result(sort=True)
        want_keys, want = group_aggregate(keys, values, agg, sort=True)
        assert got_keys.dtype == np.uint64
        np.testing.assert_array_equal(got_keys, want_keys)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_string_bytes_and_object_keys() -> None:
    words = np.array(["b", "a", "b", "é", "a", "b"])
    keys, counts = group_aggregate(words, None, "count")
    assert keys.tolist() == ["b", "a", "é"]
    assert counts.tolist() == [3, 2, 1]
    assert keys.dtype == words.dtype
    raw = np.array([b"x", b"yy", b"x"])
    keys, sums = group_aggregate(raw, np.array([1.5, 2.0, 3.0]), "sum", sort=True)
    assert keys.tolist() == [b"x", b"yy"]
    assert sums.tolist() == [4.5, 2.0]
    mixed = np.empty(4, dtype=object)
    mixed[:] = [("a", 1), 3, ("a", 1), "z"]
    keys, maxima = group_aggregate(mixed, np.array([1, 2, 5, 4]), "max", sort=True)
    assert keys.tolist() == [("a", 1), 3, "z"]  # not orderable among themselves: first seen
    assert maxima.tolist() == [5, 2, 4]


def test_nan_values_propagate_as_numpy_does() -> None:
    keys = np.array([1, 1, 2, 2])
    values = np.array([1.0, np.nan, 2.0, 3.0])
    for agg, want in [("sum", [np.nan, 5.0]), ("min", [np.nan, 2.0]), ("max", [np.nan, 3.0])]:
        _, got = group_aggregate(keys, values, agg)
        np.testing.assert_array_equal(got, want)
    _, means = group_aggregate(keys, values, "mean")
    np.testing.assert_array_equal(means, [np.nan, 2.5])


def test_other_key_and_value_dtypes_round_trip() -> None:
    stamps = np.array(["2024-01-01", "2024-01-02", "2024-01-01"], dtype="datetime64[D]")
    keys, sums = group_aggregate(stamps, np.array([1, 2, 3], dtype=np.uint8), "sum")
    assert keys.dtype == stamps.dtype
    assert keys.tolist() == stamps[:2].tolist()
    assert sums.dtype == np.uint64
    assert sums.tolist() == [4, 2]
    flags = np.array([True, False, True])
    keys, mins = group_aggregate(flags, np.array([3.0, 1.0, 2.0], dtype=np.float32), "min")
    assert keys.tolist() == [True, False]
    assert mins.dtype == np.float32
    assert mins.tolist() == [2.0, 1.0]


def test_empty_input_gives_empty_columns_of_the_right_dtypes() -> None:
    for agg in AGGREGATIONS:
        keys, values = group_aggregate(np.zeros(0, np.int32), np.zeros(0, np.float32), agg)
        assert keys.shape == (0,)
        assert keys.dtype == np.int32
        assert values.shape == (0,)
    empty = KeyedAggregator("sum", np.int64, np.int64)
    assert len(empty) == 0
    assert [a.tolist() for a in empty.partial()] == [[], [], []]


def test_wrong_input_raises_naming_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        group_aggregate(np.arange(3), np.arange(3), "median")
    with pytest.raises(TypeError, match="cannot group by keys of dtype complex128"):
        group_aggregate(np.zeros(3, np.complex128), np.arange(3), "sum")
    with pytest.raises(TypeError, match="aggregates numeric values, not dtype <U1"):
        group_aggregate(np.arange(3), np.array(["a", "b", "c"]), "sum")
    with pytest.raises(ValueError, match="3 keys but 2 values"):
        group_aggregate(np.arange(3), np.arange(2), "sum")
    with pytest.raises(ValueError, match="must be 1-D"):
        group_aggregate(np.zeros((2, 2)), np.arange(4), "sum")
    with pytest.raises(TypeError, match="keys must be a numpy array, not list"):
        group_aggregate([1, 2], np.arange(2), "sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sum needs a value column"):
        group_aggregate(np.arange(3), None, "sum")
    running = KeyedAggregator("max", np.int64, np.float64)
    with pytest.raises(TypeError, match="key column of dtype int32"):
        running.update(np.arange(2, dtype=np.int32), np.zeros(2))
    with pytest.raises(TypeError, match="value column of dtype int64"):
        running.update(np.arange(2), np.arange(2))


def test_group_table_grows_from_empty_past_a_million_keys() -> None:
    table = _core.GroupTable()
    keys = np.random.default_rng(2).permutation(1_200_000).astype(np.int64) * 7919
    groups = np.empty_like(keys)
    table.assign(keys, groups)
    assert len(table) == 1_200_000
    np.testing.assert_array_equal(groups, np.arange(1_200_000))
    again = np.empty_like(keys)
    table.assign(keys[::-1].copy(), again)
    np.testing.assert_array_equal(again, np.arange(1_200_000)[::-1])
    out = np.empty(len(table), np.int64)
    table.keys(out)
    np.testing.assert_array_equal(out, keys)


def test_time_windows_fold_column_batches_natively_as_rows_would() -> None:
    """A time window's columnar batch goes through the kernel (push_columns takes it) and
    leaves the same windows as its rows pushed one by one; late rows are dropped alike; a
    function timestamp falls back to rows."""
    rng = np.random.default_rng(6)
    columns = {
        "k": rng.integers(0, 7, 5_000),
        "t": rng.integers(0, 500, 5_000),
        "v": rng.integers(0, 100, 5_000),
    }
    env = StreamEnvironment()
    keyed = env.from_arrays(columns).key_by("k")
    for agg in ("sum", "min", "max", "count"):
        windowed = keyed.time_window(50, timestamp="t")
        op = (windowed.count() if agg == "count" else getattr(windowed, agg)("v")).operator
        native, by_rows = _TimeWindow(op), _TimeWindow(op)
        native.fired = by_rows.fired = 100  # windows before 100 fired: their rows are late
        half = {name: c[:2_500] for name, c in columns.items()}
        rest = {name: c[2_500:] for name, c in columns.items()}
        assert native.push_columns(half)
        assert native.push_columns(rest)
        by_rows.push(rows(columns))
        assert native.late == by_rows.late > 0
        assert sorted(native.finish()) == sorted(by_rows.finish())
    by_function = keyed.time_window(50, timestamp=lambda r: r["t"]).sum("v").operator
    assert not _TimeWindow(by_function).push_columns(columns)
