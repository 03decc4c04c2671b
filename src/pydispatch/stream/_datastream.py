"""Streams and their operators (private: ``pydispatch.stream`` is the public face).

Every method appends an operator to the environment's job graph, or returns a view of the
same operators with another partitioning (``key_by``, ``rebalance``, ``union``...).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..dataflow.file_sink import TransactionalSink
from ..plan._job_graph import PARTITIONINGS, KeyScheme, KeySpec, Operator, Partitioning, Schema
from ._checks import (
    aggregate_schema,
    as_function,
    check_callable,
    check_field,
    check_parallelism,
    key_spec,
    union_schema,
)
from .functions import (
    FilterFunction,
    FlatMapFunction,
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    ReduceFunction,
)

if TYPE_CHECKING:
    # import cycle: a stream holds its environment (the type only); the environment makes streams
    from ._environment import StreamEnvironment


__all__ = ["DataStream", "DataStreamSink", "KeyedStream", "StreamInput", "WindowedStream"]


@dataclass(frozen=True)
class StreamInput:
    """An input of the next operator: an upstream operator and how records leave it."""

    op: int
    partitioning: Partitioning = "forward"
    explicit: bool = False
    key: KeySpec | None = None
    partitioner: Callable[[Any, int], int] | None = None


class _Aggregations:
    """``reduce``/``sum``/``min``/``max``/``count``, shared by keyed and windowed streams: each
    class says what an aggregation becomes through its own ``_aggregate``."""

    def _aggregate(self, agg: str, field: int | str | None, function: Any = None) -> DataStream:
        raise NotImplementedError

    def reduce(self, function: Callable[[Any, Any], Any] | ReduceFunction) -> DataStream:
        return self._aggregate("reduce", None, as_function(function, ReduceFunction, "reduce"))

    def sum(self, field: int | str | None = None) -> DataStream:
        return self._aggregate("sum", field)

    def min(self, field: int | str | None = None) -> DataStream:
        return self._aggregate("min", field)

    def max(self, field: int | str | None = None) -> DataStream:
        return self._aggregate("max", field)

    def count(self) -> DataStream:
        return self._aggregate("count", None)


class DataStream(_Aggregations):
    """A stream of records: the output of one operator, or (after ``union``, ``key_by`` or a
    partitioning call) of several operators with the way each reaches the next operator."""

    def __init__(
        self,
        env: StreamEnvironment,
        inputs: tuple[StreamInput, ...],
        *,
        op: int | None = None,
        key: KeySpec | None = None,
    ) -> None:
        self._env = env
        self._inputs = inputs
        self._op = op  # the operator this stream is the plain output of, if it is one
        self._key = key

    @property
    def environment(self) -> StreamEnvironment:
        return self._env

    @property
    def schema(self) -> Schema:
        graph = self._env.job_graph
        return union_schema([graph.operator(i.op).schema for i in self._inputs])

    @property
    def operator(self) -> Operator:
        """The operator this stream comes out of (TypeError after union/key_by/partitioning)."""
        return self._env.job_graph.operator(self._own("operator"))

    def __repr__(self) -> str:
        ops = ", ".join(self._env.job_graph.operator(i.op).name for i in self._inputs)
        return f"{type(self).__name__}({ops})"

    # -- operator settings (Flink's SingleOutputStreamOperator) ------------------------------

    def _own(self, what: str) -> int:
        if self._op is None:
            raise TypeError(
                f"{what} applies to an operator's output, not to the result of "
                "union/key_by/rebalance/...; call it right after the operator"
            )
        return self._op

    def _set(self, what: str, **changes: Any) -> DataStream:
        self._env._replace_operator(self._own(what), **changes)
        return self

    def set_parallelism(self, parallelism: int) -> DataStream:
        p = check_parallelism(parallelism, "set_parallelism")
        op = self._env.job_graph.operator(self._own("set_parallelism"))
        if not op.parallel and p != 1:
            raise ValueError(f"set_parallelism: {op.name} is not parallel; its parallelism is 1")
        if op.max_parallelism is not None and p > op.max_parallelism:
            raise ValueError(f"set_parallelism: {p} exceeds max parallelism {op.max_parallelism}")
        return self._set("set_parallelism", parallelism=p)

    def set_max_parallelism(self, max_parallelism: int) -> DataStream:
        """The number of key groups of this (keyed) operator (Flink's default: see
        :func:`pydispatch.partition.default_max_parallelism`)."""
        mp = check_parallelism(max_parallelism, "set_max_parallelism")
        op = self._env.job_graph.operator(self._own("set_max_parallelism"))
        if mp < op.parallelism or mp > 1 << 15:
            raise ValueError(
                f"set_max_parallelism: {mp} must be in [parallelism ({op.parallelism}), 32768]"
            )
        return self._set("set_max_parallelism", max_parallelism=mp)

    def name(self, name: str) -> DataStream:
        if not isinstance(name, str) or not name:
            raise TypeError("name must be a non-empty str")
        return self._set("name", name=name)

    def set_resources(self, **amounts: float) -> DataStream:
        """Resources one subtask of this operator needs (e.g. ``cpu=0.5, memory=2**28``); a
        chain needs the sum of its operators', a shared slot the sum of its subtasks'."""
        for key, amount in amounts.items():
            if isinstance(amount, bool) or not isinstance(amount, int | float):
                raise TypeError(f"set_resources: {key} must be a number")
            if not 0 <= amount < float("inf"):
                raise ValueError(f"set_resources: {key} must be finite and >= 0, got {amount}")
            if key == "slots":
                raise ValueError("set_resources: 'slots' is counted by the planner")
        return self._set("set_resources", resources={k: float(v) for k, v in amounts.items()})

    def disable_chaining(self) -> DataStream:
        """Never chain this operator with its input or its outputs (Flink's NEVER)."""
        return self._set("disable_chaining", chaining="never")

    def start_new_chain(self) -> DataStream:
        """Start a new chain here: not chained to its input, outputs may chain (Flink's HEAD)."""
        return self._set("start_new_chain", chaining="head")

    def hint(
        self, *, selectivity: float | None = None, bytes_per_record: float | None = None
    ) -> DataStream:
        """Estimates for traffic planning: output records per input record, bytes a record."""
        changes: dict[str, float] = {}
        for what, value in (("selectivity", selectivity), ("bytes_per_record", bytes_per_record)):
            if value is not None:
                if not 0 <= value < float("inf"):
                    raise ValueError(f"hint: {what} must be finite and >= 0, got {value}")
                changes[what] = float(value)
        return self._set("hint", **changes)

    # -- transformations -------------------------------------------------------------------

    def _then(self, kind: str, name: str, function: Any = None, **fields: Any) -> DataStream:
        fields.setdefault("schema", Schema())
        op_id = self._env._add(self._inputs, name=name, kind=kind, function=function, **fields)
        return DataStream(self._env, (StreamInput(op_id),), op=op_id)

    def map(self, function: Callable[[Any], Any] | MapFunction) -> DataStream:
        return self._then("map", "Map", as_function(function, MapFunction, "map"))

    def flat_map(self, function: Callable[[Any], Iterable[Any]] | FlatMapFunction) -> DataStream:
        function = as_function(function, FlatMapFunction, "flat_map")
        return self._then("flat_map", "Flat Map", function)

    def filter(self, function: Callable[[Any], bool] | FilterFunction) -> DataStream:
        fields = self.schema.fields
        schema = Schema(fields=fields)
        function = as_function(function, FilterFunction, "filter")
        return self._then("filter", "Filter", function, schema=schema)

    def map_batches(
        self, function: Callable[[Any], Iterable[Any]], *, name: str = "Map Batches"
    ) -> DataStream:
        """``function(batch)`` once per micro-batch, returning the output records (any
        number): ``batch`` is a list of records, or a dict of numpy columns on the columnar
        path. The batches' sizes depend on the executor and the network settings; use it for
        work that is cheaper a batch at a time (a vectorised conversion, an embedded engine's
        query), never for results that depend on where a batch ends."""
        return self._then("map_batches", name, check_callable(function, "map_batches"))

    def execute_and_collect(self) -> list[Any] | dict[str, npt.NDArray[Any]]:
        """PyFlink's name for :meth:`collect`."""
        return self.collect()

    def key_by(
        self, key: Callable[[Any], Any] | KeySelector | int | str, *, scheme: KeyScheme = "hash"
    ) -> KeyedStream:
        """Partition by key: records with equal keys go to the same subtask. ``scheme``:
        ``"hash"`` (pydispatch's hash) or ``"flink"`` (Flink's key groups)."""
        if isinstance(key, KeySelector):
            key = as_function(key, KeySelector, "key_by")
        spec = key_spec(key, scheme, self.schema, "key_by")
        inputs = tuple(StreamInput(i.op, "hash", False, spec) for i in self._inputs)
        return KeyedStream(self._env, inputs, key=spec)

    def union(self, *others: DataStream) -> DataStream:
        inputs = list(self._inputs)
        for other in others:
            if not isinstance(other, DataStream):
                raise TypeError(f"union takes streams, not {type(other).__name__}")
            if other._env is not self._env:
                raise ValueError("union: the streams belong to different environments")
            inputs.extend(other._inputs)
        union_schema([self._env.job_graph.operator(i.op).schema for i in inputs])
        return DataStream(self._env, tuple(inputs))

    def _repartition(
        self,
        kind: Partitioning,
        *,
        explicit: bool = False,
        key: KeySpec | None = None,
        partitioner: Callable[[Any, int], int] | None = None,
    ) -> DataStream:
        assert kind in PARTITIONINGS
        inputs = tuple(StreamInput(i.op, kind, explicit, key, partitioner) for i in self._inputs)
        return DataStream(self._env, inputs)

    def forward(self) -> DataStream:
        """Subtask i feeds subtask i; parallelism must then be equal (checked when planning)."""
        return self._repartition("forward", explicit=True)

    def rebalance(self) -> DataStream:
        """Round robin over all downstream subtasks."""
        return self._repartition("rebalance")

    def rescale(self) -> DataStream:
        """Round robin over a local group of downstream subtasks (Flink's pointwise pattern)."""
        return self._repartition("rescale")

    def broadcast(self) -> DataStream:
        """Every record to every downstream subtask."""
        return self._repartition("broadcast")

    def partition_custom(
        self,
        partitioner: Callable[[Any, int], int],
        key: Callable[[Any], Any] | KeySelector | int | str,
    ) -> DataStream:
        """Record goes to subtask ``partitioner(key(record), n)`` (must be in ``[0, n)``)."""
        check_callable(partitioner, "partition_custom")
        if isinstance(key, KeySelector):
            key = as_function(key, KeySelector, "partition_custom")
        spec = key_spec(key, "hash", self.schema, "partition_custom")
        return self._repartition("custom", key=spec, partitioner=partitioner)

    # -- keyed aggregations (KeyedStream) ----------------------------------------------------

    def _keyed(self, what: str) -> KeySpec:
        if self._key is None:
            raise TypeError(f"{what} is a keyed aggregation: call key_by(...) first")
        return self._key

    def _aggregate(self, agg: str, field: int | str | None, function: Any = None) -> DataStream:
        key = self._keyed(agg)
        check_field(field, self.schema, agg)
        schema = aggregate_schema(self.schema, key, agg, field)
        name = "Keyed Reduce" if agg == "reduce" else f"Keyed Aggregation ({agg})"
        params = {"agg": agg, "field": field, "key": key}
        return self._then("aggregate", name, function, params=params, schema=schema)

    def process(
        self,
        function: KeyedProcessFunction,
        output_type: object = None,
        *,
        timestamp: Callable[[Any], Any] | int | str | None = None,
    ) -> DataStream:
        """Run a :class:`~pydispatch.stream.functions.KeyedProcessFunction` over the keyed
        records, with keyed state and timers. ``timestamp`` (a function, an index or a field
        name) is a record's event time: it is ``ctx.timestamp()``, and input channels carry
        watermarks of it, which fire event-time timers (each channel's timestamps are taken to
        ascend). Without it, event-time timers fire at end of input. ``output_type`` is
        accepted for PyFlink source compatibility and not used. Keyed streams only (PyFlink's
        non-keyed ``ProcessFunction`` is not supported): call ``key_by`` first."""
        key = self._keyed("process")
        if not isinstance(function, KeyedProcessFunction):
            raise TypeError(
                f"process: expected a KeyedProcessFunction, got {type(function).__name__}"
            )
        stamp = None
        if timestamp is not None:
            stamp = key_spec(timestamp, "hash", self.schema, "process timestamp")
        params = {"key": key, "timestamp": stamp}
        name = f"KeyedProcess({type(function).__name__})"
        return self._then("process", name, function, params=params, schema=Schema())

    def count_window(self, size: int) -> WindowedStream:
        """Tumbling windows of ``size`` records per key."""
        key = self._keyed("count_window")
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"count_window: size must be an integer >= 1, got {size!r}")
        return WindowedStream(self, key, {"window": "count", "size": int(size)})

    def time_window(
        self, size: float, *, timestamp: Callable[[Any], Any] | int | str
    ) -> WindowedStream:
        """Tumbling event-time windows ``[k * size, (k + 1) * size)`` of a key, a record's time
        being ``timestamp`` (a function, an index or a field name)."""
        key = self._keyed("time_window")
        if isinstance(size, bool) or not isinstance(size, int | float) or not 0 < size < 1e300:
            raise ValueError(f"time_window: size must be a positive number, got {size!r}")
        spec = key_spec(timestamp, "hash", self.schema, "time_window timestamp")
        return WindowedStream(self, key, {"window": "time", "size": size, "timestamp": spec})

    # -- sinks ------------------------------------------------------------------------------

    def _sink(self, name: str, params: dict[str, Any], function: Any = None) -> DataStreamSink:
        op_id = self._env._add(
            self._inputs, name=f"Sink: {name}", kind="sink", function=function, params=params
        )
        return DataStreamSink(self._env, op_id)

    def collect(self) -> list[Any] | dict[str, npt.NDArray[Any]]:
        """Run the job (with every sink not run yet) and return this stream's records: a list,
        or a dict of columns on the columnar path (see the module docstring for the order)."""
        sink = self._sink("Collect", {"sink": "collect", "columnar": self.schema.columnar})
        result = self._env.execute("collect")
        collected: list[Any] | dict[str, npt.NDArray[Any]] = result.collected[sink.id]
        return collected

    def write_text(self, path: str | os.PathLike[str]) -> DataStreamSink:
        """Write ``str(record)`` lines (columnar rows as dicts), one file per subtask.

        ``path`` names a directory when it ends with a path separator, is an existing
        directory, or the sink's parallelism is above 1: subtask ``i`` writes file ``i + 1`` in
        it (Flink's layout; ``"out/"`` at parallelism 1 gives ``out/1``). Else it names the one
        file written. Existing output is overwritten, never refused: the directory is made if
        missing, each part file replaced, and numbered part files beyond the sink's parallelism
        (an earlier run's) removed, so the directory's part files are this run's output; files
        of other names are left alone. A relative ``path`` is made absolute now (see
        :class:`StreamEnvironment`).

        With checkpointing (``env.enable_checkpointing``, on a cluster) it is an exactly-once
        two-phase sink and ``path`` is always a directory: each subtask writes hidden
        in-progress files, which become ``part-<subtask>-<checkpoint>`` when the checkpoint
        that covers them completes; after any failure nothing is visible twice."""
        text = os.fspath(path)
        if not isinstance(text, str) or not text:
            raise TypeError("write_text: path must be a non-empty str or path-like")
        directory = text.endswith(("/", os.sep)) or os.path.isdir(text)
        params = {"sink": "text", "path": os.path.abspath(text), "directory": directory}
        return self._sink("Text", params)

    def sink_to(self, sink: TransactionalSink) -> DataStreamSink:
        """Write into ``sink``, a :class:`~pydispatch.stream.TransactionalSink` of one's own:
        its transactions are pre-committed at each checkpoint's barrier and committed when
        the checkpoint completes (exactly once with ``env.enable_checkpointing``); each
        subtask has its own copy of ``sink``."""
        if not isinstance(sink, TransactionalSink):
            raise TypeError(f"sink_to takes a TransactionalSink, not {type(sink).__name__}")
        return self._sink(type(sink).__name__, {"sink": "transactional", "transactional": sink})

    def for_each(self, function: Callable[[Any], object]) -> DataStreamSink:
        """Call ``function(record)`` for every record, in the sink's subtask."""
        return self._sink("For Each", {"sink": "for_each"}, check_callable(function, "for_each"))


class KeyedStream(DataStream):
    """A stream partitioned by key: ``reduce``, ``sum``, ``min``, ``max``, ``count``, the
    windows and ``process`` apply; other operators after it read it hash-partitioned."""

    @property
    def key(self) -> KeySpec:
        return self._keyed("key")


class WindowedStream(_Aggregations):
    """A keyed stream cut into tumbling windows; an aggregation closes it."""

    def __init__(self, stream: DataStream, key: KeySpec, window: dict[str, Any]) -> None:
        self._stream = stream
        self._key = key
        self._window = window

    def _aggregate(self, agg: str, field: int | str | None, function: Any = None) -> DataStream:
        schema = self._stream.schema
        check_field(field, schema, agg)
        params = {**self._window, "agg": agg, "field": field, "key": self._key}
        size = self._window["size"]
        name = f"Window({self._window['window']} {size}, {agg})"
        return self._stream._then("window", name, function, params=params, schema=Schema())


class DataStreamSink:
    """A sink operator: it may be named and given a parallelism."""

    def __init__(self, env: StreamEnvironment, op_id: int) -> None:
        self._env = env
        self.id = op_id

    def _stream(self) -> DataStream:
        return DataStream(self._env, (StreamInput(self.id),), op=self.id)

    def name(self, name: str) -> DataStreamSink:
        self._stream().name(name)
        return self

    def set_parallelism(self, parallelism: int) -> DataStreamSink:
        self._stream().set_parallelism(parallelism)
        return self

    def disable_chaining(self) -> DataStreamSink:
        self._stream().disable_chaining()
        return self
