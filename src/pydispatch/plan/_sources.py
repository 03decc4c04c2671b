"""What each parallel instance of a source reads: the split rules, shared by every executor.

Private. A source's records are cut into ``parallelism`` contiguous, disjoint splits whose
concatenation in subtask order is the whole input, so a job with parallelism 1 reads the input
in order and a replay of a subtask reads exactly the same records.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..wire import shm_files
from ._files import file_size, open_binary

__all__ = [
    "SPILL_PREFIX",
    "Columns",
    "MappedColumn",
    "SpilledElements",
    "addressable_rows",
    "arrays_split",
    "check_columns",
    "csv_header",
    "csv_records",
    "estimated_records",
    "read_split",
    "row_range",
    "sequence_split",
    "source_iterable",
    "split_records",
    "text_lines",
    "total_rows",
]

Columns = dict[str, npt.NDArray[Any]]


#: How the directories of MappedColumn files are named (``dataflow.handle.spill_arrays`` makes
#: them, the job's master removes them when it ends).
SPILL_PREFIX = shm_files.SPILL_PREFIX


class MappedColumn:
    """A ``from_arrays`` column written to a file (``dataflow.handle`` writes the large ones of
    a job submitted to a dispatcher on this host to shared memory), so that it reaches the
    slices without travelling through the dispatcher and the job's master: it pickles as its
    path, and each slice maps the rows it reads (``np.memmap``, no copy)."""

    def __init__(self, path: str, dtype: str, rows: int) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def __reduce__(self) -> tuple[Any, ...]:
        return (MappedColumn, (self.path, self.dtype.str, self.rows))

    def __getitem__(self, bounds: slice) -> npt.NDArray[Any]:
        start, stop, step = bounds.indices(self.rows)
        if step != 1 or stop <= start:
            return np.zeros(0, self.dtype) if stop <= start else self.read()[bounds]
        itemsize = self.dtype.itemsize
        mapped = np.memmap(
            self.path, self.dtype, "r", offset=start * itemsize, shape=(stop - start,)
        )
        return mapped.view(np.ndarray)

    def read(self) -> npt.NDArray[Any]:
        return self[0 : self.rows]


class SpilledElements:
    """A ``from_collection`` source's elements pickled to files, one per split in subtask
    order (``dataflow.handle`` writes the large ones of a job submitted to a dispatcher on this
    host to shared memory): it pickles as its paths, so the elements reach the slices without
    travelling through the dispatcher and the job's master, and each slice reads only its
    split's file (``part``). Iterating reads the files in order."""

    def __init__(self, paths: tuple[str, ...], count: int) -> None:
        self.paths = paths
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __reduce__(self) -> tuple[Any, ...]:
        return (SpilledElements, (self.paths, self.count))

    def part(self, index: int) -> SpilledElements:
        """Split ``index`` alone (the files hold ``sequence_split`` over as many splits as
        there are files, so its count is known without reading it)."""
        count = len(row_range(self.count, index, len(self.paths)))
        return SpilledElements(self.paths[index : index + 1], count)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.read())

    def read(self) -> list[Any]:
        """The elements of every file, in order."""
        out: list[Any] = []
        for path in self.paths:
            with open(path, "rb") as file:
                out.extend(pickle.load(file))
        return out


def row_range(rows: int, index: int, parallelism: int) -> range:
    """Subtask ``index``'s rows of ``rows``: ``[index * rows // p, (index + 1) * rows // p)``."""
    return range(index * rows // parallelism, (index + 1) * rows // parallelism)


def sequence_split(elements: Sequence[Any], index: int, parallelism: int) -> list[Any]:
    bounds = row_range(len(elements), index, parallelism)
    return list(elements[bounds.start : bounds.stop])


def arrays_split(columns: Mapping[str, npt.NDArray[Any]], index: int, parallelism: int) -> Columns:
    rows = len(next(iter(columns.values())))
    bounds = row_range(rows, index, parallelism)
    return {name: col[bounds.start : bounds.stop] for name, col in columns.items()}


def _byte_split_lines(path: str, index: int, parallelism: int) -> Iterator[bytes]:
    """The lines of ``path`` whose first byte lies in subtask ``index``'s byte range.

    Hadoop's rule for text splits: every line belongs to exactly one split (the one holding its
    first byte), so the splits partition the file's lines whatever the cut points.
    """
    size = file_size(path)
    start = index * size // parallelism
    end = (index + 1) * size // parallelism
    with open_binary(path) as f:
        if start > 0:
            f.seek(start - 1)
            # A line starts at `start` only if the byte before it ends a line: skip the rest of
            # a line that began in the previous split.
            if f.read(1) != b"\n":
                f.readline()
        while f.tell() < end:
            line = f.readline()
            if not line:
                break
            yield line


def text_lines(
    paths: Sequence[str], encoding: str, index: int, parallelism: int, skip_first: bool = False
) -> Iterator[str]:
    """Subtask ``index``'s lines (without the line end) over every file, file by file."""
    for path in paths:
        # The header is the line at byte 0: only a split starting at byte 0 can hold it.
        first = file_size(path) * index // parallelism == 0
        for n, line in enumerate(_byte_split_lines(path, index, parallelism)):
            if skip_first and first and n == 0:
                continue
            yield line.decode(encoding).rstrip("\r\n")


def csv_records(
    paths: Sequence[str],
    encoding: str,
    delimiter: str,
    fields: tuple[str, ...] | None,
    header: bool,
    index: int,
    parallelism: int,
) -> Iterator[Any]:
    """Parsed rows of subtask ``index``'s lines: dicts when ``fields`` are known, else tuples.

    One record per line: a quoted field holding a line break is not supported (splits cut at
    line ends)."""
    lines = text_lines(paths, encoding, index, parallelism, skip_first=header)
    for row in csv.reader(lines, delimiter=delimiter):
        if not row:
            continue
        if fields is None:
            yield tuple(row)
        else:
            if len(row) != len(fields):
                raise ValueError(f"a CSV row has {len(row)} fields, the header {len(fields)}")
            yield dict(zip(fields, row, strict=True))


def csv_header(path: str, encoding: str, delimiter: str) -> tuple[str, ...]:
    with open_binary(path) as f:
        first = f.readline().decode(encoding)
    row = next(csv.reader(io.StringIO(first), delimiter=delimiter), None)
    if not row:
        raise ValueError(f"read_csv: {path} has no header line")
    return tuple(row)


def source_iterable(
    factory: Callable[..., Iterable[Any]], parallel: bool, index: int, parallelism: int
) -> Iterable[Any]:
    """A replayable source's records for one subtask: ``factory()`` for a non-parallel source,
    ``factory(index, parallelism)`` for a parallel one (each call starts from the beginning)."""
    iterable = factory(index, parallelism) if parallel else factory()
    if not isinstance(iterable, Iterable):
        raise TypeError(
            f"from_source: the factory returned {type(iterable).__name__}, not an iterable"
        )
    return iterable


def split_records(
    params: Mapping[str, Any], index: int, parallelism: int
) -> Iterable[Any] | Columns:
    """What subtask ``index`` of a source reads: its columns, or its records as an iterable
    that reads lazily (an unbounded source's never ends). A ``presplit`` source already holds
    this subtask's split only (the distributed executor ships each slice its own)."""
    source = params["source"]
    whole = params.get("presplit", False)
    if source == "elements":
        elements = params["elements"]
        if isinstance(elements, SpilledElements):
            return elements.read() if whole else sequence_split(elements.read(), index, parallelism)
        return elements if whole else sequence_split(elements, index, parallelism)
    if source == "arrays":
        return params["columns"] if whole else arrays_split(params["columns"], index, parallelism)
    if source == "text":
        return text_lines(params["paths"], params["encoding"], index, parallelism)
    if source == "csv":
        return csv_records(
            params["paths"],
            params["encoding"],
            params["delimiter"],
            params["fields"],
            params["header"],
            index,
            parallelism,
        )
    if source == "factory":
        return source_iterable(params["factory"], params["parallel"], index, parallelism)
    if source == "split":  # a SplitSource (dataflow.positions), read whole, split by split
        splits = list(params["split_source"].splits())[index::parallelism]
        read = params["split_source"].read
        return (item[0] for s in splits for item in read(s, None) if item is not None)
    if source == "monitor":  # in process: the directory's files as they are now
        return _directory_lines(params["path"], params["encoding"], index, parallelism)
    raise ValueError(f"unknown source kind {source!r}")


def total_rows(params: Mapping[str, Any]) -> int:
    """How many records a collection or arrays source holds in all (a ``presplit`` one, of
    which a slice holds its own split only, is told the whole's size: ``rows``)."""
    if params.get("presplit", False):
        return int(params["rows"])
    if params["source"] == "elements":
        return len(params["elements"])
    return len(next(iter(params["columns"].values())))


def addressable_rows(
    params: Mapping[str, Any], index: int, parallelism: int
) -> tuple[int, Sequence[Any] | Columns]:
    """What subtask ``index`` of a collection or arrays source can read by record number
    over the whole input, and the number of its first record: the whole input, or, for a
    ``presplit`` source (a slice is shipped its own split only), that split (a rescaled
    restore reads the rest of old splits within its new one: ``dataflow.positions.RowRanges``)."""
    offset = 0
    if params.get("presplit", False):
        offset = row_range(total_rows(params), index, parallelism).start
    if params["source"] == "arrays":
        return offset, params["columns"]
    elements = params["elements"]
    if isinstance(elements, SpilledElements):
        return offset, elements.read()  # (a presplit one: the split's own file)
    return offset, elements


def _directory_lines(path: str, encoding: str, index: int, parallelism: int) -> Iterator[str]:
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name.startswith(".") or not os.path.isfile(full):
            continue
        if zlib.crc32(name.encode()) % parallelism == index:
            with open(full, "rb") as f:
                for line in f:
                    if line.endswith(b"\n"):
                        yield line.decode(encoding).rstrip("\r\n")


def read_split(params: Mapping[str, Any], index: int, parallelism: int) -> list[Any] | Columns:
    """Everything subtask ``index`` of a bounded source reads (a list, or columns)."""
    records = split_records(params, index, parallelism)
    return records if isinstance(records, dict | list) else list(records)


def estimated_records(params: Mapping[str, Any], default: float, bytes_per_line: float) -> float:
    """The number of records a source will produce, or an estimate of it."""
    source = params["source"]
    if source == "elements":
        return float(len(params["elements"]))
    if source == "arrays":
        return float(len(next(iter(params["columns"].values()))))
    if source in ("text", "csv"):
        # Sizes are taken where the job is built: a job master planning it elsewhere may not
        # see the files (only the workers that read them must).
        sizes = params.get("sizes")
        if sizes is None:
            try:
                sizes = [file_size(p) for p in params["paths"]]
            except (OSError, ImportError, ValueError):
                return default
        return float(sum(sizes)) / bytes_per_line
    hinted = params.get("estimated_records")
    return default if hinted is None else float(hinted)


def check_columns(columns: object) -> dict[str, npt.NDArray[Any]]:
    if not isinstance(columns, Mapping) or not columns:
        raise TypeError("from_arrays: columns must be a non-empty dict of numpy arrays")
    out: dict[str, npt.NDArray[Any]] = {}
    rows = None
    for name, column in columns.items():
        if not isinstance(name, str):
            raise TypeError(f"from_arrays: column names must be str, not {type(name).__name__}")
        if not isinstance(column, np.ndarray):
            raise TypeError(
                f"from_arrays: column {name!r} must be a numpy array, not {type(column).__name__}"
            )
        if column.ndim != 1:
            raise ValueError(f"from_arrays: column {name!r} must be 1-D, got {column.shape}")
        if rows is not None and column.shape[0] != rows:
            raise ValueError(
                f"from_arrays: column {name!r} has {column.shape[0]} rows, the first has {rows}"
            )
        rows = column.shape[0]
        out[name] = column
    return out
