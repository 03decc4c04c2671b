"""Key columns in the form the kernels take, and the checks every public function shares.

Private: ``pydispatch.partition`` is the public face of all this.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt

from .. import _core

__all__ = [
    "MAX_PARTITIONS",
    "Array",
    "Column",
    "Keys",
    "as_array",
    "check_count",
    "check_n",
    "check_seed",
    "hash_column",
    "key_column",
    "key_columns",
    "native",
]

Array: TypeAlias = npt.NDArray[Any]
Keys: TypeAlias = "npt.NDArray[Any] | tuple[npt.NDArray[Any], ...]"

#: The largest number of partitions any function accepts (ids are int32; offsets take 8n bytes).
MAX_PARTITIONS = 1 << 24
_UINT64_MAX = (1 << 64) - 1


def check_count(value: object, what: str, func: str, *, low: int, high: int) -> int:
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{func}: {what} must be an integer, not bool")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{func}: {what} must be an integer, not {type(value).__name__}") from None
    if not low <= number <= high:
        raise ValueError(f"{func}: {what} must be in [{low}, {high}], got {number}")
    return number


def check_n(n: object, func: str) -> int:
    return check_count(n, "n (the number of partitions)", func, low=1, high=MAX_PARTITIONS)


def check_seed(seed: object, func: str) -> int:
    return check_count(seed, "seed", func, low=0, high=_UINT64_MAX)


def as_array(keys: object, what: str, func: str) -> Array:
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


def native(keys: Array) -> Array:
    """The same values, C-contiguous and in native byte order; copies only if they are not."""
    if not keys.dtype.isnative:
        keys = keys.astype(keys.dtype.newbyteorder("="))
    return np.ascontiguousarray(keys)


class Column(NamedTuple):
    """One key column in the form a kernel takes: kind, flat data, items' width."""

    kind: str  # "int" | "bool" | "float" | "bytes" | "unicode" | "object"
    data: Array
    width: int
    rows: int
    source: np.dtype[Any]  # the caller's dtype, before any view or cast


def key_column(keys: object, func: str, what: str = "keys") -> Column:
    array = as_array(keys, what, func)
    dtype = array.dtype
    rows = array.shape[0]
    if dtype.kind in "iu":
        return Column("int", native(array), 1, rows, dtype)
    if dtype.kind == "b":
        return Column("bool", native(array).view(np.uint8), 1, rows, dtype)
    if dtype.kind == "f":
        if dtype.itemsize == 2:
            return Column("float", array.astype(np.float32), 1, rows, dtype)
        if dtype.itemsize in (4, 8):
            return Column("float", native(array), 1, rows, dtype)
    if dtype.kind in "Mm":
        # datetime64 / timedelta64 hash by their int64 count in their own unit; NaT is one value.
        return Column("int", native(array).view(np.int64), 1, rows, dtype)
    if dtype.kind == "S" and dtype.itemsize > 0:
        return Column("bytes", native(array).view(np.uint8), dtype.itemsize, rows, dtype)
    if dtype.kind == "U" and dtype.itemsize > 0:
        return Column("unicode", native(array).view(np.uint32), dtype.itemsize // 4, rows, dtype)
    if dtype.kind == "O":
        return Column("object", np.ascontiguousarray(array), 1, rows, dtype)
    raise TypeError(
        f"{func}: unsupported {what} dtype {dtype}; supported: integers, bool, float16/32/64, "
        "datetime64, timedelta64, fixed-width bytes (S), unicode (U), and object arrays of "
        "str/bytes/int/float"
    )


def key_columns(keys: Keys, func: str) -> list[Column]:
    if isinstance(keys, tuple):
        if not keys:
            raise ValueError(f"{func}: an empty tuple of key columns")
        columns = [key_column(k, func, f"key column {i}") for i, k in enumerate(keys)]
        lengths = {c.rows for c in columns}
        if len(lengths) > 1:
            raise ValueError(f"{func}: key columns differ in length: {[c.rows for c in columns]}")
        return columns
    return [key_column(keys, func)]


def hash_column(column: Column, seed: int) -> npt.NDArray[np.uint64]:
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
