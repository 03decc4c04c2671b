"""What each operator kind does to one subtask's input, shared by both executors.

A batch is a list of records, or a dict of equal-length numpy columns on the columnar path.
The stateless operators (:func:`transform`) and the sinks' per-record work (:func:`call_each`,
:func:`text_sink_path`) are the same for the reference executor (``dataflow.local``) and the
distributed one (``dataflow.subtask``). The keyed functions below are the reference executor's:
keyed state lives in one dict per subtask run, since that executor hands each subtask its whole
input at once (``dataflow.subtask`` keeps the same state across micro-batches).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ..plan._job_graph import KeySpec, Operator
from .aggregation import KeyedAggregator, group_aggregate

__all__ = [
    "COMBINABLE",
    "STATELESS",
    "Batch",
    "Columns",
    "aggregate_columns",
    "aggregate_records",
    "aggregator",
    "call_each",
    "concat",
    "getter",
    "rows",
    "size",
    "text_sink_path",
    "transform",
    "value_column",
    "weights_column",
    "window_records",
]

Columns = dict[str, npt.NDArray[Any]]
Batch = list[Any] | Columns


def size(batch: Batch) -> int:
    if isinstance(batch, dict):
        return len(next(iter(batch.values()))) if batch else 0
    return len(batch)


#: Operator kinds that map a batch to a batch with no state: :func:`transform` runs them.
STATELESS = frozenset({"map", "flat_map", "filter", "map_batches"})


def transform(op: Operator, data: Batch) -> list[Any]:
    """A stateless operator (a kind in :data:`STATELESS`) applied to a batch's records."""
    f: Callable[..., Any] = op.function  # type: ignore[assignment]
    if op.kind == "map":
        return [f(r) for r in rows(data)]
    if op.kind == "flat_map":
        return [y for r in rows(data) for y in f(r)]
    if op.kind == "filter":
        return [r for r in rows(data) if f(r)]
    if op.kind == "map_batches":  # issue 19: the batch as it came (list or columns)
        return list(f(data))
    raise ValueError(f"{op.kind!r} is not a stateless operator kind")


def call_each(op: Operator, data: Batch) -> None:
    """A ``for_each`` sink: the user's function on every record, in order."""
    f: Callable[..., Any] = op.function  # type: ignore[assignment]
    for r in rows(data):
        f(r)


def text_sink_path(op: Operator, index: int, parallelism: int) -> str:
    """Where subtask ``index`` of a text sink writes: the path itself, or file ``index + 1`` in
    that directory when it is one (``DataStream.write_text`` says when; Flink's
    FileOutputFormat); the directory is made, and subtask 0 removes the numbered part files
    beyond ``parallelism`` that an earlier run left (no subtask of this run writes those)."""
    path: str = op.params["path"]
    if parallelism == 1 and not op.params.get("directory") and not os.path.isdir(path):
        return path
    os.makedirs(path, exist_ok=True)
    if index == 0:
        for entry in os.listdir(path):
            if entry.isascii() and entry.isdigit() and int(entry) > parallelism:
                stale = os.path.join(path, entry)
                if os.path.isfile(stale):
                    os.remove(stale)
    return os.path.join(path, str(index + 1))


def rows(batch: Batch) -> list[Any]:
    """The records of a batch; columns become one dict per row (Python scalars)."""
    if not isinstance(batch, dict):
        return batch
    names = list(batch)
    columns = [batch[n].tolist() for n in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def concat(batches: list[Batch]) -> Batch:
    if not batches:
        return []
    if isinstance(batches[0], dict):
        if len(batches) == 1:
            return batches[0]
        names = list(batches[0])
        return {n: np.concatenate([b[n] for b in batches if isinstance(b, dict)]) for n in names}
    out: list[Any] = []
    for b in batches:
        out.extend(rows(b))
    return out


def getter(spec: KeySpec) -> Callable[[Any], Any]:
    if spec.kind == "function":
        function: Callable[[Any], Any] = spec.selector  # type: ignore[assignment]
        return function
    return operator.itemgetter(spec.selector)


def _field_getter(field: int | str | None) -> Callable[[Any], Any]:
    return (lambda record: record) if field is None else operator.itemgetter(field)


def _combiner(agg: str, function: Callable[[Any, Any], Any] | None) -> Callable[[Any, Any], Any]:
    if agg == "sum":
        return operator.add
    if agg == "min":
        return min
    if agg == "max":
        return max
    if agg == "count":
        return lambda acc, _: acc + 1
    assert function is not None  # reduce
    return function


def _emit(agg: str) -> Callable[[Any, Any], Any]:
    return (lambda _, acc: acc) if agg == "reduce" else (lambda key, acc: (key, acc))


def aggregate_records(op: Operator, records: list[Any], streaming: bool) -> list[Any]:
    """A keyed rolling (streaming) or final (batch) aggregation; keys in first-seen order."""
    agg = op.params["agg"]
    key_of = getter(op.params["key"])
    value_of = (lambda _: 1) if agg == "count" else _field_getter(op.params["field"])
    combine = _combiner(agg, op.function)
    emit = _emit(agg)
    state: dict[Any, Any] = {}
    out: list[Any] = []
    for record in records:
        key = key_of(record)
        value = value_of(record)
        acc = combine(state[key], value) if key in state else value
        state[key] = acc
        if streaming:
            out.append(emit(key, acc))
    if not streaming:
        out = [emit(key, acc) for key, acc in state.items()]
    return out


#: Aggregations whose partials merge (a combiner may run before the shuffle): count partials
#: are summed, the others reduced again by their own function.
COMBINABLE = frozenset({"sum", "min", "max", "count"})


def value_column(op: Operator) -> str:
    """The column a columnar keyed aggregation writes its aggregate to."""
    return "count" if op.params["agg"] == "count" else str(op.params["field"])


def weights_column(op: Operator) -> str:
    """The column of a partial batch (a combiner's output) holding each row's row count: a
    name distinct from the key's and the value's."""
    name = "__rows"
    while name in (str(op.params["key"].selector), value_column(op)):
        name += "_"
    return name


def aggregator(op: Operator, columns: Columns) -> KeyedAggregator:
    """An empty native aggregator for ``op`` over batches shaped like ``columns``: raw
    batches, or its combiner's partial ones (whose values have the aggregate's dtype)."""
    key = columns[str(op.params["key"].selector)]
    agg = op.params["agg"]
    values = None if agg == "count" else columns[value_column(op)].dtype
    return KeyedAggregator(agg, key.dtype, values)


def aggregate_columns(op: Operator, columns: Columns) -> Columns:
    """A keyed sum/min/max/count over columns by native hash aggregation
    (``dataflow.aggregation``): one output row per key, keys sorted."""
    key_name = str(op.params["key"].selector)
    value_name = value_column(op)
    agg = op.params["agg"]
    values = None if agg == "count" else columns[value_name]
    keys, out = group_aggregate(columns[key_name], values, agg, sort=True)
    return {key_name: keys, value_name: out}


def window_records(op: Operator, records: list[Any]) -> list[Any]:
    """Tumbling count or event-time windows per key (see ``pydispatch.stream``)."""
    params: Mapping[str, Any] = op.params
    agg = params["agg"]
    key_of = getter(params["key"])
    value_of = (lambda _: 1) if agg == "count" else _field_getter(params["field"])
    combine = _combiner(agg, op.function)
    emit = _emit(agg)
    size_ = params["size"]
    out: list[Any] = []
    if params["window"] == "count":
        state: dict[Any, tuple[int, Any]] = {}
        for record in records:
            key = key_of(record)
            value = value_of(record)
            seen, acc = state.get(key, (0, None))
            acc = value if seen == 0 else combine(acc, value)
            if seen + 1 == size_:
                out.append(emit(key, acc))
                state.pop(key, None)
            else:
                state[key] = (seen + 1, acc)
        return out  # incomplete windows never fire (Flink's GlobalWindows + CountTrigger)
    time_of = getter(params["timestamp"])
    windows: dict[tuple[Any, Any], Any] = {}
    for record in records:
        key = key_of(record)
        stamp = time_of(record)
        start = stamp - stamp % size_  # Flink's TimeWindow.getWindowStartWithOffset, offset 0
        value = value_of(record)
        slot = (start, key)
        windows[slot] = combine(windows[slot], value) if slot in windows else value
    # All windows fire at the end of input, by window start, then keys in first-seen order.
    for (start, key), acc in sorted(windows.items(), key=lambda item: item[0][0]):
        out.append(acc if agg == "reduce" else (key, start, acc))
    return out
