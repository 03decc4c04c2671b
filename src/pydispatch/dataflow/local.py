"""The reference executor: a job run in this process, one subtask at a time.

This is ``StreamEnvironment()``'s in-process mode, and the yardstick for the distributed
executor: it plans the job exactly as a cluster would (``pydispatch.plan``), runs chains in
topological order and each chain's subtasks in index order, and moves every batch between
subtasks with the real partitioning functions of :mod:`pydispatch.partition`:

- ``forward``: subtask i -> i; ``rebalance``: :func:`~pydispatch.partition.round_robin` starting
  at the upstream subtask's index (Flink starts at a random channel; a fixed one keeps runs
  reproducible); ``rescale``: :func:`~pydispatch.partition.rescale`;
- ``hash``: key groups, then the subtask owning each key group (``pydispatch.dataflow.routing``:
  Flink's scheme over pydispatch's hash or Flink's own); the keyed operator checks that every key
  group it sees is in its :func:`~pydispatch.partition.key_group_range`;
- ``broadcast``: the whole batch to every consumer; ``custom``: the user's partitioner;
- batches are cut with :func:`~pydispatch.partition.split` (columns) or
  :func:`~pydispatch.partition.scatter` (record lists), which keep input order per target.

A ``process`` operator (a ``KeyedProcessFunction``) gets its input channel by channel:
``dataflow.process.run_reference`` merges them by event time and moves the watermark between
records, so its timers fire as a pipelined run's would.

Every subtask receives its whole input before it runs (a blocking exchange): results equal a
pipelined run's for bounded jobs; rolling aggregations of a streaming job see their input in the
same per-channel order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..partition import (
    broadcast,
    key_group_range,
    rescale,
    rescale_targets,
    round_robin,
    scatter,
    split,
)
from ..plan import ExecutionGraph, _sources
from ..plan._job_graph import JobGraph, KeySpec, Operator
from .operators import (
    STATELESS,
    Batch,
    aggregate_columns,
    aggregate_records,
    call_each,
    concat,
    getter,
    rows,
    size,
    text_sink_path,
    transform,
    window_records,
)
from .process import run_reference
from .routing import custom_subtasks, key_array, key_groups_of, keyed_subtasks, max_parallelism

__all__ = ["LocalResult", "run_local"]


@dataclass
class LocalResult:
    """Per operator id: collected records (collect sinks), records in and out.

    ``subtask_results``: per collect sink, what each of its subtasks received (index order),
    for checking which subtask got which records. ``channel_records``: records sent over each
    channel used, by ``(edge index, upstream subtask index, downstream subtask index)``."""

    name: str
    runtime_mode: str
    collected: dict[int, Any] = field(default_factory=dict)
    subtask_results: dict[int, list[Batch]] = field(default_factory=dict)
    records_in: dict[int, int] = field(default_factory=dict)
    records_out: dict[int, int] = field(default_factory=dict)
    channel_records: dict[tuple[int, int, int], int] = field(default_factory=dict)


def run_local(job: JobGraph, *, name: str = "job", chaining: bool = True) -> LocalResult:
    """Run a bounded ``job`` to completion in this process (see the module docstring)."""
    return _Runner(ExecutionGraph(job, chaining=chaining), name).run()


class _Runner:
    def __init__(self, plan: ExecutionGraph, name: str) -> None:
        self.plan = plan
        self.job = plan.job
        self.name = name
        self.streaming = plan.runtime_mode == "streaming"
        self.in_edges = [[] for _ in self.job.operators]  # type: list[list[int]]
        self.out_edges = [[] for _ in self.job.operators]  # type: list[list[int]]
        for i, e in enumerate(self.job.edges):
            self.in_edges[e.target].append(i)
            self.out_edges[e.source].append(i)
        # (edge, downstream index) -> [(upstream index, batch)]
        self.inbox: dict[tuple[int, int], list[tuple[int, Batch]]] = {}
        self.sink_parts: dict[int, dict[int, Batch]] = {}
        self.result = LocalResult(name, plan.runtime_mode)
        for op in self.job.operators:
            self.result.records_in[op.id] = 0
            self.result.records_out[op.id] = 0

    def run(self) -> LocalResult:
        for chain in self.plan.chains:
            for index in range(chain.parallelism):
                self._run_subtask(chain.operators, index, chain.parallelism)
        for op_id, parts in self.sink_parts.items():
            batches = [parts[i] for i in sorted(parts)]
            self.result.subtask_results[op_id] = batches
            op = self.job.operator(op_id)
            if op.params.get("columnar"):
                self.result.collected[op_id] = concat(batches) if batches else {}
            else:
                self.result.collected[op_id] = [r for b in batches for r in rows(b)]
        return self.result

    def _run_subtask(self, operators: tuple[int, ...], index: int, parallelism: int) -> None:
        outputs: dict[int, Batch] = {}
        for op_id in operators:
            op = self.job.operator(op_id)
            batches: list[Batch] = []
            for e in self.in_edges[op_id]:
                if self.plan.chained[e]:
                    batches.append(outputs[self.job.edges[e].source])
                else:
                    received = self.inbox.pop((e, index), [])
                    batches.extend(b for _, b in sorted(received, key=lambda t: t[0]))
            data = concat(batches)
            self.result.records_in[op_id] += size(data)
            if op.kind == "process":  # its input channels one by one (event time)
                self._check_key_groups(op, data, index, parallelism)
                channels = [rows(b) for b in batches]
                out: Batch = run_reference(op, channels, index, parallelism, self.streaming)
            else:
                out = self._apply(op, data, index, parallelism)
            self.result.records_out[op_id] += size(out)
            outputs[op_id] = out
            for e in self.out_edges[op_id]:
                if not self.plan.chained[e]:
                    self._route(e, out, index, parallelism)

    # -- operators ------------------------------------------------------------------------

    def _apply(self, op: Operator, data: Batch, index: int, parallelism: int) -> Batch:
        kind = op.kind
        if kind in STATELESS:
            return transform(op, data)
        if kind == "source":
            return _sources.read_split(op.params, index, parallelism)
        if kind == "aggregate":
            self._check_key_groups(op, data, index, parallelism)
            if op.schema.columnar and isinstance(data, dict):
                return aggregate_columns(op, data)
            return aggregate_records(op, rows(data), self.streaming)
        if kind == "window":
            self._check_key_groups(op, data, index, parallelism)
            return window_records(op, rows(data))
        if kind == "sink":
            self._sink(op, data, index, parallelism)
            return []
        raise ValueError(f"unknown operator kind {kind!r}")

    def _check_key_groups(self, op: Operator, data: Batch, index: int, parallelism: int) -> None:
        """Keyed state is sharded by key group: every key must be in one this subtask owns."""
        if size(data) == 0:
            return
        spec: KeySpec = op.params["key"]
        mp = max_parallelism(op)
        groups = key_groups_of(self._keys(spec, data), spec.scheme, mp)
        owned = key_group_range(index, parallelism, mp)
        if groups.min() < owned.start or groups.max() >= owned.stop:
            raise RuntimeError(f"{op.name} subtask {index} got a key outside key groups {owned}")

    def _sink(self, op: Operator, data: Batch, index: int, parallelism: int) -> None:
        kind = op.params["sink"]
        if kind == "collect":
            self.sink_parts.setdefault(op.id, {})[index] = data
        elif kind == "for_each":
            call_each(op, data)
        elif kind == "transactional":  # one transaction, committed at the end
            sink = op.params["transactional"]
            transaction = sink.begin(index, parallelism, 1)
            sink.write(transaction, rows(data))
            sink.pre_commit(transaction)
            sink.commit(transaction)
        else:  # text
            with open(text_sink_path(op, index, parallelism), "w", encoding="utf-8") as f:
                f.writelines(f"{r}\n" for r in rows(data))

    # -- exchanges ------------------------------------------------------------------------

    @staticmethod
    def _keys(spec: KeySpec, data: Batch) -> Any:
        if isinstance(data, dict) and spec.kind == "column":
            return data[str(spec.selector)]
        get = getter(spec)
        return key_array([get(r) for r in rows(data)], spec.scheme)

    def _route(self, e: int, batch: Batch, index: int, parallelism: int) -> None:
        edge = self.job.edges[e]
        kind = self.plan.edge_partitioning[e]
        target = self.job.operator(edge.target)
        q = target.parallelism
        n = size(batch)
        targets: range = range(q)
        ids: npt.NDArray[np.int32] | None = None
        if kind == "forward":
            self._deliver(e, index, index, batch)
            return
        if kind == "broadcast":
            parts = (
                broadcast(batch, q) if isinstance(batch, dict) else [list(batch) for _ in targets]
            )
            for t in targets:
                self._deliver(e, index, t, parts[t])
            return
        if kind == "rebalance":
            ids = round_robin(n, q, start=index)
        elif kind == "rescale":
            ids = rescale(n, index, parallelism, q)
            targets = rescale_targets(index, parallelism, q)
        elif kind == "hash":
            assert edge.key is not None
            keys = self._keys(edge.key, batch)
            ids = keyed_subtasks(keys, edge.key.scheme, q, max_parallelism(target))
        else:  # custom
            assert edge.key is not None
            assert edge.partitioner is not None
            ids = self._custom_ids(edge.key, edge.partitioner, batch, q)
        self._split_to(e, index, batch, ids, q, targets)

    def _custom_ids(
        self, key: KeySpec, partitioner: Callable[[Any, int], int], batch: Batch, q: int
    ) -> npt.NDArray[np.int32]:
        if isinstance(batch, dict) and key.kind == "column":
            values = batch[str(key.selector)].tolist()
        else:
            get = getter(key)
            values = [get(r) for r in rows(batch)]
        return custom_subtasks(values, partitioner, q)

    def _split_to(
        self, e: int, index: int, batch: Batch, ids: npt.NDArray[np.int32], q: int, targets: range
    ) -> None:
        if isinstance(batch, dict):
            parts: list[Batch] = list(split(batch, ids, q))
        else:
            order, offsets = scatter(ids, q)
            positions = order.tolist()
            bounds = offsets.tolist()
            parts = [[batch[j] for j in positions[bounds[t] : bounds[t + 1]]] for t in range(q)]
        for t in targets:
            self._deliver(e, index, t, parts[t])

    def _deliver(self, e: int, src: int, dst: int, batch: Batch) -> None:
        self.inbox.setdefault((e, dst), []).append((src, batch))
        channel = (e, src, dst)
        self.result.channel_records[channel] = self.result.channel_records.get(channel, 0) + size(
            batch
        )
