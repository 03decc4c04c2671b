"""MappedColumn: a from_arrays column in a file, read by rows without copying it whole."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from pydispatch.plan._sources import MappedColumn, arrays_split


def test_rows_read_back_exactly_and_it_pickles_as_its_path(tmp_path: Path) -> None:
    stamps = np.arange(1_000).astype("datetime64[s]")
    path = tmp_path / "0-0"
    stamps.tofile(path)
    column = pickle.loads(pickle.dumps(MappedColumn(str(path), stamps.dtype.str, len(stamps))))
    assert len(pickle.dumps(column)) < 200
    assert len(column) == 1_000
    np.testing.assert_array_equal(column[10:20], stamps[10:20])
    np.testing.assert_array_equal(column.read(), stamps)
    assert type(column[0:5]) is np.ndarray  # a view of the mapping, not an np.memmap
    assert column[7:7].shape == (0,)
    assert column[5:2].dtype == stamps.dtype
    np.testing.assert_array_equal(column[::7], stamps[::7])
    parts = [arrays_split({"t": column}, i, 3)["t"] for i in range(3)]  # type: ignore[dict-item]
    np.testing.assert_array_equal(np.concatenate(parts), stamps)
