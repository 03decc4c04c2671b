"""Split record batches (numpy arrays) across parallel subtasks.

Every function validates and coerces its input here, then calls a kernel of ``pydispatch._core``
that runs without the GIL in O(rows). A C-contiguous, native-byte-order input is never copied;
any other layout is copied once into one.

Schemes of :func:`partition`:

``"hash"``
    pydispatch's own 64-bit hash (:func:`hash_keys`) reduced into ``[0, n)``. Equal values land
    together whatever their dtype: ``int8(3)``, ``uint64(3)``, ``3.0`` and the Python int ``3``.
``"flink"``
    Apache Flink's keyed streams: Java ``hashCode()`` -> ``MathUtils.murmurHash`` -> key group
    (``% max_parallelism``) -> operator index (``key_group * n // max_parallelism``).
``"kafka"``
    Kafka's default partitioner for keyed records: ``murmur2`` of the serialised key, made
    positive, ``% n``.

Broadcast is a convention, not a partition id: a broadcast edge hands the whole batch to every
consumer (:func:`broadcast` returns ``n`` read-only views of it, no copy). ``BROADCAST`` (-1) is
the marker a plan uses for such an edge; :func:`scatter` and :func:`split` reject it like any
other id out of range.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeAlias, overload

import numpy as np
import numpy.typing as npt

from . import _core

__all__ = [
    "BROADCAST",
    "FLINK_MAX_PARALLELISM",
    "MAX_PARTITIONS",
    "TwoChoices",
    "broadcast",
    "default_max_parallelism",
    "hash_keys",
    "key_group_range",
    "key_groups",
    "partition",
    "range_boundaries",
    "range_partition",
    "rescale",
    "rescale_targets",
    "round_robin",
    "scatter",
    "split",
    "two_choices",
]

_Array: TypeAlias = npt.NDArray[Any]
_Keys: TypeAlias = "npt.NDArray[Any] | tuple[npt.NDArray[Any], ...]"

#: Marks a broadcast edge: every record goes to every partition (see :func:`broadcast`).
BROADCAST = -1
#: The largest number of partitions any function accepts (ids are int32; offsets take 8n bytes).
MAX_PARTITIONS = 1 << 24
#: Flink's upper bound on max parallelism (KeyGroupRangeAssignment.UPPER_BOUND_MAX_PARALLELISM).
FLINK_MAX_PARALLELISM = 1 << 15
_FLINK_DEFAULT_LOWER_MAX_PARALLELISM = 128
_UINT64_MAX = (1 << 64) - 1
# two_choices treats no key as hot before it has seen this many rows per partition: before
# that, frequencies in the sketch say little.
_TWO_CHOICES_WARMUP_PER_PARTITION = 16


class TwoChoices(NamedTuple):
    """The result of :func:`two_choices`."""

    ids: npt.NDArray[np.int32]
    loads: npt.NDArray[np.int64]


# ---------------------------------------------------------------------------------------------
# Validation helpers


def _check_count(value: object, what: str, func: str, *, low: int, high: int) -> int:
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{func}: {what} must be an integer, not bool")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{func}: {what} must be an integer, not {type(value).__name__}") from None
    if not low <= number <= high:
        raise ValueError(f"{func}: {what} must be in [{low}, {high}], got {number}")
    return number


def _check_n(n: object, func: str) -> int:
    return _check_count(n, "n (the number of partitions)", func, low=1, high=MAX_PARTITIONS)


def _check_seed(seed: object, func: str) -> int:
    return _check_count(seed, "seed", func, low=0, high=_UINT64_MAX)


def _as_array(keys: object, what: str, func: str) -> _Array:
    if not isinstance(keys, np.ndarray):
        raise TypeError(
            f"{func}: {what} must be a numpy array, not {type(keys).__name__} "
            "(wrap lists with numpy.asarray, choosing the dtype you mean)"
        )
    if keys.ndim != 1:
        raise ValueError(
            f"{func}: {what} must be 1-D, got shape {keys.shape}"
            + ("; pass several key columns as a tuple of arrays" if keys.ndim == 2 else "")
        )
    return keys


def _native(keys: _Array) -> _Array:
    """The same values, C-contiguous and in native byte order; copies only if they are not."""
    if not keys.dtype.isnative:
        keys = keys.astype(keys.dtype.newbyteorder("="))
    return np.ascontiguousarray(keys)


class _Column(NamedTuple):
    """One key column in the form a kernel takes: kind, flat data, items' width."""

    kind: str  # "int" | "bool" | "float" | "bytes" | "unicode" | "object"
    data: _Array
    width: int
    rows: int
    source: np.dtype[Any]  # the caller's dtype, before any view or cast


def _column(keys: object, func: str, what: str = "keys") -> _Column:
    array = _as_array(keys, what, func)
    dtype = array.dtype
    rows = array.shape[0]
    if dtype.kind in "iu":
        return _Column("int", _native(array), 1, rows, dtype)
    if dtype.kind == "b":
        return _Column("bool", _native(array).view(np.uint8), 1, rows, dtype)
    if dtype.kind == "f":
        if dtype.itemsize == 2:
            return _Column("float", array.astype(np.float32), 1, rows, dtype)
        if dtype.itemsize in (4, 8):
            return _Column("float", _native(array), 1, rows, dtype)
    if dtype.kind in "Mm":
        # datetime64 / timedelta64 hash by their int64 count in their own unit; NaT is one value.
        return _Column("int", _native(array).view(np.int64), 1, rows, dtype)
    if dtype.kind == "S" and dtype.itemsize > 0:
        return _Column("bytes", _native(array).view(np.uint8), dtype.itemsize, rows, dtype)
    if dtype.kind == "U" and dtype.itemsize > 0:
        return _Column("unicode", _native(array).view(np.uint32), dtype.itemsize // 4, rows, dtype)
    if dtype.kind == "O":
        return _Column("object", np.ascontiguousarray(array), 1, rows, dtype)
    raise TypeError(
        f"{func}: unsupported {what} dtype {dtype}; supported: integers, bool, float16/32/64, "
        "datetime64, timedelta64, fixed-width bytes (S), unicode (U), and object arrays of "
        "str/bytes/int/float"
    )


# ---------------------------------------------------------------------------------------------
# The hash scheme


def _hash_column(column: _Column, seed: int) -> npt.NDArray[np.uint64]:
    out = np.empty(column.rows, dtype=np.uint64)
    if column.kind in ("int", "bool"):
        _core.hash_integral(column.data, seed, out)
    elif column.kind == "float":
        _core.hash_real(column.data, seed, out)
    elif column.kind == "bytes":
        _core.hash_fixed_bytes(column.data, column.width, seed, out)
    elif column.kind == "unicode":
        _core.hash_fixed_unicode(column.data, column.width, seed, out)
    else:
        _core.hash_objects(column.data, seed, out)
    return out


def _columns(keys: _Keys, func: str) -> list[_Column]:
    if isinstance(keys, tuple):
        if not keys:
            raise ValueError(f"{func}: an empty tuple of key columns")
        columns = [_column(k, func, f"key column {i}") for i, k in enumerate(keys)]
        lengths = {c.rows for c in columns}
        if len(lengths) > 1:
            raise ValueError(f"{func}: key columns differ in length: {[c.rows for c in columns]}")
        return columns
    return [_column(keys, func)]


def hash_keys(keys: _Keys, seed: int = 0) -> npt.NDArray[np.uint64]:
    """64-bit hashes of ``keys``: one array, or a tuple of equal-length arrays (one hash a row).

    Equal values hash alike whatever the integer width or signedness; a float equal to an
    integer hashes as that integer (so ``0.0`` and ``-0.0`` agree); every NaN hashes alike;
    ``str`` hashes its UTF-8 bytes and a numpy ``U`` item the same as the equal ``str``; ``S``
    items like the equal ``bytes`` (trailing NULs dropped, as numpy reads them). ``seed`` (a
    uint64) picks an independent hash function.
    """
    seed = _check_seed(seed, "hash_keys")
    columns = _columns(keys, "hash_keys")
    hashes = _hash_column(columns[0], seed)
    for column in columns[1:]:
        _core.combine_hashes(hashes, _hash_column(column, seed))
    return hashes


def _partition_hash(keys: _Keys, n: int, seed: int) -> npt.NDArray[np.int32]:
    columns = _columns(keys, "partition")
    out = np.empty(columns[0].rows, dtype=np.int32)
    if len(columns) == 1 and columns[0].kind in ("int", "bool"):
        _core.hash_partition_integral(columns[0].data, seed, n, out)
    elif len(columns) == 1 and columns[0].kind == "float":
        _core.hash_partition_real(columns[0].data, seed, n, out)
    else:
        _core.reduce_hashes(hash_keys(keys, seed), n, out)
    return out


# ---------------------------------------------------------------------------------------------
# Flink


def default_max_parallelism(parallelism: int) -> int:
    """Flink's default max parallelism for an operator of this parallelism:
    ``min(max(round_up_to_power_of_two(p + p // 2), 128), 32768)``."""
    p = _check_count(
        parallelism, "parallelism", "default_max_parallelism", low=1, high=FLINK_MAX_PARALLELISM
    )
    target = p + p // 2
    power = 1 << (target - 1).bit_length()
    return min(max(power, _FLINK_DEFAULT_LOWER_MAX_PARALLELISM), FLINK_MAX_PARALLELISM)


def _java_hashes(keys: object, func: str) -> npt.NDArray[np.int32]:
    if isinstance(keys, tuple):
        raise TypeError(f"{func}: the flink scheme takes one key column, not a tuple")
    column = _column(keys, func)
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


def _check_max_parallelism(max_parallelism: object, func: str) -> int:
    return _check_count(max_parallelism, "max_parallelism", func, low=1, high=FLINK_MAX_PARALLELISM)


def key_groups(keys: _Array, max_parallelism: int) -> npt.NDArray[np.int32]:
    """Flink's key group of each key: ``murmurHash(key.hashCode()) % max_parallelism``."""
    mp = _check_max_parallelism(max_parallelism, "key_groups")
    hashes = _java_hashes(keys, "key_groups")
    out = np.empty(hashes.shape[0], dtype=np.int32)
    _core.flink_key_groups(hashes, mp, out)
    return out


def key_group_range(operator_index: int, parallelism: int, max_parallelism: int) -> range:
    """The key groups operator ``operator_index`` of ``parallelism`` owns, as a ``range``.

    Flink's ``computeKeyGroupRangeForOperatorIndex``; Flink's end is inclusive, a range's stop
    is one past it.
    """
    func = "key_group_range"
    mp = _check_max_parallelism(max_parallelism, func)
    p = _check_count(parallelism, "parallelism", func, low=1, high=mp)
    i = _check_count(operator_index, "operator_index", func, low=0, high=p - 1)
    start = (i * mp + p - 1) // p
    end = ((i + 1) * mp - 1) // p
    return range(start, end + 1)


def _partition_flink(keys: _Keys, n: int, max_parallelism: int | None) -> npt.NDArray[np.int32]:
    mp = (
        default_max_parallelism(n)
        if max_parallelism is None
        else _check_max_parallelism(max_parallelism, "partition")
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


def _partition_kafka(keys: _Keys, n: int) -> npt.NDArray[np.int32]:
    func = "partition"
    if isinstance(keys, tuple):
        raise TypeError(f"{func}: the kafka scheme takes one key column, not a tuple")
    column = _column(keys, func)
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


# ---------------------------------------------------------------------------------------------
# The entry point


def partition(
    keys: _Keys,
    n: int,
    scheme: str = "hash",
    *,
    seed: int = 0,
    max_parallelism: int | None = None,
) -> npt.NDArray[np.int32]:
    """The partition, in ``[0, n)``, of each key (int32, one per row).

    ``keys`` is one array or (``"hash"`` only) a tuple of equal-length key columns. ``seed``
    applies to ``"hash"``; ``max_parallelism`` to ``"flink"`` (default: Flink's rule for ``n``).
    """
    n = _check_n(n, "partition")
    if scheme == "hash":
        return _partition_hash(keys, n, _check_seed(seed, "partition"))
    if seed != 0:
        raise ValueError(f"partition: seed applies to the 'hash' scheme only, not {scheme!r}")
    if scheme == "flink":
        return _partition_flink(keys, n, max_parallelism)
    if max_parallelism is not None:
        raise ValueError("partition: max_parallelism applies to the 'flink' scheme only")
    if scheme == "kafka":
        return _partition_kafka(keys, n)
    raise ValueError(f"partition: unknown scheme {scheme!r}; use 'hash', 'flink' or 'kafka'")


# ---------------------------------------------------------------------------------------------
# Ranges

_ORDERED_KINDS = "iuf"


def range_boundaries(sample: _Array, n: int) -> _Array:
    """``n - 1`` boundaries that cut ``sample`` into ``n`` ranges of equal weight.

    Boundary ``k`` is the sample's element of rank ``k * m // n`` (``m`` non-NaN elements), so
    range ``k`` receives the values ``boundaries[k-1] <= v < boundaries[k]``. Ties: all copies of
    a value go to the same range (the one starting at it), so a heavily repeated value makes its
    range heavier and may leave others empty; NaN is left out of the sample and, in
    :func:`range_partition`, goes to the last range.
    """
    func = "range_boundaries"
    n = _check_n(n, func)
    sample = _as_array(sample, "sample", func)
    if sample.dtype.kind not in _ORDERED_KINDS + "SUMm":
        raise TypeError(f"{func}: sample dtype {sample.dtype} has no natural order")
    if sample.dtype.kind == "f":
        sample = sample[~np.isnan(sample)]
    elif sample.dtype.kind in "Mm":
        sample = sample[~np.isnat(sample)]
    if sample.shape[0] == 0:
        raise ValueError(f"{func}: the sample is empty (or all NaN/NaT)")
    ordered = np.sort(sample, kind="stable")
    ranks = (np.arange(1, n, dtype=np.int64) * ordered.shape[0]) // n
    boundaries: _Array = ordered[ranks]
    return boundaries


def range_partition(keys: _Array, boundaries: _Array) -> npt.NDArray[np.int32]:
    """The range of each key: the number of boundaries ``<=`` it (``len(boundaries) + 1``
    ranges). NaN keys go to the last range; boundaries must be sorted and free of NaN."""
    func = "range_partition"
    keys = _as_array(keys, "keys", func)
    boundaries = _as_array(boundaries, "boundaries", func)
    if boundaries.shape[0] + 1 > MAX_PARTITIONS:
        raise ValueError(f"{func}: {boundaries.shape[0]} boundaries exceed MAX_PARTITIONS")
    for name, array in (("keys", keys), ("boundaries", boundaries)):
        if array.dtype.kind not in _ORDERED_KINDS + "SUMm":
            raise TypeError(f"{func}: {name} dtype {array.dtype} has no natural order")
    if (keys.dtype.kind in "SU") != (boundaries.dtype.kind in "SU") or (
        (keys.dtype.kind in "Mm" or boundaries.dtype.kind in "Mm")
        and keys.dtype != boundaries.dtype
    ):
        raise TypeError(
            f"{func}: keys ({keys.dtype}) and boundaries ({boundaries.dtype}) do not compare"
        )
    if boundaries.dtype.kind == "f" and np.isnan(boundaries).any():
        raise ValueError(f"{func}: boundaries contain NaN")
    if boundaries.shape[0] > 1 and not np.all(boundaries[1:] >= boundaries[:-1]):
        first = int(np.argmin(boundaries[1:] >= boundaries[:-1]))
        raise ValueError(
            f"{func}: boundaries must be sorted; boundaries[{first + 1}] < boundaries[{first}]"
        )
    out = np.empty(keys.shape[0], dtype=np.int32)
    if keys.dtype.kind in _ORDERED_KINDS and boundaries.dtype.kind in _ORDERED_KINDS:
        common = np.result_type(keys.dtype, boundaries.dtype)
        if common.kind == "f" and common.itemsize < 4:
            common = np.dtype(np.float32)
        _core.range_partition_kernel(
            _native(keys.astype(common, copy=False)),
            _native(boundaries.astype(common, copy=False)),
            out,
        )
    elif keys.dtype.kind in "Mm":
        _core.range_partition_kernel(
            _native(keys).view(np.int64), _native(boundaries).view(np.int64), out
        )
        out[np.isnat(keys)] = boundaries.shape[0]
    else:
        out[:] = np.searchsorted(boundaries, keys, side="right")
    return out


# ---------------------------------------------------------------------------------------------
# Positional schemes


def round_robin(count: int, n: int, start: int = 0) -> npt.NDArray[np.int32]:
    """``count`` ids cycling over ``[0, n)``, the first being ``start % n`` (Flink's rebalance
    with a given starting channel; pass the running record count to continue a stream)."""
    func = "round_robin"
    count = _check_count(count, "count", func, low=0, high=1 << 62)
    n = _check_n(n, func)
    start = _check_count(start, "start", func, low=0, high=1 << 62)
    out = np.empty(count, dtype=np.int32)
    _core.cyclic_ids(start, 0, n, out)
    return out


def rescale_targets(upstream_index: int, upstream_parallelism: int, n: int) -> range:
    """The downstream subtasks that upstream subtask ``upstream_index`` feeds on a rescale edge.

    Flink's pointwise pattern: with ``p`` upstream and ``n`` downstream subtasks, if ``p <= n``
    each upstream subtask feeds a contiguous run of about ``n / p`` downstream ones; if ``p > n``
    each feeds exactly one, about ``p / n`` upstream subtasks sharing it.
    """
    func = "rescale"
    n = _check_n(n, func)
    p = _check_count(upstream_parallelism, "upstream_parallelism", func, low=1, high=MAX_PARTITIONS)
    i = _check_count(upstream_index, "upstream_index", func, low=0, high=p - 1)
    if p <= n:
        return range((i * n + p - 1) // p, ((i + 1) * n + p - 1) // p)
    # Target t collects upstream subtasks [t * p // n, (t + 1) * p // n): invert that.
    target = ((i + 1) * n - 1) // p
    return range(target, target + 1)


def rescale(
    count: int, upstream_index: int, upstream_parallelism: int, n: int, start: int = 0
) -> npt.NDArray[np.int32]:
    """``count`` ids for records of upstream subtask ``upstream_index`` on a rescale edge: round
    robin over :func:`rescale_targets`, the first being its first target (Flink's
    ``RescalePartitioner``); ``start`` continues a stream."""
    targets = rescale_targets(upstream_index, upstream_parallelism, n)
    count = _check_count(count, "count", "rescale", low=0, high=1 << 62)
    start = _check_count(start, "start", "rescale", low=0, high=1 << 62)
    out = np.empty(count, dtype=np.int32)
    _core.cyclic_ids(start, targets.start, len(targets), out)
    return out


def two_choices(
    keys: _Keys, n: int, seed: int = 0, *, hot_fraction: float | None = None
) -> TwoChoices:
    """Skew-aware assignment: partial key grouping with hot keys spread.

    Each row goes to the less loaded of its key's two hashed candidates, so a key lives on at
    most two partitions. A key whose estimated share of the rows so far exceeds
    ``hot_fraction`` (default ``1 / (5 n)``, as W-Choices uses) is hot: its rows go to the least
    loaded partition of all. Frequencies come from a count-min sketch, and no key is hot during
    the first ``16 n`` rows. Deterministic for a given input order. Returns the ids and the
    resulting rows per partition.
    """
    func = "two_choices"
    n = _check_n(n, func)
    fraction = 1.0 / (5.0 * n) if hot_fraction is None else float(hot_fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{func}: hot_fraction must be in (0, 1], got {hot_fraction}")
    hashes = hash_keys(keys, _check_seed(seed, func))
    ids = np.empty(hashes.shape[0], dtype=np.int32)
    loads = np.zeros(n, dtype=np.int64)
    _core.two_choices_kernel(hashes, n, fraction, _TWO_CHOICES_WARMUP_PER_PARTITION * n, ids, loads)
    return TwoChoices(ids, loads)


# ---------------------------------------------------------------------------------------------
# Grouping rows by partition


def _as_ids(partition_ids: object, n: int, func: str) -> npt.NDArray[np.int32]:
    ids = _as_array(partition_ids, "partition_ids", func)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{func}: partition_ids must be integers, not {ids.dtype}")
    if ids.dtype != np.int32:
        # Check before narrowing: a cast would wrap 2**32 onto 0, a valid id.
        bad = (ids < 0) | (ids >= n)
        if bad.any():
            where = int(np.argmax(bad))
            raise ValueError(
                f"{func}: partition id {ids[where]} at index {where} is out of range [0, {n})"
            )
        ids = ids.astype(np.int32)
    return _native(ids)


def scatter(
    partition_ids: npt.NDArray[np.integer[Any]], n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A stable counting sort of rows by partition id.

    Returns ``(order, offsets)``: partition ``p``'s rows are ``order[offsets[p]:offsets[p+1]]``
    in input order; ``order`` has one int64 per row and ``offsets`` has ``n + 1`` entries.
    """
    n = _check_n(n, "scatter")
    ids = _as_ids(partition_ids, n, "scatter")
    order = np.empty(ids.shape[0], dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    _core.scatter_ids(ids, n, order, offsets)
    return order, offsets


_WORDS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _gather(column: _Array, order: npt.NDArray[np.int64]) -> _Array:
    """column's rows in ``order`` (row numbers from :func:`scatter`): one new array."""
    if column.dtype.hasobject:
        return np.take(column, order, axis=0)  # references need counting: numpy does it
    source = np.ascontiguousarray(column)
    out = np.empty((order.shape[0], *column.shape[1:]), dtype=column.dtype)
    width = source.dtype.itemsize * (source[0].size if source.shape[0] else 0)
    word = _WORDS.get(width)
    if word is not None:
        _core.gather_words(source.reshape(-1).view(word), order, out.reshape(-1).view(word))
    elif width:
        _core.gather_bytes(
            source.reshape(-1).view(np.uint8), width, order, out.reshape(-1).view(np.uint8)
        )
    return out


@overload
def split(
    columns: Mapping[str, _Array], partition_ids: npt.NDArray[np.integer[Any]], n: int
) -> list[dict[str, _Array]]: ...
@overload
def split(columns: _Array, partition_ids: npt.NDArray[np.integer[Any]], n: int) -> list[_Array]: ...
def split(
    columns: Mapping[str, _Array] | _Array, partition_ids: npt.NDArray[np.integer[Any]], n: int
) -> list[dict[str, _Array]] | list[_Array]:
    """Each partition's rows of ``columns`` (a dict of equal-length arrays, or one array).

    Every column is gathered once into partition order; the parts are views of that one array.
    Concatenating the parts and applying the inverse of ``scatter``'s order gives the input back.
    """
    func = "split"
    order, offsets = scatter(partition_ids, n)
    bounds = offsets.tolist()
    if isinstance(columns, np.ndarray):
        if columns.ndim == 0 or columns.shape[0] != order.shape[0]:
            raise ValueError(
                f"{func}: the array has {columns.shape[0] if columns.ndim else 0} rows, "
                f"partition_ids has {order.shape[0]}"
            )
        gathered = _gather(columns, order)
        return [gathered[bounds[p] : bounds[p + 1]] for p in range(n)]
    if not isinstance(columns, Mapping):
        raise TypeError(
            f"{func}: columns must be a dict of numpy arrays or one array, "
            f"not {type(columns).__name__}"
        )
    gathered_columns: dict[str, _Array] = {}
    for name, column in columns.items():
        if not isinstance(column, np.ndarray):
            raise TypeError(
                f"{func}: column {name!r} must be a numpy array, not {type(column).__name__}"
            )
        if column.ndim == 0 or column.shape[0] != order.shape[0]:
            raise ValueError(
                f"{func}: column {name!r} has {column.shape[0] if column.ndim else 0} rows, "
                f"partition_ids has {order.shape[0]}"
            )
        gathered_columns[name] = _gather(column, order)
    return [
        {name: g[bounds[p] : bounds[p + 1]] for name, g in gathered_columns.items()}
        for p in range(n)
    ]


def broadcast(columns: Mapping[str, _Array], n: int) -> list[dict[str, _Array]]:
    """The whole batch for each of ``n`` consumers: read-only views, no copy."""
    n = _check_n(n, "broadcast")
    views: dict[str, _Array] = {}
    for name, column in columns.items():
        if not isinstance(column, np.ndarray):
            raise TypeError(
                f"broadcast: column {name!r} must be a numpy array, not {type(column).__name__}"
            )
        view = column.view()
        view.flags.writeable = False
        views[name] = view
    return [dict(views) for _ in range(n)]
