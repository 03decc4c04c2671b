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

from collections.abc import Mapping
from typing import Any, NamedTuple, overload

import numpy as np
import numpy.typing as npt

from .. import _core
from ._flink_kafka import (
    FLINK_MAX_PARALLELISM,
    default_max_parallelism,
    key_group_range,
    key_groups,
    partition_flink,
    partition_kafka,
)
from ._keys import (
    MAX_PARTITIONS,
    Array,
    Keys,
    as_array,
    check_count,
    check_n,
    check_seed,
    hash_column,
    key_columns,
    native,
)

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


#: Marks a broadcast edge: every record goes to every partition (see :func:`broadcast`).
BROADCAST = -1
# two_choices treats no key as hot before it has seen this many rows per partition: before
# that, frequencies in the sketch say little.
_TWO_CHOICES_WARMUP_PER_PARTITION = 16


class TwoChoices(NamedTuple):
    """The result of :func:`two_choices`."""

    ids: npt.NDArray[np.int32]
    loads: npt.NDArray[np.int64]


# ---------------------------------------------------------------------------------------------
# The hash scheme


def hash_keys(keys: Keys, seed: int = 0) -> npt.NDArray[np.uint64]:
    """64-bit hashes of ``keys``: one array, or a tuple of equal-length arrays (one hash a row).

    Equal values hash alike whatever the integer width or signedness; a float equal to an
    integer hashes as that integer (so ``0.0`` and ``-0.0`` agree); every NaN hashes alike;
    ``str`` hashes its UTF-8 bytes and a numpy ``U`` item the same as the equal ``str``; ``S``
    items like the equal ``bytes`` (trailing NULs dropped, as numpy reads them). ``seed`` (a
    uint64) picks an independent hash function.
    """
    seed = check_seed(seed, "hash_keys")
    columns = key_columns(keys, "hash_keys")
    hashes = hash_column(columns[0], seed)
    for column in columns[1:]:
        _core.combine_hashes(hashes, hash_column(column, seed))
    return hashes


def _partition_hash(keys: Keys, n: int, seed: int) -> npt.NDArray[np.int32]:
    columns = key_columns(keys, "partition")
    out = np.empty(columns[0].rows, dtype=np.int32)
    if len(columns) == 1 and columns[0].kind in ("int", "bool"):
        _core.hash_partition_integral(columns[0].data, seed, n, out)
    elif len(columns) == 1 and columns[0].kind == "float":
        _core.hash_partition_real(columns[0].data, seed, n, out)
    else:
        _core.reduce_hashes(hash_keys(keys, seed), n, out)
    return out


# ---------------------------------------------------------------------------------------------
# The entry point


def partition(
    keys: Keys,
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
    n = check_n(n, "partition")
    if scheme == "hash":
        return _partition_hash(keys, n, check_seed(seed, "partition"))
    if seed != 0:
        raise ValueError(f"partition: seed applies to the 'hash' scheme only, not {scheme!r}")
    if scheme == "flink":
        return partition_flink(keys, n, max_parallelism)
    if max_parallelism is not None:
        raise ValueError("partition: max_parallelism applies to the 'flink' scheme only")
    if scheme == "kafka":
        return partition_kafka(keys, n)
    raise ValueError(f"partition: unknown scheme {scheme!r}; use 'hash', 'flink' or 'kafka'")


# ---------------------------------------------------------------------------------------------
# Ranges

_ORDERED_KINDS = "iuf"


def range_boundaries(sample: Array, n: int) -> Array:
    """``n - 1`` boundaries that cut ``sample`` into ``n`` ranges of equal weight.

    Boundary ``k`` is the sample's element of rank ``k * m // n`` (``m`` non-NaN elements), so
    range ``k`` receives the values ``boundaries[k-1] <= v < boundaries[k]``. Ties: all copies of
    a value go to the same range (the one starting at it), so a heavily repeated value makes its
    range heavier and may leave others empty; NaN is left out of the sample and, in
    :func:`range_partition`, goes to the last range.
    """
    func = "range_boundaries"
    n = check_n(n, func)
    sample = as_array(sample, "sample", func)
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
    boundaries: Array = ordered[ranks]
    return boundaries


def range_partition(keys: Array, boundaries: Array) -> npt.NDArray[np.int32]:
    """The range of each key: the number of boundaries ``<=`` it (``len(boundaries) + 1``
    ranges). NaN keys go to the last range; boundaries must be sorted and free of NaN.

    Numeric keys and boundaries compare in their common numpy type (the keys are copied once
    if theirs differs); strings and datetimes compare with numpy's own ordering.
    """
    func = "range_partition"
    keys = as_array(keys, "keys", func)
    boundaries = as_array(boundaries, "boundaries", func)
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
            native(keys.astype(common, copy=False)),
            native(boundaries.astype(common, copy=False)),
            out,
        )
    elif keys.dtype.kind in "Mm":
        _core.range_partition_kernel(
            native(keys).view(np.int64), native(boundaries).view(np.int64), out
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
    count = check_count(count, "count", func, low=0, high=1 << 62)
    n = check_n(n, func)
    start = check_count(start, "start", func, low=0, high=1 << 62)
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
    n = check_n(n, func)
    p = check_count(upstream_parallelism, "upstream_parallelism", func, low=1, high=MAX_PARTITIONS)
    i = check_count(upstream_index, "upstream_index", func, low=0, high=p - 1)
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
    count = check_count(count, "count", "rescale", low=0, high=1 << 62)
    start = check_count(start, "start", "rescale", low=0, high=1 << 62)
    out = np.empty(count, dtype=np.int32)
    _core.cyclic_ids(start, targets.start, len(targets), out)
    return out


def two_choices(
    keys: Keys, n: int, seed: int = 0, *, hot_fraction: float | None = None
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
    n = check_n(n, func)
    fraction = 1.0 / (5.0 * n) if hot_fraction is None else float(hot_fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{func}: hot_fraction must be in (0, 1], got {hot_fraction}")
    hashes = hash_keys(keys, check_seed(seed, func))
    ids = np.empty(hashes.shape[0], dtype=np.int32)
    loads = np.zeros(n, dtype=np.int64)
    _core.two_choices_kernel(hashes, n, fraction, _TWO_CHOICES_WARMUP_PER_PARTITION * n, ids, loads)
    return TwoChoices(ids, loads)


# ---------------------------------------------------------------------------------------------
# Grouping rows by partition


def _as_ids(partition_ids: object, n: int, func: str) -> npt.NDArray[np.int32]:
    ids = as_array(partition_ids, "partition_ids", func)
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
    return native(ids)


def scatter(
    partition_ids: npt.NDArray[np.integer[Any]], n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A stable counting sort of rows by partition id.

    Returns ``(order, offsets)``: partition ``p``'s rows are ``order[offsets[p]:offsets[p+1]]``
    in input order; ``order`` has one int64 per row and ``offsets`` has ``n + 1`` entries.
    """
    n = check_n(n, "scatter")
    ids = _as_ids(partition_ids, n, "scatter")
    order = np.empty(ids.shape[0], dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    _core.scatter_ids(ids, n, order, offsets)
    return order, offsets


_WORDS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _gather(column: Array, order: npt.NDArray[np.int64]) -> Array:
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
    columns: Mapping[str, Array], partition_ids: npt.NDArray[np.integer[Any]], n: int
) -> list[dict[str, Array]]: ...
@overload
def split(columns: Array, partition_ids: npt.NDArray[np.integer[Any]], n: int) -> list[Array]: ...
def split(
    columns: Mapping[str, Array] | Array, partition_ids: npt.NDArray[np.integer[Any]], n: int
) -> list[dict[str, Array]] | list[Array]:
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
    gathered_columns: dict[str, Array] = {}
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


def broadcast(columns: Mapping[str, Array], n: int) -> list[dict[str, Array]]:
    """The whole batch for each of ``n`` consumers: read-only views, no copy."""
    n = check_n(n, "broadcast")
    views: dict[str, Array] = {}
    for name, column in columns.items():
        if not isinstance(column, np.ndarray):
            raise TypeError(
                f"broadcast: column {name!r} must be a numpy array, not {type(column).__name__}"
            )
        view = column.view()
        view.flags.writeable = False
        views[name] = view
    return [dict(views) for _ in range(n)]
