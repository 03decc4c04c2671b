"""The partitioner against the best plain-numpy / pandas / pure-Python versions.

Run: python -m pytest bench/bench_partition.py
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from _support import partition_reference as ref
from conftest import Recorder
from pydispatch.partition import hash_keys, partition, scatter

N_KEYS = 10_000_000
N_PARTS = 64


@pytest.fixture(scope="module")
def int_keys() -> npt.NDArray[np.int64]:
    return np.random.default_rng(0).integers(-(2**62), 2**62, N_KEYS, dtype=np.int64)


@pytest.fixture(scope="module")
def str_keys() -> npt.NDArray[np.object_]:
    rng = np.random.default_rng(1)
    words = np.array([f"user-{v:x}" for v in rng.integers(0, 1 << 28, 1_000_000)], dtype=object)
    return words


def numpy_fmix64(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """MurmurHash3's fmix64, vectorised in place on one copy of the keys."""
    h = keys.view(np.uint64).copy()
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def numpy_hash_scatter(
    keys: npt.NDArray[np.int64], n: int, ids_dtype: type = np.uint8
) -> tuple[Any, Any]:
    """Plain numpy: fmix64 vectorised in place, modulo, stable argsort.

    With the ids narrowed to uint8 (the default, the best numpy version) numpy's stable argsort
    is a radix sort; with int64 ids, as numpy code is usually written, it is a timsort.
    """
    h = numpy_fmix64(keys)
    ids = (h % np.uint64(n)).astype(ids_dtype)
    order = np.argsort(ids, kind="stable")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(ids, minlength=n), out=offsets[1:])
    return order, offsets


def bench_hash_scatter_numpy(benchmark: Any, record: Recorder, int_keys: Any) -> None:
    _order, offsets = benchmark.pedantic(
        numpy_hash_scatter, args=(int_keys, N_PARTS), rounds=5, warmup_rounds=1
    )
    assert offsets[-1] == N_KEYS
    record(
        "10M int64 keys -> 64 partitions, hash + scatter",
        "numpy, uint8 ids, radix argsort",
        N_KEYS,
        baseline=True,
    )


def bench_hash_scatter_numpy_int64_ids(benchmark: Any, record: Recorder, int_keys: Any) -> None:
    _, offsets = benchmark.pedantic(
        numpy_hash_scatter, args=(int_keys, N_PARTS, np.int64), rounds=2, warmup_rounds=0
    )
    assert offsets[-1] == N_KEYS
    record(
        "10M int64 keys -> 64 partitions, hash + scatter",
        "numpy, int64 ids, timsort argsort",
        N_KEYS,
        baseline=True,
    )


def bench_hash_scatter_pydispatch(benchmark: Any, record: Recorder, int_keys: Any) -> None:
    def run() -> tuple[Any, Any]:
        return scatter(partition(int_keys, N_PARTS), N_PARTS)

    _order, offsets = benchmark.pedantic(run, rounds=10, warmup_rounds=1)
    assert offsets[-1] == N_KEYS
    record(
        "10M int64 keys -> 64 partitions, hash + scatter", "pydispatch partition + scatter", N_KEYS
    )


def bench_hash_str_pandas(benchmark: Any, record: Recorder, str_keys: Any) -> None:
    pandas = pytest.importorskip(
        "pandas", reason="pandas is the baseline here: pip install '.[bench]'"
    )
    hashes = benchmark.pedantic(
        pandas.util.hash_array,
        args=(str_keys,),
        kwargs={"categorize": False},
        rounds=5,
        warmup_rounds=1,
    )
    assert hashes.shape == (1_000_000,)
    record(
        "hash_keys, 1M short str keys",
        "pandas hash_array(categorize=False)",
        1_000_000,
        baseline=True,
    )


def bench_hash_str_pydispatch(benchmark: Any, record: Recorder, str_keys: Any) -> None:
    hashes = benchmark.pedantic(hash_keys, args=(str_keys,), rounds=10, warmup_rounds=1)
    assert hashes.shape == (1_000_000,)
    record("hash_keys, 1M short str keys", "pydispatch hash_keys (object array)", 1_000_000)


def bench_hash_str_pydispatch_fixed(benchmark: Any, record: Recorder, str_keys: Any) -> None:
    fixed = str_keys.astype("U")
    hashes = benchmark.pedantic(hash_keys, args=(fixed,), rounds=10, warmup_rounds=1)
    assert hashes.shape == (1_000_000,)
    record("hash_keys, 1M short str keys", "pydispatch hash_keys (numpy U array)", 1_000_000)


KAFKA_LOOP_KEYS = 100_000  # the pure-Python loop takes seconds per 100k keys; rates compare


def bench_kafka_python_loop(benchmark: Any, record: Recorder, str_keys: Any) -> None:
    subset = str_keys[:KAFKA_LOOP_KEYS].tolist()

    def run() -> list[int]:
        return [ref.kafka_partition(k.encode(), N_PARTS) for k in subset]

    ids = benchmark.pedantic(run, rounds=2, warmup_rounds=0)
    assert len(ids) == KAFKA_LOOP_KEYS
    record(
        "kafka scheme, str keys",
        "Python murmur2 loop, 100k keys",
        KAFKA_LOOP_KEYS,
        baseline=True,
    )


def bench_kafka_pydispatch(benchmark: Any, record: Recorder, str_keys: Any) -> None:
    ids = benchmark.pedantic(
        partition, args=(str_keys, N_PARTS, "kafka"), rounds=10, warmup_rounds=1
    )
    np.testing.assert_array_equal(
        ids[:1000], [ref.kafka_partition(k.encode(), N_PARTS) for k in str_keys[:1000]]
    )
    record("kafka scheme, str keys", "pydispatch partition(scheme='kafka') (1M keys)", 1_000_000)
