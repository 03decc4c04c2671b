"""scatter / split / broadcast, ranges, round robin, rescale and two choices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from _support import partition_reference as ref
from pydispatch.partition import (
    BROADCAST,
    broadcast,
    hash_keys,
    partition,
    range_boundaries,
    range_partition,
    rescale,
    rescale_targets,
    round_robin,
    scatter,
    split,
    two_choices,
)


@st.composite
def ids_and_n(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    n = draw(st.integers(1, 40))
    ids = draw(hnp.arrays(np.int32, st.integers(0, 300), elements=st.integers(0, n - 1)))
    return ids, n


@given(ids_and_n())
def test_scatter_is_a_stable_permutation(case: tuple[np.ndarray, int]) -> None:
    ids, n = case
    order, offsets = scatter(ids, n)
    assert order.dtype == np.int64
    assert offsets.dtype == np.int64
    assert offsets.shape == (n + 1,)
    expected_order, expected_offsets = ref.stable_scatter(ids.tolist(), n)
    np.testing.assert_array_equal(order, expected_order)
    np.testing.assert_array_equal(offsets, expected_offsets)
    np.testing.assert_array_equal(np.sort(order), np.arange(ids.shape[0]))
    for p in range(n):
        rows = order[offsets[p] : offsets[p + 1]]
        assert (ids[rows] == p).all()
        assert (np.diff(rows) > 0).all()  # stable: input order kept


@given(ids_and_n(), st.sampled_from([np.int8, np.int64, np.uint16]))
def test_scatter_accepts_other_integer_dtypes(case: tuple[np.ndarray, int], dtype: type) -> None:
    ids, n = case
    n = min(n, 100)
    a = scatter(ids, n)
    b = scatter(ids.astype(dtype), n)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@given(ids_and_n())
def test_split_round_trips(case: tuple[np.ndarray, int]) -> None:
    ids, n = case
    rows = ids.shape[0]
    columns = {
        "key": np.arange(rows, dtype=np.int64),
        "value": np.linspace(0, 1, rows),
        "name": np.array([f"r{i}" for i in range(rows)], dtype=object),
        "pair": np.arange(2 * rows).reshape(rows, 2),
        "tag": np.array([f"t{i % 100}" for i in range(rows)], dtype="S3"),  # 3-byte rows
        "strided": np.arange(2 * rows, dtype=np.int16)[::2],  # not contiguous
        "big_endian": np.arange(rows, dtype=">i4"),
        "empty_rows": np.zeros((rows, 0)),
    }
    parts = split(columns, ids, n)
    assert len(parts) == n
    for p, part in enumerate(parts):
        assert set(part) == set(columns)
        assert (ids[part["key"]] == p).all()
        assert (np.diff(part["key"]) > 0).all()
    for name, column in columns.items():
        joined = np.concatenate([part[name] for part in parts]) if rows else column[:0]
        restored = np.empty_like(column)
        restored[np.concatenate([part["key"] for part in parts]) if rows else []] = joined
        np.testing.assert_array_equal(restored, column)
    # One array in, a list of arrays out.
    single = split(columns["value"], ids, n)
    for p in range(n):
        np.testing.assert_array_equal(single[p], parts[p]["value"])


def test_split_parts_are_views_of_one_gather() -> None:
    ids = partition(np.arange(10_000), 8)
    parts = split({"x": np.arange(10_000.0)}, ids, 8)
    base = parts[0]["x"].base
    assert base is not None
    assert all(part["x"].base is base for part in parts)


def test_broadcast_shares_memory_read_only() -> None:
    columns = {"x": np.arange(5), "y": np.ones(5)}
    copies = broadcast(columns, 3)
    assert len(copies) == 3
    for copy in copies:
        assert np.shares_memory(copy["x"], columns["x"])
        with pytest.raises(ValueError, match="read-only"):
            copy["x"][0] = 7
    assert columns["x"].flags.writeable
    assert BROADCAST == -1


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: scatter(np.array([0, 3, 1], dtype=np.int32), 3), ValueError, "id 3 at index 1"),
        (lambda: scatter(np.array([0, -1]), 3), ValueError, "id -1 at index 1"),
        (lambda: scatter(np.array([0, 2**32]), 3), ValueError, "out of range"),
        (lambda: scatter(np.array([0.0, 1.0]), 3), TypeError, "must be integers"),
        (
            lambda: split({"a": np.arange(3)}, np.zeros(2, dtype=np.int32), 1),
            ValueError,
            "'a' has 3 rows",
        ),
        (
            lambda: split({"a": [1, 2]}, np.zeros(2, dtype=np.int32), 1),
            TypeError,
            "'a' must be a numpy array",
        ),
        (lambda: split([1, 2], np.zeros(2, dtype=np.int32), 1), TypeError, "dict of numpy arrays"),
        (
            lambda: split({"a": np.arange(2)}, np.array([0, BROADCAST]), 2),
            ValueError,
            "out of range",
        ),
    ],
)
def test_bad_layout_input_is_named(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


# --- Ranges ----------------------------------------------------------------------------------


@given(
    hnp.arrays(np.float64, st.integers(1, 200), elements=st.floats(-1e6, 1e6)),
    hnp.arrays(
        np.float64, st.integers(0, 200), elements=st.floats(allow_nan=True, allow_infinity=True)
    ),
    st.integers(1, 20),
)
def test_range_partition_equals_bisect(sample: np.ndarray, keys: np.ndarray, n: int) -> None:
    boundaries = range_boundaries(sample, n)
    assert boundaries.shape == (n - 1,)
    assert (np.diff(boundaries) >= 0).all()
    ids = range_partition(keys, boundaries)
    np.testing.assert_array_equal(ids, ref.range_ids(keys.tolist(), boundaries.tolist()))
    assert ((ids >= 0) & (ids < n)).all()


@pytest.mark.parametrize("dtype", ["int8", "uint64", "int64", "float32"])
def test_range_partition_native_dtypes_match_searchsorted(dtype: str) -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 100, 1000).astype(dtype)
    boundaries = range_boundaries(keys, 7)
    np.testing.assert_array_equal(
        range_partition(keys, boundaries), np.searchsorted(boundaries, keys, side="right")
    )


def test_range_boundaries_are_equal_weight() -> None:
    sample = np.random.default_rng(1).permutation(100_000)
    ids = range_partition(sample, range_boundaries(sample, 8))
    np.testing.assert_array_equal(np.bincount(ids, minlength=8), [12_500] * 8)


def test_range_ties_nan_strings_and_datetimes() -> None:
    tied = np.array([5] * 90 + list(range(10)))
    ids = range_partition(tied, range_boundaries(tied, 4))
    assert len(set(ids[:90].tolist())) == 1  # all copies of a value in one range
    with_nan = np.array([1.0, np.nan, 2.0, np.nan, 3.0])
    boundaries = range_boundaries(with_nan, 2)
    assert boundaries.tolist() == [2.0]
    assert range_partition(with_nan, boundaries).tolist() == [0, 1, 1, 1, 1]
    words = np.array(["pear", "apple", "fig", "kiwi", "plum", "date"])
    np.testing.assert_array_equal(
        range_partition(words, range_boundaries(words, 3)),
        np.searchsorted(range_boundaries(words, 3), words, side="right"),
    )
    days = np.array(["2024-01-03", "NaT", "2024-01-01", "2024-01-02"], dtype="datetime64[D]")
    bounds = range_boundaries(days, 2)
    assert range_partition(days, bounds).tolist() == [1, 1, 0, 1]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: range_boundaries(np.array([np.nan]), 2), ValueError, "empty"),
        (lambda: range_boundaries(np.array([], dtype=np.int64), 2), ValueError, "empty"),
        (lambda: range_boundaries(np.array([1j]), 2), TypeError, "no natural order"),
        (
            lambda: range_partition(np.arange(3), np.array([2, 1])),
            ValueError,
            r"boundaries\[1\] < boundaries\[0\]",
        ),
        (lambda: range_partition(np.arange(3.0), np.array([np.nan])), ValueError, "NaN"),
        (lambda: range_partition(np.array(["a"]), np.array([1])), TypeError, "do not compare"),
    ],
)
def test_bad_range_input_is_named(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]


# --- Round robin and rescale -----------------------------------------------------------------


@given(st.integers(0, 500), st.integers(1, 50), st.integers(0, 10**12))
def test_round_robin(count: int, n: int, start: int) -> None:
    np.testing.assert_array_equal(
        round_robin(count, n, start), [(start + j) % n for j in range(count)]
    )


def test_rescale_matches_flink() -> None:
    # The channel sequence Flink 2.3.0's RescalePartitioner gives over 3 channels.
    path = Path(__file__).parents[1] / "data" / "flink_2.3.0_reference.tsv"
    flink = next(
        line.split("\t")[1:]
        for line in path.read_text().splitlines()
        if line.startswith("rescale3")
    )
    assert rescale(7, 0, 1, 3).tolist() == [int(c) for c in flink]


@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 60), st.data())
def test_rescale_follows_flink_pointwise(
    upstream: int, downstream: int, count: int, data: st.DataObject
) -> None:
    covered: list[int] = []
    for i in range(upstream):
        targets = rescale_targets(i, upstream, downstream)
        assert list(targets) == ref.flink_pointwise_targets(i, upstream, downstream)
        covered.extend(targets)
    # Every downstream subtask is fed; with p <= n by exactly one upstream subtask.
    assert set(covered) == set(range(downstream))
    if upstream <= downstream:
        assert len(covered) == downstream
    i = data.draw(st.integers(0, upstream - 1))
    start = data.draw(st.integers(0, 100))
    targets = rescale_targets(i, upstream, downstream)
    ids = rescale(count, i, upstream, downstream, start)
    assert ids.tolist() == [targets.start + (start + j) % len(targets) for j in range(count)]


# --- Two choices -----------------------------------------------------------------------------


@given(
    hnp.arrays(np.int64, st.integers(0, 400), elements=st.integers(0, 30)),
    st.integers(1, 12),
    st.integers(0, 2**32),
    st.sampled_from([None, 0.05, 0.5]),
)
def test_two_choices_equals_reference(
    keys: np.ndarray, n: int, seed: int, hot: float | None
) -> None:
    result = two_choices(keys, n, seed, hot_fraction=hot)
    fraction = 1 / (5 * n) if hot is None else hot
    ids, loads = ref.two_choices(hash_keys(keys, seed).tolist(), n, fraction, 16 * n)
    np.testing.assert_array_equal(result.ids, ids)
    np.testing.assert_array_equal(result.loads, loads)
    np.testing.assert_array_equal(result.loads, np.bincount(result.ids, minlength=n))


def test_two_choices_balances_skew_and_keeps_cold_keys_on_two_partitions() -> None:
    rng = np.random.default_rng(11)
    keys = rng.zipf(1.3, 200_000) % 50_000
    n = 16
    hashed = np.bincount(partition(keys, n), minlength=n)
    result = two_choices(keys, n)
    mean = keys.shape[0] / n
    assert result.loads.max() / mean < 1.05  # near-perfect balance
    assert hashed.max() / mean > 2.0  # where plain hashing is far off
    # Cold keys (not hot at any point) live on at most two partitions.
    values, counts = np.unique(keys, return_counts=True)
    cold = values[counts < 20]
    spread = {int(k): set() for k in cold[:2000]}
    for k, p in zip(keys.tolist(), result.ids.tolist(), strict=True):
        if k in spread:
            spread[k].add(p)
    assert max(len(s) for s in spread.values()) <= 2
    np.testing.assert_array_equal(two_choices(keys, n).ids, result.ids)  # deterministic


def test_two_choices_bad_input() -> None:
    with pytest.raises(ValueError, match="hot_fraction"):
        two_choices(np.arange(3), 2, hot_fraction=0.0)
    empty = two_choices(np.array([], dtype=np.int64), 3)
    assert empty.ids.shape == (0,)
    assert empty.loads.tolist() == [0, 0, 0]
