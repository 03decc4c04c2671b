"""The keyed operators' state across micro-batches, snapshotted by key group (private).

The distributed executor's stateful operators (``dataflow.subtask`` feeds them batch by batch;
see its docstring for what each emits and when). Each keeps its state so that
:meth:`snapshot_groups` cuts it by key group (``dataflow.keyed_state``): the running
aggregations on records and on columns, count windows and event-time windows. A restored
operator (:meth:`restore_groups`, before any input) continues exactly where the snapshot was
taken, for the keys of the key groups it was given.
"""

from __future__ import annotations

import operator
from typing import Any, Protocol

import numpy as np

from ..plan._job_graph import Operator
from .aggregation import KeyedAggregator, group_aggregate
from .keyed_state import by_group, decode, encode, groups_of_keys, pick
from .operators import (
    COMBINABLE,
    Batch,
    Columns,
    _combiner,
    _emit,
    _field_getter,
    aggregator,
    getter,
    size,
    value_column,
    weights_column,
)
from .routing import key_groups_of, max_parallelism

__all__ = ["Aggregate", "ColumnAggregate", "CountWindow", "KeyedOperator", "TimeWindow"]


class KeyedOperator(Protocol):
    """What ``SubtaskRunner.snapshot_state`` / ``restore_state`` ask of a keyed operator."""

    def snapshot_groups(self) -> dict[int, bytes]: ...

    def restore_groups(self, groups: dict[int, bytes]) -> None: ...


def _key_scheme(op: Operator) -> tuple[str, int]:
    return op.params["key"].scheme, max_parallelism(op)


def snapshot_entries(
    entries: dict[Any, Any], keys: list[Any], scheme: str, mp: int, extra: Any = None
) -> dict[int, bytes]:
    """A dict's entries cut by the key group of each entry's key (``keys``, in entry order):
    ``{group: encode((dict keys, values, extra))}``, read back by :func:`restore_entries`."""
    slots = list(entries)
    values = list(entries.values())
    out: dict[int, bytes] = {}
    for group, positions in by_group(groups_of_keys(keys, scheme, mp)):
        at = positions.tolist()
        out[group] = encode((pick(slots, at), pick(values, at), extra))
    return out


def restore_entries(entries: dict[Any, Any], groups: dict[int, bytes]) -> list[Any]:
    """Merge what :func:`snapshot_entries` cut into ``entries``; each group's ``extra``."""
    extras = []
    for data in groups.values():
        slots, values, extra = decode(data)
        entries.update(zip(slots, values, strict=True))
        extras.append(extra)
    return extras


class Aggregate:
    """A keyed rolling/final aggregation over records, state kept across batches."""

    def __init__(self, op: Operator, streaming: bool, partials: bool = False) -> None:
        agg = op.params["agg"]
        self.key_of = getter(op.params["key"])
        self.value_of = (lambda _: 1) if agg == "count" else _field_getter(op.params["field"])
        self.combine = _combiner(agg, op.function)
        self.partials = partials
        if partials:  # (key, value, records) from the producers' RecordCombiner
            self.key_of, self.value_of = operator.itemgetter(0), operator.itemgetter(1)
            self.combine = _combiner("sum" if agg == "count" else agg, None)
        self.emit = _emit(agg)
        self.streaming = streaming
        self.state: dict[Any, Any] = {}
        self.scheme = _key_scheme(op)

    def push(self, records: list[Any]) -> list[Any]:
        state, out = self.state, []
        for record in records:
            key = self.key_of(record)
            value = self.value_of(record)
            acc = self.combine(state[key], value) if key in state else value
            state[key] = acc
            if self.streaming:
                out.append(self.emit(key, acc))
        return out

    def finish(self) -> list[Any]:
        return [] if self.streaming else [self.emit(k, a) for k, a in self.state.items()]

    def snapshot_groups(self) -> dict[int, bytes]:
        return snapshot_entries(self.state, list(self.state), *self.scheme)

    def restore_groups(self, groups: dict[int, bytes]) -> None:
        restore_entries(self.state, groups)


class ColumnAggregate:
    """A keyed sum/min/max/count over columns: one native hash aggregation across batches
    (``dataflow.aggregation``), emitted at end of input with keys sorted. When its producers
    combine (``combinable``), its input is their partials: rows carry their row counts."""

    def __init__(self, op: Operator, partials: bool) -> None:
        self.op = op
        self.key = str(op.params["key"].selector)
        self.value = value_column(op)
        self.weights = weights_column(op) if partials else None
        self.state: KeyedAggregator | None = None

    def push(self, columns: Columns) -> int:
        """Fold a batch in; the input records it stands for."""
        if self.state is None:
            self.state = aggregator(self.op, columns)
        values = None if self.op.params["agg"] == "count" else columns[self.value]
        if self.weights is None:
            self.state.update(columns[self.key], values)
            return size(columns)
        weights = columns[self.weights]
        self.state.update(columns[self.key], values, weights)
        return int(weights.sum())

    def finish(self) -> Batch:
        if self.state is None:
            return []
        keys, values = self.state.result(sort=True)
        return {self.key: keys, self.value: values}

    def snapshot_groups(self) -> dict[int, bytes]:
        """Each key group's partials (keys, partial aggregates, row counts) with the dtypes
        the aggregator was made for: a restore merges them as partials."""
        if self.state is None or not len(self.state):
            return {}
        keys, values, counts = self.state.partial()
        scheme, mp = _key_scheme(self.op)
        value_dtype = self.state.value_dtype
        return {
            group: encode((value_dtype, keys[at], values[at], counts[at]))
            for group, at in by_group(key_groups_of(keys, scheme, mp))
        }

    def restore_groups(self, groups: dict[int, bytes]) -> None:
        agg = self.op.params["agg"]
        for data in groups.values():
            value_dtype, keys, values, counts = decode(data)
            if self.state is None:
                self.state = KeyedAggregator(agg, keys.dtype, value_dtype)
            self.state.update(keys, None if agg == "count" else values, counts)


class CountWindow:
    def __init__(self, op: Operator) -> None:
        params = op.params
        self.key_of = getter(params["key"])
        agg = params["agg"]
        self.value_of = (lambda _: 1) if agg == "count" else _field_getter(params["field"])
        self.combine = _combiner(agg, op.function)
        self.emit = _emit(agg)
        self.size = params["size"]
        self.state: dict[Any, tuple[int, Any]] = {}
        self.scheme = _key_scheme(op)

    def push(self, records: list[Any]) -> list[Any]:
        out: list[Any] = []
        for record in records:
            key = self.key_of(record)
            value = self.value_of(record)
            seen, acc = self.state.get(key, (0, None))
            acc = value if seen == 0 else self.combine(acc, value)
            if seen + 1 == self.size:
                out.append(self.emit(key, acc))
                self.state.pop(key, None)
            else:
                self.state[key] = (seen + 1, acc)
        return out

    def finish(self) -> list[Any]:
        return []  # incomplete windows never fire

    def snapshot_groups(self) -> dict[int, bytes]:
        return snapshot_entries(self.state, list(self.state), *self.scheme)

    def restore_groups(self, groups: dict[int, bytes]) -> None:
        restore_entries(self.state, groups)


#: Windows a columnar batch may open before a time window reads its rows one by one instead.
_NATIVE_WINDOWS = 64


class TimeWindow:
    def __init__(self, op: Operator) -> None:
        params = op.params
        self.key_of = getter(params["key"])
        self.agg = agg = params["agg"]
        self.value_of = (lambda _: 1) if agg == "count" else _field_getter(params["field"])
        self.combine = _combiner(agg, op.function)
        self.time_of = getter(params["timestamp"])
        self.size = params["size"]
        self.params = params
        # Partial aggregates merge as they combine, except counts, which add up.
        self.merge = _combiner("sum" if agg == "count" else agg, op.function)
        self.windows: dict[tuple[Any, Any], Any] = {}
        # Streaming mode: windows fire when the watermark (the least of the input channels'
        # latest marks) reaches their end; records of a window already fired are dropped
        # (Flink's default for late data). Batch mode: everything fires at end of input.
        self.channels = 0
        self.marks: dict[Any, Any] = {}
        self.fired: Any = None  # the end of the last window fired
        self.late = 0
        self.scheme = _key_scheme(op)

    def advance(self, channel: Any, mark: Any) -> list[Any]:
        """A watermark from one input channel; the windows it completes, fired."""
        if channel in self.marks and mark <= self.marks[channel]:
            return []
        self.marks[channel] = mark
        if len(self.marks) < self.channels:
            return []
        watermark = min(self.marks.values())
        due = {slot for slot in self.windows if slot[0] + self.size <= watermark}
        if not due:
            return []
        items = [(slot, acc) for slot, acc in self.windows.items() if slot in due]
        for slot in due:
            del self.windows[slot]
        self.fired = watermark - watermark % self.size
        return self._emit(items)

    def push_columns(self, columns: Columns) -> bool:
        """Fold a columnar batch in by native aggregation: one dict update per window and key
        instead of per row. False (nothing done) where that does not apply (a function key or
        timestamp, a non-numeric column, reduce, over _NATIVE_WINDOWS windows in the batch):
        ``push`` its rows then. Same results as ``push``; keys keep first-seen order."""
        params = self.params
        key, stamp = params["key"], params["timestamp"]
        if self.agg not in COMBINABLE or key.kind != "column" or stamp.kind != "column":
            return False
        keys = columns[str(key.selector)]
        stamps = columns[str(stamp.selector)]
        values = None if self.agg == "count" else columns.get(str(params["field"]))
        if self.agg != "count" and (values is None or values.dtype.kind not in "biuf"):
            return False
        if stamps.dtype.kind not in "iuf":
            return False
        starts = stamps - stamps % self.size
        live = None if self.fired is None else stamps >= self.fired
        windows_of = np.unique(starts if live is None else starts[live])
        if windows_of.shape[0] > _NATIVE_WINDOWS:
            return False
        if live is not None:  # late rows: their window fired already
            self.late += int(live.shape[0] - np.count_nonzero(live))
            keys, starts = keys[live], starts[live]
            values = None if values is None else values[live]
        merge, windows = self.merge, self.windows
        for start in windows_of.tolist():
            in_window = starts == start
            part = None if values is None else values[in_window]
            window_keys, accs = group_aggregate(keys[in_window], part, self.agg)
            for k, acc in zip(window_keys.tolist(), accs.tolist(), strict=True):
                slot = (start, k)
                windows[slot] = merge(windows[slot], acc) if slot in windows else acc
        return True

    def push(self, records: list[Any]) -> list[Any]:
        windows = self.windows
        for record in records:
            key = self.key_of(record)
            stamp = self.time_of(record)
            if self.fired is not None and stamp < self.fired:
                self.late += 1
                continue
            slot = (stamp - stamp % self.size, key)
            value = self.value_of(record)
            windows[slot] = self.combine(windows[slot], value) if slot in windows else value
        return []

    def finish(self) -> list[Any]:
        return self._emit(list(self.windows.items()))

    def snapshot_groups(self) -> dict[int, bytes]:
        """Open windows by their key's group, each group with the end of the last window
        fired (records older than it stay late after a restore)."""
        keys = [key for _, key in self.windows]
        return snapshot_entries(self.windows, keys, *self.scheme, extra=self.fired)

    def restore_groups(self, groups: dict[int, bytes]) -> None:
        for fired in restore_entries(self.windows, groups):
            if fired is not None and (self.fired is None or fired > self.fired):
                self.fired = fired

    def _emit(self, items: list[tuple[tuple[Any, Any], Any]]) -> list[Any]:
        """By window start, then keys in first-seen order (a stable sort of insertion order)."""
        items.sort(key=lambda item: item[0][0])
        if self.agg == "reduce":
            return [acc for _, acc in items]
        return [(key, start, acc) for (start, key), acc in items]
