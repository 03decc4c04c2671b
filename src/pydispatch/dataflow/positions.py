"""Sources with positions: what a checkpoint records of a source, and reading on from it
(private; :class:`SplitSource` is public as ``pydispatch.stream.SplitSource``).

A source subtask's position is taken between two micro-batches, after the barrier's
predecessor left: the records before it are in the checkpoint's downstream state, those after
it are read again on restore.

- collections, arrays, text and CSV files, replayable factories: the number of records the
  subtask emitted (its split is the same on every run at the same parallelism, Hadoop's line
  rule for files: ``plan._sources``), so restoring skips that many. Files and parallel
  factories also restore at another parallelism: the old subtasks' splits then become the
  splits of the new ones (old split ``j`` of ``p`` goes to subtask ``j % p'``, read on from
  its count, round robin by batch), and the position is ``{"parallelism": p, "counts": {j:
  count}}`` from then on (:class:`CountedSplits`). Collections and arrays restore at another
  parallelism too, by record number over the whole input (:class:`RowRanges`): what no old
  subtask emitted yet is read by the new subtask whose own split holds it, so a slice is
  still shipped its own split only;
- a :class:`SplitSource`: a position per split, given by the source itself (a file offset, a
  partition's offset...); splits go to subtasks round robin, so they are redistributed when
  the source's parallelism changes;
- ``read_text(directory, monitor=seconds)``: a directory watched for new files (Flink's
  continuously monitored file source): the byte offset reached in each file.
"""

from __future__ import annotations

import itertools
import os
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..plan import _sources
from .operators import Batch, size

__all__ = [
    "IDLE",
    "IN_MEMORY",
    "RESCALABLE_COUNTED",
    "CountedSplits",
    "PositionedReader",
    "RowRanges",
    "SplitSource",
    "monitored_lines",
    "source_batches",
]


class _Idle:
    def __repr__(self) -> str:
        return "IDLE"


#: Yielded by an unbounded reader with nothing to read now: the source subtask may take a
#: checkpoint meanwhile (a barrier needs a pause between batches).
IDLE: Any = _Idle()


class SplitSource:
    """A source of one's own, read by splits with a position in each (Flink's FLIP-27
    ``Source``, reduced): override :meth:`splits` and :meth:`read`.

    ``splits()`` lists every split (picklable values, the same list on every call); subtask
    ``i`` of ``p`` reads splits ``i, i + p, i + 2p...``, round robin between them.
    ``read(split, position)`` yields ``(record, position_after_it)`` pairs from ``position``
    (None: the split's beginning); a checkpoint keeps each split's last position, and a restored
    job calls ``read`` again from it (also at another parallelism). An unbounded split with
    nothing to read now yields None (rather than block), so that the source can take a
    checkpoint meanwhile. ``bounded``: whether every split ends. Used with
    ``env.from_source(my_split_source)``."""

    bounded: bool = True

    def splits(self) -> Sequence[Any]:
        raise NotImplementedError(f"{type(self).__name__} does not override splits()")

    def read(self, split: Any, position: Any) -> Iterable[tuple[Any, Any]]:
        raise NotImplementedError(f"{type(self).__name__} does not override read()")


class PositionedReader:
    """Subtask ``index``'s micro-batches of a source, and its position between them."""

    def __init__(
        self, params: Mapping[str, Any], index: int, parallelism: int, position: Any = None
    ) -> None:
        self.params = params
        self.index = index
        self.parallelism = parallelism
        kind = params["source"]
        self.kind = kind
        self.splits: CountedSplits | None = None  # a count-positioned source, rescaled
        self.rows: list[tuple[int, int]] | None = None  # a collection or arrays, rescaled
        if kind == "split":
            source: SplitSource = params["split_source"]
            mine = list(source.splits())[index::parallelism]
            known = dict(position or {})
            self.positions: dict[int, Any] = {
                n: known.get(n) for n in range(index, len(source.splits()), parallelism)
            }
            self._records: Iterator[Any] = _round_robin(source, mine, self.positions)
        elif kind == "monitor":
            self.offsets: dict[str, int] = dict(position or {})
            self._records = monitored_lines(params, index, parallelism, self.offsets)
        elif isinstance(position, CountedSplits):
            self.splits = position
        elif isinstance(position, RowRanges):
            self.rows = list(position.ranges)
        else:
            self.emitted = int(position or 0)

    def position(self) -> Any:
        if self.kind == "split":
            return dict(self.positions)
        if self.kind == "monitor":
            return dict(self.offsets)
        if self.splits is not None:
            return CountedSplits(self.splits.parallelism, dict(self.splits.counts))
        if self.rows is not None:
            return RowRanges(tuple(self.rows))
        return self.emitted

    def batches(self, batch_records: int) -> Iterator[Batch]:
        """Micro-batches; an empty one when an unbounded source has nothing now."""
        if self.kind in ("split", "monitor"):
            yield from _batched(self._records, batch_records)
            return
        if self.splits is not None:
            yield from self._old_splits(self.splits, batch_records)
            return
        if self.rows is not None:
            yield from self._row_ranges(self.rows, batch_records)
            return
        skip = self.emitted
        for batch in source_batches(self.params, self.index, self.parallelism, batch_records, skip):
            self.emitted += size(batch)
            yield batch

    def _old_splits(self, splits: CountedSplits, batch_records: int) -> Iterator[Batch]:
        """The remainders of the old subtasks' splits that fall to this one, a batch of each
        in turn (an unbounded one does not starve the others)."""
        counts = splits.counts
        readers = {
            j: source_batches(self.params, j, splits.parallelism, batch_records, counts[j])
            for j in sorted(counts)
        }
        while readers:
            for j in list(readers):
                batch = next(readers[j], None)
                if batch is None:
                    del readers[j]
                    continue
                counts[j] += size(batch)
                yield batch

    def _row_ranges(self, rows: list[tuple[int, int]], batch_records: int) -> Iterator[Batch]:
        """The records of ``rows`` (ranges of record numbers over the whole input, all in
        this subtask's own split), in order; each range's start moves on as batches leave."""
        offset, data = _sources.addressable_rows(self.params, self.index, self.parallelism)
        step = max(batch_records, 1)
        if isinstance(data, dict):
            row_bytes = max(sum(c.dtype.itemsize for c in data.values()), 1)
            step = max(step * 8, _COLUMN_BATCH_BYTES // row_bytes)  # as source_batches
        while rows:
            start, stop = rows[0]
            end = min(start + step, stop)
            if isinstance(data, dict):
                batch: Batch = {n: c[start - offset : end - offset] for n, c in data.items()}
            else:
                batch = list(data[start - offset : end - offset])
            rows[0] = (end, stop)
            if end >= stop:
                del rows[0]
            yield batch


@dataclass(frozen=True)
class RowRanges:
    """A collection or arrays source restored at another parallelism: the ranges of record
    numbers (over the whole input, ``[start, stop)``, ascending) this subtask has still to
    emit. Old subtask ``j`` of ``p`` that emitted ``c`` records leaves ``[row_range(n, j,
    p).start + c, row_range(n, j, p).stop)``; new subtask ``i`` of ``p'`` reads what is left
    inside its own split ``row_range(n, i, p')``: the only records its slice is shipped."""

    ranges: tuple[tuple[int, int], ...]

    @staticmethod
    def rescaled(
        olds: list[tuple[int, int, Any]], rows: int, index: int, parallelism: int
    ) -> RowRanges:
        """Subtask ``index`` of ``parallelism``'s share of the old subtasks' positions
        (``(old index, old parallelism, position)`` each: a count, or a RowRanges) over an
        input of ``rows`` records."""
        left: list[tuple[int, int]] = []
        for old_index, old_parallelism, position in olds:
            if isinstance(position, RowRanges):
                left.extend(position.ranges)
            else:
                split = _sources.row_range(rows, old_index, old_parallelism)
                left.append((split.start + int(position or 0), split.stop))
        own = _sources.row_range(rows, index, parallelism)
        mine = ((max(a, own.start), min(b, own.stop)) for a, b in sorted(left))
        return RowRanges(tuple((a, b) for a, b in mine if a < b))


@dataclass(frozen=True)
class CountedSplits:
    """A count-positioned source restored at another parallelism: the old subtasks' splits
    (of ``parallelism``) this subtask reads, each with the records emitted of it."""

    parallelism: int
    counts: dict[int, int]

    @staticmethod
    def rescaled(olds: list[tuple[int, int, Any]], index: int, parallelism: int) -> CountedSplits:
        """Subtask ``index`` of ``parallelism``'s share of the old subtasks' positions
        (``(old index, old parallelism, position)`` each: a count, or a CountedSplits)."""
        base = olds[0][1]
        counts: dict[int, int] = {}
        for old_index, _, position in olds:
            if isinstance(position, CountedSplits):
                base = position.parallelism
                counts.update(position.counts)
            else:
                counts[old_index] = int(position or 0)
        return CountedSplits(base, {j: c for j, c in counts.items() if j % parallelism == index})


#: Count-positioned sources that restore at another parallelism by old split: a slice reads
#: any split of them itself (:class:`CountedSplits`).
RESCALABLE_COUNTED = ("text", "csv", "factory")
#: Count-positioned sources that restore at another parallelism by record number: a slice is
#: shipped its own split of them only (:class:`RowRanges`).
IN_MEMORY = ("elements", "arrays")


def source_batches(
    params: Any, index: int, parallelism: int, batch_records: int, skip: int = 0
) -> Iterator[Batch]:
    """Subtask ``index``'s source records in micro-batches (column views on the columnar path),
    without its first ``skip`` records (a source restored from a checkpoint)."""
    records = _sources.split_records(params, index, parallelism)
    if isinstance(records, dict):
        if skip:
            records = {name: c[skip:] for name, c in records.items()}
        n = size(records)
        # Columns are cheap per row: 8 times the rows of a record batch, and at least
        # _COLUMN_BATCH_BYTES, since the shuffle moves large frames faster (measured between
        # two processes over the data plane: 0.57 GB/s in 64 KiB batches, 1.2-1.7 in 1 MiB).
        row_bytes = max(sum(c.dtype.itemsize for c in records.values()), 1)
        step = max(max(batch_records, 1) * 8, _COLUMN_BATCH_BYTES // row_bytes)
        for start in range(0, n, step):
            yield {name: c[start : start + step] for name, c in records.items()}
        return
    if isinstance(records, list | tuple):  # in memory: no linger to watch, no record loop
        step = max(batch_records, 1)
        for start in range(skip, len(records), step):
            yield list(records[start : start + step])
        return
    batch: list[Any] = []
    # An unbounded source may be slow: a partial batch leaves after _LINGER seconds.
    since = time.monotonic()
    for record in itertools.islice(records, skip, None) if skip else records:
        batch.append(record)
        if len(batch) >= batch_records or time.monotonic() - since > _LINGER:
            yield batch
            batch = []
            since = time.monotonic()
    if batch:
        yield batch


_LINGER = 0.05
_COLUMN_BATCH_BYTES = 2 << 20


def _round_robin(
    source: SplitSource, splits: list[Any], positions: dict[int, Any]
) -> Iterator[Any]:
    numbers = list(positions)
    readers = {
        n: iter(source.read(split, positions[n])) for n, split in zip(numbers, splits, strict=True)
    }
    while readers:
        for n in list(readers):
            try:
                item = next(readers[n])
            except StopIteration:
                del readers[n]
                continue
            if item is None or item is IDLE:
                yield IDLE
                continue
            record, positions[n] = item
            yield record


def _batched(records: Iterator[Any], batch_records: int) -> Iterator[Batch]:
    batch: list[Any] = []
    since = time.monotonic()
    for record in records:
        if record is IDLE:
            yield batch
            batch = []
            since = time.monotonic()
            continue
        batch.append(record)
        if len(batch) >= batch_records or time.monotonic() - since > _LINGER:
            yield batch
            batch = []
            since = time.monotonic()
    if batch:
        yield batch


def monitored_lines(
    params: Mapping[str, Any], index: int, parallelism: int, offsets: dict[str, int]
) -> Iterator[Any]:
    """The lines of the files in ``params["path"]`` (a directory), read on as files appear or
    grow, every ``params["monitor"]`` seconds; only whole lines (a line still being written
    waits for its end). Subtask ``index`` reads the files whose name hashes to it; ``offsets``
    (file name -> bytes read) counts each line as it is yielded."""
    directory, every = params["path"], float(params["monitor"])
    encoding = params.get("encoding", "utf-8")
    while True:
        found = False
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            names = []
        for name in names:
            if name.startswith(".") or zlib.crc32(name.encode()) % parallelism != index:
                continue
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                continue
            offset = offsets.get(name, 0)
            if os.path.getsize(path) <= offset:
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    text = line.decode(encoding).rstrip("\r\n")
                    offset += len(line)
                    found = True
                    # Counted before the yield: the generator pauses there while its batch
                    # leaves and a barrier may follow, and the position must hold that line.
                    offsets[name] = offset
                    yield text
        if not found:
            yield IDLE
            time.sleep(every)


def skip_records(records: Iterable[Any], count: int) -> Iterator[Any]:
    """``records`` without the first ``count`` (a restored source's replay)."""
    return itertools.islice(iter(records), count, None)


def bounded_source(params: dict[str, Any]) -> bool:
    return bool(params.get("bounded", True))


def split_params(source: SplitSource) -> dict[str, Any]:
    return {"source": "split", "split_source": source, "bounded": bool(source.bounded)}
