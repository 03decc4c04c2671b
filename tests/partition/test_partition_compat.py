"""The 'flink' and 'kafka' schemes: equal to the projects' own published values and to the
reference implementations written from their algorithms."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from _support import partition_reference as ref
from pydispatch import _core
from pydispatch.partition import default_max_parallelism, key_group_range, key_groups, partition

FLINK_CONFIGS = [(128, 1), (128, 2), (128, 4), (128, 7), (256, 5), (32768, 100), (1000, 3)]


def _flink_rows() -> list[tuple[str, object, int, list[tuple[int, int]]]]:
    rows = []
    path = Path(__file__).parents[1] / "data" / "flink_2.3.0_reference.tsv"
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        kind, raw, hash_code, *cells = line.split("\t")
        if kind not in ("int", "long", "str", "double", "bool"):
            continue
        value: object
        if kind in ("int", "long"):
            value = int(raw)
        elif kind == "str":
            hex_utf8, _, length = raw.partition(":")
            value = (
                bytes.fromhex(hex_utf8.zfill(len(hex_utf8) + len(hex_utf8) % 2)).decode()
                if int(length)
                else ""
            )
        elif kind == "double":
            value = float(raw)
        else:
            value = raw == "true"
        pairs = [(int(a), int(b)) for a, b in (cell.split(",") for cell in cells)]
        rows.append((kind, value, int(hash_code), pairs))
    return rows


FLINK_ROWS = _flink_rows()
FLINK_DTYPES = {"int": np.int32, "long": np.int64, "double": np.float64, "bool": np.bool_}


def test_flink_reference_file_is_read() -> None:
    assert len(FLINK_ROWS) == 36
    assert {kind for kind, *_ in FLINK_ROWS} == {"int", "long", "str", "double", "bool"}


@pytest.mark.parametrize(("kind", "value", "hash_code", "pairs"), FLINK_ROWS)
def test_flink_equals_flink_2_3(
    kind: str, value: object, hash_code: int, pairs: list[tuple[int, int]]
) -> None:
    if kind == "str":
        arrays = [np.array([value]), np.array([value], dtype=object)]
    else:
        arrays = [np.array([value], dtype=FLINK_DTYPES[kind])]
        if kind in ("long", "double", "bool"):
            arrays.append(np.array([value], dtype=object))
    for keys in arrays:
        for (max_parallelism, parallelism), (group, operator) in zip(
            FLINK_CONFIGS, pairs, strict=True
        ):
            assert key_groups(keys, max_parallelism)[0] == group, (keys, max_parallelism)
            assert (
                partition(keys, parallelism, "flink", max_parallelism=max_parallelism)[0]
                == operator
            )


def test_flink_published_murmur_and_ranges() -> None:
    path = Path(__file__).parents[1] / "data" / "flink_2.3.0_reference.tsv"
    lines = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    for row in lines:
        if row[0] == "murmur":
            # MathUtils.murmurHash(v) is the key group modulo a max parallelism above it.
            assert ref.flink_murmur(int(row[1])) == int(row[2])
            assert (
                key_groups(np.array([int(row[1])], dtype=np.int32), 2**15)[0] == int(row[2]) % 2**15
            )
        elif row[0] == "defaultmax":
            assert default_max_parallelism(int(row[1])) == int(row[2])
        elif row[0] == "range":
            mp, p, index, start, end = map(int, row[1:])
            assert key_group_range(index, p, mp) == range(start, end + 1)
    # MurmurHash3_x86_32's published vectors (seed 0), on which Flink's murmur rests.
    assert ref.murmur3_x86_32(b"") == 0
    assert ref.murmur3_x86_32(b"\xff\xff\xff\xff") == 0x76293B50
    assert ref.murmur3_x86_32(b"\x21\x43\x65\x87") == 0xF55B516B
    assert ref.murmur3_x86_32(b"\x00\x00\x00\x00") == 0x2362F9DE


@given(
    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=30),
    st.integers(1, 2**15),
    st.data(),
)
def test_flink_int32_equals_reference(
    values: list[int], max_parallelism: int, data: st.DataObject
) -> None:
    parallelism = data.draw(st.integers(1, max_parallelism))
    keys = np.array(values, dtype=np.int32)
    groups = [ref.flink_key_group(v, max_parallelism) for v in values]
    np.testing.assert_array_equal(key_groups(keys, max_parallelism), groups)
    np.testing.assert_array_equal(
        partition(keys, parallelism, "flink", max_parallelism=max_parallelism),
        [ref.flink_operator_index(g, parallelism, max_parallelism) for g in groups],
    )


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30), st.integers(1, 300))
def test_flink_int64_equals_reference(values: list[int], parallelism: int) -> None:
    mp = ref.flink_default_max_parallelism(parallelism)
    expected = [
        ref.flink_operator_index(ref.flink_key_group(ref.java_long_hash(v), mp), parallelism, mp)
        for v in values
    ]
    np.testing.assert_array_equal(
        partition(np.array(values, dtype=np.int64), parallelism, "flink"), expected
    )
    np.testing.assert_array_equal(
        partition(np.array(values, dtype=object), parallelism, "flink"), expected
    )


@given(st.lists(st.text(max_size=10), max_size=30))
def test_flink_strings_equal_reference(values: list[str]) -> None:
    expected = [ref.flink_key_group(ref.java_string_hash(v), 128) for v in values]
    objects = np.empty(len(values), dtype=object)
    objects[:] = values
    np.testing.assert_array_equal(key_groups(objects, 128), expected)
    fixed = np.array(values, dtype="U10") if values else np.array([], dtype="U1")
    np.testing.assert_array_equal(
        key_groups(fixed, 128),
        [ref.flink_key_group(ref.java_string_hash(v), 128) for v in fixed.tolist()],
    )


@given(hnp.arrays(np.float32, st.integers(0, 30)), hnp.arrays(np.float64, st.integers(0, 30)))
def test_flink_floats_equal_reference(f32: np.ndarray, f64: np.ndarray) -> None:
    np.testing.assert_array_equal(
        key_groups(f32, 128),
        [ref.flink_key_group(ref.java_float_hash(v), 128) for v in f32.tolist()],
    )
    np.testing.assert_array_equal(
        key_groups(f64, 128),
        [ref.flink_key_group(ref.java_double_hash(v), 128) for v in f64.tolist()],
    )


@given(st.integers(1, 2**15), st.data())
def test_key_group_ranges_tile_and_agree_with_operator_index(mp: int, data: st.DataObject) -> None:
    p = data.draw(st.integers(1, min(mp, 64)))
    ranges = [key_group_range(i, p, mp) for i in range(p)]
    assert ranges[0].start == 0
    assert ranges[-1].stop == mp
    for before, after in itertools.pairwise(ranges):
        assert before.stop == after.start
    for i, r in enumerate(ranges):
        assert r == ref.flink_key_group_range(i, p, mp)
        for group in (r.start, r.stop - 1) if len(r) else ():
            assert ref.flink_operator_index(group, p, mp) == i


# --- Kafka -----------------------------------------------------------------------------------

# Values of Kafka's Utils.murmur2, as published in Kafka's UtilsTest and Akka's Murmur2Spec.
KAFKA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
}


@pytest.mark.parametrize(("key", "value"), list(KAFKA_MURMUR2.items()))
def test_kafka_murmur2_published_values(key: bytes, value: int) -> None:
    assert ref.kafka_murmur2(key) == value
    assert _core.kafka_murmur2_bytes(np.frombuffer(key, dtype=np.uint8)) == value
    n = 7
    expected = (value & 0x7FFFFFFF) % n
    assert partition(np.array([key]), n, "kafka")[0] == expected
    assert partition(np.array([key.decode()]), n, "kafka")[0] == expected
    assert partition(np.array([key.decode()], dtype=object), n, "kafka")[0] == expected


@given(st.lists(st.text(max_size=15), max_size=30), st.integers(1, 1000))
def test_kafka_strings_equal_reference(values: list[str], n: int) -> None:
    values = [v for v in values if not any(0xD800 <= ord(c) < 0xE000 for c in v)]
    objects = np.empty(len(values), dtype=object)
    objects[:] = values
    expected = [ref.kafka_partition(v.encode(), n) for v in values]
    np.testing.assert_array_equal(partition(objects, n, "kafka"), expected)
    fixed = np.array(values, dtype="U15") if values else np.array([], dtype="U1")
    np.testing.assert_array_equal(
        partition(fixed, n, "kafka"), [ref.kafka_partition(v.encode(), n) for v in fixed.tolist()]
    )


@pytest.mark.parametrize(("dtype", "fmt"), [(np.int16, ">h"), (np.int32, ">i"), (np.int64, ">q")])
@given(data=st.data(), n=st.integers(1, 1000))
def test_kafka_integers_as_serialized(dtype: type, fmt: str, data: st.DataObject, n: int) -> None:
    keys = data.draw(hnp.arrays(dtype, st.integers(0, 30)))
    expected = [ref.kafka_partition(struct.pack(fmt, v), n) for v in keys.tolist()]
    np.testing.assert_array_equal(partition(keys, n, "kafka"), expected)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: partition(np.array([1], dtype=np.uint32), 2, "flink"),
            TypeError,
            "no Java counterpart",
        ),
        (lambda: partition(np.array([b"x"]), 2, "flink"), TypeError, "no Java counterpart"),
        (lambda: partition(np.array([1.5]), 2, "kafka"), TypeError, "no Kafka serializer"),
        (lambda: partition(np.array([1], dtype=object), 2, "kafka"), TypeError, "str or bytes"),
        (lambda: partition(np.array([None], dtype=object), 2, "flink"), TypeError, "NoneType"),
        (
            lambda: partition(np.array([2**70], dtype=object), 2, "flink"),
            OverflowError,
            "Java long",
        ),
        (
            lambda: partition(np.arange(3), 200, "flink", max_parallelism=128),
            ValueError,
            "exceeds max_parallelism",
        ),
        (
            lambda: partition(np.arange(3), 2, "flink", max_parallelism=2**16),
            ValueError,
            "max_parallelism",
        ),
        (lambda: partition((np.arange(3),), 2, "kafka"), TypeError, "one key column"),
        (
            lambda: partition(np.arange(3), 2, "kafka", max_parallelism=8),
            ValueError,
            "flink' scheme only",
        ),
        (lambda: key_group_range(3, 3, 128), ValueError, "operator_index"),
        (lambda: key_group_range(0, 200, 128), ValueError, "parallelism"),
    ],
)
def test_bad_compat_input_is_named(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]
