"""Keyed hash aggregation over numpy columns, on the native kernels of ``src/core/aggregate.pyx``.

:func:`group_aggregate` reduces one batch: ``(keys, values, agg)`` -> the distinct keys and
their aggregates. :class:`KeyedAggregator` is the same fed batch after batch (a running
aggregation), and also takes and gives *partials* (aggregates with their row counts), which is
how a combiner before a shuffle and the aggregation after it share the work (Flink's
local-global aggregation): :meth:`KeyedAggregator.partial` on one side,
``update(keys, values, weights=counts)`` on the other.

Rules, the same whatever the batching:

- aggregations: ``sum``, ``count``, ``min``, ``max``, ``mean``;
- keys: integers, booleans, datetimes, floats (``-0.0`` and ``0.0`` are one key, every NaN is
  one key), and str / bytes / object columns (grouped by Python equality and hash). Results
  come out in first-seen key order, or sorted (``sort=True``: keys that do not order among
  themselves keep first-seen order);
- values: numeric. Sums are int64 for signed integers and booleans, uint64 for unsigned ones
  (wrapping around, as numpy's do) and float64 for floats; ``mean`` is float64; ``min``/``max``
  keep the value column's dtype; ``count`` is int64 and takes no values. A NaN in a group
  makes its sum, mean, min and max NaN (numpy's ``sum``, ``np.minimum``, ``np.maximum``).

Wrong input raises ``TypeError`` (dtypes) or ``ValueError`` (shapes, lengths, names) naming it.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .. import _core

__all__ = ["AGGREGATIONS", "KeyedAggregator", "group_aggregate"]

#: The aggregations the native path computes.
AGGREGATIONS: Final = ("sum", "count", "min", "max", "mean")

_REDUCER = {"sum": _core.AGG_SUM, "mean": _core.AGG_SUM, "min": _core.AGG_MIN, "max": _core.AGG_MAX}
_I64 = npt.NDArray[np.int64]


def _column(array: object, what: str) -> npt.NDArray[Any]:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, not {type(array).__name__}")
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {array.shape}")
    return array


class _Keys:
    """Key columns of one dtype as dense group numbers, and group numbers back as keys."""

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.dtype = dtype
        kind = dtype.kind
        if kind in "OUS":
            self.mode = "object"
            self.index: dict[Any, int] = {}
            return
        if kind in "biuMm" or (kind == "f" and dtype.itemsize <= 8):
            self.mode = "float" if kind == "f" else "view" if dtype.itemsize == 8 else "widen"
            self.table = _core.GroupTable()
            return
        raise TypeError(
            f"cannot group by keys of dtype {dtype}: use integer, float, bool, datetime, "
            "str, bytes or object keys"
        )

    def __len__(self) -> int:
        return len(self.index) if self.mode == "object" else len(self.table)

    def groups(self, keys: npt.NDArray[Any]) -> _I64:
        if keys.dtype != self.dtype:
            raise TypeError(f"key column of dtype {keys.dtype}; this aggregation has {self.dtype}")
        n = keys.shape[0]
        if self.mode == "object":
            index = self.index
            # setdefault evaluates len(index) first: a new key gets the next number.
            return np.fromiter(
                (index.setdefault(k, len(index)) for k in keys.tolist()), np.int64, n
            )
        if self.mode == "float":
            bits = np.empty(n, np.int64)
            _core.normalise_float_keys(np.ascontiguousarray(keys, np.float64), bits)
        elif self.mode == "view":
            bits = np.ascontiguousarray(keys).view(np.int64)
        else:
            bits = np.ascontiguousarray(keys, np.int64)
        out = np.empty(n, np.int64)
        self.table.assign(bits, out)
        return out

    def keys(self) -> npt.NDArray[Any]:
        """Every group's key in group order, in the key column's dtype."""
        if self.mode == "object":
            if self.dtype.kind == "O":
                out = np.empty(len(self.index), dtype=object)
                out[:] = list(self.index)  # item by item: tuples stay tuples
                return out
            return np.array(list(self.index), dtype=self.dtype)
        bits = np.empty(len(self.table), np.int64)
        self.table.keys(bits)
        if self.mode == "float":
            return bits.view(np.float64).astype(self.dtype, copy=False)
        if self.mode == "view":
            return bits.view(self.dtype)
        return bits.astype(self.dtype)


def _accumulator_dtype(agg: str, dtype: np.dtype[Any] | None) -> np.dtype[Any]:
    if agg == "count":
        return np.dtype(np.int64)
    if dtype is None:
        raise ValueError(f"{agg} needs a value column")
    if dtype.kind not in "biuf" or (dtype.kind == "f" and dtype.itemsize > 8):
        raise TypeError(
            f"{agg} aggregates numeric values, not dtype {dtype}; use reduce on records"
        )
    if agg == "mean" or dtype.kind == "f":
        return np.dtype(np.float64)
    return np.dtype(np.uint64 if dtype.kind == "u" else np.int64)


class KeyedAggregator:
    """A running keyed aggregation (see the module docstring): ``update`` it batch after
    batch, then read ``result()``; or hand ``partial()`` to another aggregator's ``update``."""

    def __init__(
        self, agg: str, key_dtype: npt.DTypeLike, value_dtype: npt.DTypeLike | None = None
    ) -> None:
        if agg not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {agg!r}; expected one of {AGGREGATIONS}")
        self.agg = agg
        self._keys = _Keys(np.dtype(key_dtype))
        self.value_dtype = None if value_dtype is None else np.dtype(value_dtype)
        self._acc_dtype = _accumulator_dtype(agg, self.value_dtype)
        self._acc = np.zeros(0, self._acc_dtype)
        self._counts = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self._keys)

    def update(
        self,
        keys: npt.NDArray[Any],
        values: npt.NDArray[Any] | None = None,
        weights: npt.NDArray[Any] | None = None,
    ) -> None:
        """Fold rows in. ``weights``: each row's count when the rows are partials (>= 1)."""
        keys = _column(keys, "keys")
        n = keys.shape[0]
        if self.agg != "count":
            if values is None:
                raise ValueError(f"{self.agg} needs a value column")
            values = _column(values, "values")
            if values.shape[0] != n:
                raise ValueError(f"{n} keys but {values.shape[0]} values")
            if values.dtype != self.value_dtype and not (
                weights is not None and values.dtype == self._acc_dtype
            ):
                raise TypeError(
                    f"value column of dtype {values.dtype}; this aggregation has {self.value_dtype}"
                )
        if weights is not None:
            weights = _column(weights, "weights")
            if weights.shape[0] != n:
                raise ValueError(f"{n} keys but {weights.shape[0]} weights")
            weights = np.ascontiguousarray(weights, np.int64)
        groups = self._keys.groups(keys)
        self._reserve(len(self._keys))
        if self.agg == "count":
            _core.count_groups(groups, weights, self._counts)
            return
        assert values is not None
        widened = np.ascontiguousarray(values, self._acc_dtype)
        _core.reduce_groups(_REDUCER[self.agg], groups, widened, weights, self._acc, self._counts)

    def _reserve(self, groups: int) -> None:
        if groups <= self._counts.shape[0]:
            return
        capacity = max(groups, 2 * self._counts.shape[0], 64)
        acc = np.zeros(capacity, self._acc_dtype)
        acc[: self._acc.shape[0]] = self._acc
        counts = np.zeros(capacity, np.int64)
        counts[: self._counts.shape[0]] = self._counts
        self._acc, self._counts = acc, counts

    def partial(self) -> tuple[npt.NDArray[Any], npt.NDArray[Any], _I64]:
        """``(keys, partial aggregates, row counts)`` in first-seen order: what another
        aggregator of the same kind merges with ``update(keys, values, weights=row counts)``.
        The values have the result's dtype (``count``: the row counts; ``mean``: the sums)."""
        n = len(self._keys)
        counts = self._counts[:n].copy()
        if self.agg == "count":
            return self._keys.keys(), counts, counts
        values = self._acc[:n]
        if self.agg in ("min", "max"):
            assert self.value_dtype is not None
            return self._keys.keys(), values.astype(self.value_dtype), counts
        return self._keys.keys(), values.copy(), counts

    def result(self, *, sort: bool = False) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """``(distinct keys, their aggregates)``: first-seen order, or by key (``sort``)."""
        n = len(self._keys)
        keys = self._keys.keys()
        counts = self._counts[:n]
        if self.agg == "count":
            values: npt.NDArray[Any] = counts.copy()
        elif self.agg == "mean":
            values = self._acc[:n] / counts
        elif self.agg == "sum":
            values = self._acc[:n].copy()
        else:
            assert self.value_dtype is not None
            values = self._acc[:n].astype(self.value_dtype)
        if sort and n > 1:
            try:
                order = np.argsort(keys, kind="stable")
            except TypeError:  # keys that do not order among themselves
                return keys, values
            return keys[order], values[order]
        return keys, values


def group_aggregate(
    keys: npt.NDArray[Any],
    values: npt.NDArray[Any] | None,
    agg: str,
    *,
    sort: bool = False,
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """One batch's ``(distinct keys, aggregates)`` (see the module docstring)."""
    keys = _column(keys, "keys")
    value_dtype = None
    if values is not None and agg != "count":
        value_dtype = _column(values, "values").dtype
    aggregator = KeyedAggregator(agg, keys.dtype, value_dtype)
    aggregator.update(keys, values)
    return aggregator.result(sort=sort)
