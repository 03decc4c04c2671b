"""hash_keys and the 'hash' scheme: native results equal the reference, value for value."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from _support import partition_reference as ref
from pydispatch.partition import hash_keys, partition

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
seeds = st.integers(min_value=0, max_value=ref.M64)


def expected(values: list[object], seed: int = 0) -> np.ndarray:
    return np.array([ref.hash_value(v, seed) for v in values], dtype=np.uint64)


@pytest.mark.parametrize("dtype", INT_DTYPES)
@given(data=st.data(), seed=seeds)
def test_integers_equal_reference(dtype: str, data: st.DataObject, seed: int) -> None:
    keys = data.draw(hnp.arrays(np.dtype(dtype), st.integers(0, 60)))
    np.testing.assert_array_equal(hash_keys(keys, seed), expected(keys.tolist(), seed))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(data=st.data(), seed=seeds)
def test_floats_equal_reference(dtype: str, data: st.DataObject, seed: int) -> None:
    keys = data.draw(hnp.arrays(np.dtype(dtype), st.integers(0, 60)))
    np.testing.assert_array_equal(
        hash_keys(keys, seed), expected([float(v) for v in keys.tolist()], seed)
    )


@given(st.lists(st.text(max_size=12), max_size=40), seeds)
def test_unicode_and_str_objects_equal_reference(values: list[str], seed: int) -> None:
    # numpy's U drops trailing NULs on read: the reference sees what numpy gives back.
    fixed = np.array(values, dtype="U12") if values else np.array([], dtype="U1")
    np.testing.assert_array_equal(hash_keys(fixed, seed), expected(fixed.tolist(), seed))
    objects = np.array([*values, None], dtype=object)[:-1]
    np.testing.assert_array_equal(hash_keys(objects, seed), expected(values, seed))


@given(st.lists(st.binary(max_size=20), max_size=40), seeds)
def test_bytes_equal_reference(values: list[bytes], seed: int) -> None:
    fixed = np.array(values, dtype="S20") if values else np.array([], dtype="S1")
    np.testing.assert_array_equal(hash_keys(fixed, seed), expected(fixed.tolist(), seed))
    objects = np.empty(len(values), dtype=object)
    objects[:] = values
    np.testing.assert_array_equal(hash_keys(objects, seed), expected(values, seed))


@given(
    st.lists(
        st.one_of(
            st.integers(min_value=-(1 << 80), max_value=1 << 80),
            st.floats(allow_nan=True),
            st.text(max_size=5),
            st.binary(max_size=5),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_mixed_objects_equal_reference(values: list[object]) -> None:
    objects = np.empty(len(values), dtype=object)
    objects[:] = values
    np.testing.assert_array_equal(hash_keys(objects), expected(values))


def test_equal_values_hash_alike_across_dtypes() -> None:
    values = [0, 1, 3, 100, 127]
    reference = hash_keys(np.array(values, dtype=np.int64))
    for dtype in [*INT_DTYPES, "float32", "float64", "float16"]:
        np.testing.assert_array_equal(hash_keys(np.array(values, dtype=dtype)), reference)
    np.testing.assert_array_equal(hash_keys(np.array(values, dtype=object)), reference)
    np.testing.assert_array_equal(
        hash_keys(np.array([True, False])), hash_keys(np.array([1, 0], dtype=np.uint8))
    )
    negative = np.array([-1, -128], dtype=np.int8)
    np.testing.assert_array_equal(hash_keys(negative), hash_keys(negative.astype(np.int64)))
    np.testing.assert_array_equal(
        hash_keys(np.array(["héllo", "😀"])), hash_keys(np.array(["héllo", "😀"], dtype=object))
    )


def test_special_floats() -> None:
    h = hash_keys(np.array([0.0, -0.0, np.nan, -np.nan, float("nan")]))
    assert h[0] == h[1]
    assert h[2] == h[3] == h[4]
    assert h[0] != h[2]
    # uint64 beyond int64 and the negative int64 with the same bits must differ.
    big = hash_keys(np.array([2**64 - 1], dtype=np.uint64))
    assert big[0] != hash_keys(np.array([-1], dtype=np.int64))[0]
    assert big[0] == hash_keys(np.array([2**64 - 1], dtype=object))[0]


def test_str_and_bytes_and_int_do_not_meet() -> None:
    values = np.array(["1", b"1", 1], dtype=object)
    assert len(set(hash_keys(values).tolist())) == 3


def test_seed_changes_hash() -> None:
    keys = np.arange(1000)
    assert (hash_keys(keys, 1) != hash_keys(keys, 2)).mean() > 0.99


@given(
    hnp.arrays(np.int32, st.integers(0, 30), elements=st.integers(-50, 50)),
    st.integers(0, 1000),
)
def test_multi_column_combines_in_order(a: np.ndarray, seed: int) -> None:
    b = a[::-1].astype(np.float64).copy()
    combined = hash_keys((a, b), seed)
    ha, hb = hash_keys(a, seed), hash_keys(b, seed)
    expected_combined = [ref.combine(x, y) for x, y in zip(ha.tolist(), hb.tolist(), strict=True)]
    np.testing.assert_array_equal(combined, np.array(expected_combined, dtype=np.uint64))
    np.testing.assert_array_equal(hash_keys((a,), seed), ha)


@given(
    hnp.arrays(np.int64, st.integers(0, 200)),
    st.integers(1, 5000),
    seeds,
)
def test_hash_partition_equals_reference_reduction(keys: np.ndarray, n: int, seed: int) -> None:
    ids = partition(keys, n, seed=seed)
    assert ids.dtype == np.int32
    assert ((ids >= 0) & (ids < n)).all()
    reference = [ref.reduce(ref.hash_value(v, seed), n) for v in keys.tolist()]
    np.testing.assert_array_equal(ids, reference)
    # The fused integer path and the generic hash-then-reduce path agree.
    np.testing.assert_array_equal(ids, partition(keys.astype(object), n, seed=seed))


def test_partition_of_tuple_and_strings_in_range() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 100, 5000)
    s = np.array([f"k{v}" for v in rng.integers(0, 100, 5000)])
    ids = partition((a, s), 13)
    assert ids.min() >= 0
    assert ids.max() < 13
    np.testing.assert_array_equal(ids, partition((a, s), 13))  # deterministic
    counts = np.bincount(partition(rng.integers(0, 1 << 40, 100_000), 16), minlength=16)
    assert counts.min() > 0.9 * 100_000 / 16  # evenly spread


def test_non_contiguous_and_big_endian_and_readonly_inputs() -> None:
    keys = np.arange(100, dtype=np.int64)
    np.testing.assert_array_equal(hash_keys(keys[::2]), hash_keys(keys[::2].copy()))
    np.testing.assert_array_equal(hash_keys(keys.astype(">i8")), hash_keys(keys))
    frozen = keys.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(hash_keys(frozen), hash_keys(keys))
    dates = np.array(["2024-01-01", "NaT", "NaT"], dtype="datetime64[D]")
    h = hash_keys(dates)
    assert h[1] == h[2]
    np.testing.assert_array_equal(h[:1], hash_keys(dates[:1].view(np.int64)))


def test_contiguous_input_is_not_copied() -> None:
    keys = np.arange(2_000_000, dtype=np.int64)  # 16 MB
    hash_keys(keys[:10])  # warm up any lazy allocations
    tracemalloc.start()
    try:
        ids = partition(keys, 64)
        hashes = hash_keys(keys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The outputs alone take 8 MB + 16 MB; a copy of the input would add 16 MB more.
    assert peak < ids.nbytes + hashes.nbytes + 1_000_000


def test_empty_input() -> None:
    assert hash_keys(np.array([], dtype=np.int64)).shape == (0,)
    assert partition(np.array([], dtype="U3"), 4).shape == (0,)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: hash_keys([1, 2, 3]), TypeError, "must be a numpy array"),  # type: ignore[arg-type]
        (lambda: hash_keys(np.zeros((2, 2))), ValueError, "1-D"),
        (lambda: hash_keys(np.zeros(2, dtype=complex)), TypeError, "unsupported keys dtype"),
        (lambda: hash_keys(np.array([1, None], dtype=object)), TypeError, "NoneType' at index 1"),
        (lambda: hash_keys((np.arange(2), np.arange(3))), ValueError, "differ in length"),
        (lambda: hash_keys(()), ValueError, "empty tuple"),
        (lambda: hash_keys(np.arange(2), seed=-1), ValueError, "seed"),
        (lambda: partition(np.arange(3), 0), ValueError, "n (the number of partitions)"),
        (lambda: partition(np.arange(3), 1 << 30), ValueError, "n (the number of partitions)"),
        (lambda: partition(np.arange(3), 2.5), TypeError, "must be an integer"),  # type: ignore[arg-type]
        (lambda: partition(np.arange(3), True), TypeError, "not bool"),
        (lambda: partition(np.arange(3), 4, "md5"), ValueError, "unknown scheme"),
        (lambda: partition(np.arange(3), 4, "kafka", seed=3), ValueError, "seed applies"),
    ],
)
def test_bad_input_is_named(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()  # type: ignore[operator]


def test_numpy_scalars_in_object_arrays_hash_as_their_python_values() -> None:
    scalars = np.array(
        [np.int64(5), np.uint8(7), np.float32(1.5), np.bool_(True), np.str_("s"), np.bytes_(b"b")],
        dtype=object,
    )
    plain = np.array([5, 7, 1.5, True, "s", b"b"], dtype=object)
    np.testing.assert_array_equal(hash_keys(scalars), hash_keys(plain))
