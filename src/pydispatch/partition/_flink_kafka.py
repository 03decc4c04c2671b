"""Key assignment as Apache Flink and Kafka do it (the 'flink' and 'kafka' schemes).

Private: the public names are re-exported by ``pydispatch.partition``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .. import _core
from ._keys import Array, Keys, check_count, key_column

__all__ = [
    "FLINK_MAX_PARALLELISM",
    "check_max_parallelism",
    "default_max_parallelism",
    "java_hashes",
    "key_group_range",
    "key_groups",
    "partition_flink",
    "partition_kafka",
]

# ---------------------------------------------------------------------------------------------
# Flink

#: Flink's upper bound on max parallelism (KeyGroupRangeAssignment.UPPER_BOUND_MAX_PARALLELISM).
FLINK_MAX_PARALLELISM = 1 << 15
_FLINK_DEFAULT_LOWER_MAX_PARALLELISM = 128


def default_max_parallelism(parallelism: int) -> int:
    """Flink's default max parallelism for an operator of this parallelism:
    ``min(max(round_up_to_power_of_two(p + p // 2), 128), 32768)``."""
    p = check_count(
        parallelism, "parallelism", "default_max_parallelism", low=1, high=FLINK_MAX_PARALLELISM
    )
    target = p + p // 2
    power = 1 << (target - 1).bit_length()
    return min(max(power, _FLINK_DEFAULT_LOWER_MAX_PARALLELISM), FLINK_MAX_PARALLELISM)


def java_hashes(keys: object, func: str) -> npt.NDArray[np.int32]:
    if isinstance(keys, tuple):
        raise TypeError(f"{func}: the flink scheme takes one key column, not a tuple")
    column = key_column(keys, func)
    out = np.empty(column.rows, dtype=np.int32)
    source = column.source
    if source.kind == "i":
        _core.java_hash_integral(column.data, out)
    elif source.kind == "b":
        _core.java_hash_bool(column.data, out)
    elif source.kind == "f" and source.itemsize in (4, 8):
        _core.java_hash_real(column.data, out)
    elif column.kind == "unicode":
        _core.java_hash_fixed_unicode(column.data, column.width, out)
    elif column.kind == "object":
        _core.java_hash_objects(column.data, out)
    else:
        raise TypeError(
            f"{func}: dtype {source} has no Java counterpart with a stable hashCode; "
            "the flink scheme takes int8/16/32 (Byte/Short/Integer), int64 (Long), bool, "
            "float32/64 (Float/Double), str (U or object)"
        )
    return out


def check_max_parallelism(max_parallelism: object, func: str) -> int:
    return check_count(max_parallelism, "max_parallelism", func, low=1, high=FLINK_MAX_PARALLELISM)


def key_groups(keys: Array, max_parallelism: int) -> npt.NDArray[np.int32]:
    """Flink's key group of each key: ``murmurHash(key.hashCode()) % max_parallelism``."""
    mp = check_max_parallelism(max_parallelism, "key_groups")
    hashes = java_hashes(keys, "key_groups")
    out = np.empty(hashes.shape[0], dtype=np.int32)
    _core.flink_key_groups(hashes, mp, out)
    return out


def key_group_range(operator_index: int, parallelism: int, max_parallelism: int) -> range:
    """The key groups operator ``operator_index`` of ``parallelism`` owns, as a ``range``.

    Flink's ``computeKeyGroupRangeForOperatorIndex``; Flink's end is inclusive, a range's stop
    is one past it.
    """
    func = "key_group_range"
    mp = check_max_parallelism(max_parallelism, func)
    p = check_count(parallelism, "parallelism", func, low=1, high=mp)
    i = check_count(operator_index, "operator_index", func, low=0, high=p - 1)
    start = (i * mp + p - 1) // p
    end = ((i + 1) * mp - 1) // p
    return range(start, end + 1)


def partition_flink(keys: Keys, n: int, max_parallelism: int | None) -> npt.NDArray[np.int32]:
    mp = (
        default_max_parallelism(n)
        if max_parallelism is None
        else check_max_parallelism(max_parallelism, "partition")
    )
    if n > mp:
        raise ValueError(
            f"partition: n ({n}) exceeds max_parallelism ({mp}); Flink requires "
            "parallelism <= max parallelism"
        )
    groups = key_groups(keys, mp)  # type: ignore[arg-type]
    out = np.empty(groups.shape[0], dtype=np.int32)
    _core.flink_operator_indexes(groups, n, mp, out)
    return out


# ---------------------------------------------------------------------------------------------
# Kafka


def partition_kafka(keys: Keys, n: int) -> npt.NDArray[np.int32]:
    func = "partition"
    if isinstance(keys, tuple):
        raise TypeError(f"{func}: the kafka scheme takes one key column, not a tuple")
    column = key_column(keys, func)
    murmur = np.empty(column.rows, dtype=np.int32)
    dtype = column.source
    if dtype.kind == "i" and dtype.itemsize in (2, 4, 8):
        _core.kafka_murmur2_integral(column.data, murmur)
    elif column.kind == "bytes":
        _core.kafka_murmur2_fixed_bytes(column.data, column.width, murmur)
    elif column.kind == "unicode":
        _core.kafka_murmur2_fixed_unicode(column.data, column.width, murmur)
    elif column.kind == "object":
        _core.kafka_murmur2_objects(column.data, murmur)
    else:
        raise TypeError(
            f"{func}: dtype {dtype} has no Kafka serializer here; the kafka scheme takes int16/"
            "int32/int64 (Short/Integer/LongSerializer), S or bytes, U or str (UTF-8)"
        )
    out = np.empty(column.rows, dtype=np.int32)
    _core.kafka_partitions(murmur, n, out)
    return out
