"""One subtask of a chain, run batch by batch (private; the distributed executor's operators).

The reference executor (``dataflow.local``) hands each subtask its whole input at once; here input
arrives in micro-batches and output leaves as soon as it is made, so state that the reference
keeps for one call lives across batches instead. Results are the same:

- ``map`` / ``flat_map`` / ``filter``: batch by batch, order kept;
- keyed ``aggregate`` on records: one state dict for the subtask's life; batch mode emits one
  result per key (first-seen order) at end of input, streaming mode one update per record;
- keyed ``aggregate`` on columns (sum/min/max/count): a native hash aggregation across batches,
  emitted at end of input (keys sorted), so memory is one row per key; its producers combine
  (pre-aggregate) what they send it, so the shuffle carries partials (``_Combiner``);
- ``window``: count windows fire as they fill; time windows fire when the watermark passes
  them (streaming), else at end of input;
- ``process``: a ``KeyedProcessFunction`` per record; its timers fire on watermarks, on the
  clock (``timer_wait`` / ``fire_timers`` wake an idle subtask) and at end of input
  (``dataflow.process``);
- sinks: ``collect`` keeps the subtask's batches; ``for_each`` calls at once; ``text`` writes
  as batches come (the file is created even for an empty input, as the reference does).

The keyed operators' state (``dataflow.keyed_operators``, ``dataflow.process``) is cut by key
group by :meth:`SubtaskRunner.snapshot_state` and loaded, for the key groups the subtask owns,
by :meth:`SubtaskRunner.restore_state` (``dataflow.keyed_state``).

Routing is ``dataflow.routing``'s, split by ``partition.split`` / ``scatter`` as in the reference;
rebalance and rescale continue their round robin across batches (the ``start`` argument).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from ..partition import broadcast, rescale, rescale_targets, round_robin, scatter, split
from ..plan import ExecutionGraph
from ..plan._job_graph import JobGraph, KeySpec, Operator
from .barriers import SinkTransactions
from .combiners import ColumnCombiner, RecordCombiner, combines, partial_records
from .file_sink import TransactionalSink, TwoPhaseFileSink
from .fusion import fused_runs
from .keyed_operators import Aggregate, ColumnAggregate, CountWindow, KeyedOperator, TimeWindow
from .keyed_state import KeyedSnapshot, owned_groups
from .operators import (
    STATELESS,
    Batch,
    call_each,
    getter,
    rows,
    size,
    text_sink_path,
    transform,
)
from .positions import PositionedReader, source_batches
from .process import KeyedProcess
from .routing import custom_subtasks, key_array, keyed_subtasks, max_parallelism
from .snapshots import RestorePart, Snapshot, dump_snapshot

__all__ = ["Mark", "Send", "SubtaskRunner", "commits_on_checkpoints", "source_batches"]

#: Emits ``(edge, target subtask index, batch)`` to a downstream subtask.
Send = Callable[[int, int, Batch], None]
#: Emits ``(edge, target subtask index, watermark)``: no record of that channel will have an
#: earlier event time (each channel's timestamps are taken to ascend, Flink's
#: ``forMonotonousTimestamps``).
Mark = Callable[[int, int, Any], None]


def commits_on_checkpoints(job: JobGraph, checkpointing: bool) -> bool:
    """Whether ``job`` has a transactional sink whose commits wait for checkpoints (a
    ``sink_to``'s, ``write_text``'s when the job checkpoints)."""
    sinks = [op.params["sink"] for op in job.operators if op.kind == "sink"]
    return checkpointing and any(s == "transactional" or s == "text" for s in sinks)


class SubtaskRunner:
    """Subtask ``index`` of one chain: feed it batches (``push``), then ``finish`` it.

    ``send`` delivers a routed part to a downstream subtask; ``collected`` holds the collect
    sinks' batches; ``records_in`` / ``records_out`` count per operator id."""

    def __init__(
        self,
        plan: ExecutionGraph,
        chain: int,
        index: int,
        send: Send,
        mark: Mark | None = None,
        *,
        checkpointing: bool = False,
        next_checkpoint: int = 1,
    ) -> None:
        self.plan = plan
        self.job = job = plan.job
        self.chain = plan.chains[chain]
        self.index = index
        self.parallelism = self.chain.parallelism
        self.send = send
        streaming = plan.runtime_mode == "streaming"
        members = set(self.chain.operators)
        self.chained_out: dict[int, list[int]] = {o: [] for o in members}
        self.exchange_out: dict[int, list[int]] = {o: [] for o in members}
        for e, edge in enumerate(job.edges):
            if edge.source in members:
                (self.chained_out if plan.chained[e] else self.exchange_out)[edge.source].append(e)
        self.state: dict[int, Any] = {}  # op id -> its KeyedOperator
        self.files: dict[int, IO[str]] = {}
        self.collected: dict[int, list[Batch]] = {}
        self.records_in = dict.fromkeys(self.chain.operators, 0)
        self.records_out = dict.fromkeys(self.chain.operators, 0)
        self.sent: dict[int, int] = {}  # records routed so far, per edge (round robin start)
        self.mark = mark
        # Streaming mode: exchanges into a time window carry watermarks (event time of the
        # window's timestamp field), per edge: the timestamp getter and the last mark sent.
        self.time_of: dict[int, Callable[[Any], Any]] = {}
        self.marked: dict[int, Any] = {}
        # Exchanges into a columnar keyed aggregation that takes partials: their combiners.
        self.combiners: dict[int, ColumnCombiner | RecordCombiner] = {}
        for e in (e for out in self.exchange_out.values() for e in out):
            target = job.operator(job.edges[e].target)
            if combines(plan, target):
                combiner = ColumnCombiner if target.schema.columnar else RecordCombiner
                self.combiners[e] = combiner(target)
            # Event time: into a time window, or a process function given a timestamp.
            stamp = target.params.get("timestamp") if target.kind in ("window", "process") else None
            if streaming and stamp is not None:
                self.time_of[e] = getter(stamp)
        for op_id in self.chain.operators:
            op = job.operator(op_id)
            if op.kind == "aggregate":
                self.state[op_id] = (
                    ColumnAggregate(op, combines(plan, op))
                    if op.schema.columnar
                    else Aggregate(op, streaming, combines(plan, op))
                )
            elif op.kind == "window" and op.params["window"] == "count":
                self.state[op_id] = CountWindow(op)
            elif op.kind == "window":
                window = self.state[op_id] = TimeWindow(op)
                if streaming:
                    window.channels = self._channels_into(op_id)
            elif op.kind == "process":
                process = self.state[op_id] = KeyedProcess(op, index, self.parallelism)
                process.channels = self._channels_into(op_id)
            elif op.kind == "sink" and op.params["sink"] == "collect":
                self.collected[op_id] = []
        # Transactional sinks (dataflow.file_sink): a sink_to's, and write_text's when the job
        # checkpoints (two-phase: its files become visible with the checkpoint covering them).
        sinks: dict[int, TransactionalSink] = {}
        for op_id in self.chain.operators:
            op = job.operator(op_id)
            if op.kind == "sink" and op.params["sink"] == "transactional":
                sinks[op_id] = op.params["transactional"]
            elif op.kind == "sink" and op.params["sink"] == "text" and checkpointing:
                sinks[op_id] = TwoPhaseFileSink(op.params["path"])
        self.transactions = SinkTransactions(sinks, index, self.parallelism, next_checkpoint)
        self.checkpointing = checkpointing
        self.position: Any = None  # a restored source's position
        # Stateless record operators run as one native pass (dataflow.fusion).
        self.fused = fused_runs(
            plan, list(self.chain.operators), self.chained_out, self.exchange_out, self.combiners
        )

    # -- keyed state snapshots (dataflow.keyed_state) ------------------------------------------

    def snapshot_state(self) -> dict[int, KeyedSnapshot]:
        """Every keyed operator's state, by operator id, cut by key group. Call it between
        batches (on the subtask's own thread): it reads the state as it is then. The partials
        its combiners hold are sent first (so they precede a barrier sent after this call, and
        the consumer's snapshot has them)."""
        for e, combiner in self.combiners.items():
            partial = combiner.flush()
            if partial is not None:
                self._route_parts(e, partial)
        out: dict[int, KeyedSnapshot] = {}
        for op_id, state in self.state.items():
            keyed: KeyedOperator = state
            out[op_id] = KeyedSnapshot(
                max_parallelism(self.job.operator(op_id)), keyed.snapshot_groups()
            )
        return out

    def restore_state(self, parts: dict[int, list[KeyedSnapshot]]) -> None:
        """Load, before any input, the key groups this subtask owns out of ``parts``: every
        snapshot of each keyed operator from a previous run, at any parallelism (rescaling).
        Operators of this chain missing from ``parts`` start empty; ids of other chains are
        ignored (the same ``parts`` serves every subtask of the job)."""
        for op_id, snapshots in parts.items():
            state = self.state.get(op_id)
            if state is None:
                continue
            op = self.job.operator(op_id)
            groups = owned_groups(snapshots, max_parallelism(op), self.index, self.parallelism)
            try:
                state.restore_groups(groups)
            except Exception as exc:  # another job's snapshot, or another operator's
                raise ValueError(
                    f"cannot restore {op.name} (operator {op_id}) from its snapshot: {exc!r}"
                ) from exc

    def _channels_into(self, op_id: int) -> int:
        plan = self.plan
        gid = plan.subtask(self.chain.id, self.index)
        targets = np.array([x.target for x in plan.exchanges], dtype=np.int64)
        into = (plan.channel_dst == gid) & (targets[plan.channel_exchange] == op_id)
        return int(np.count_nonzero(into))

    def watermarks(self) -> dict[int, tuple[float, float]]:
        """Each time window's watermark and the newest mark of any of its input channels,
        once every channel has marked (numeric event times only): their difference is how
        far the slowest input trails in event time, what holds windows back."""
        found: dict[int, tuple[float, float]] = {}
        for op_id, state in list(self.state.items()):
            # Whatever keeps marks per input channel (time windows), by what it keeps.
            by_channel = getattr(state, "marks", None)
            if not isinstance(by_channel, dict) or not by_channel:
                continue
            marks = list(by_channel.values())
            channels = int(getattr(state, "channels", 0))
            if len(marks) < channels or not all(isinstance(m, int | float) for m in marks):
                continue
            found[op_id] = (float(min(marks)), float(max(marks)))
        return found

    def watermark(self, op_id: int, channel: Any, mark: Any) -> None:
        """A watermark arriving at time window or process function ``op_id`` from input
        ``channel``."""
        window = self.state[op_id]
        assert isinstance(window, TimeWindow | KeyedProcess)
        out = window.advance(channel, mark)
        if out:
            self.records_out[op_id] += len(out)
            self._forward(op_id, out)

    def timer_wait(self) -> float | None:
        """Seconds until this subtask's earliest processing-time timer (0 if due), or None:
        how long its input loop may wait for input before calling :meth:`fire_timers`."""
        waits = [
            wait
            for state in self.state.values()
            if isinstance(state, KeyedProcess)
            for wait in [state.timer_wait()]
            if wait is not None
        ]
        # At most a minute: a timer years ahead must not overflow a poll's milliseconds.
        return min(*waits, 60.0) if waits else None

    def fire_timers(self) -> None:
        """Fire the processing-time timers whose time has come, and forward what they emit."""
        for op_id, state in self.state.items():
            if isinstance(state, KeyedProcess):
                out = state.tick()
                if out:
                    self.records_out[op_id] += len(out)
                    self._forward(op_id, out)

    @property
    def head(self) -> Operator:
        return self.job.operator(self.chain.operators[0])

    def run_source(
        self,
        batch_records: int,
        cancelled: Callable[[], bool],
        between: Callable[[PositionedReader], None] | None = None,
    ) -> None:
        """Read the source and push its batches down the chain; ``between(reader)`` is called
        before the first batch and after each (where a checkpoint's barrier may go)."""
        head = self.head
        reader = PositionedReader(head.params, self.index, self.parallelism, self.position)
        if between is not None:
            between(reader)
        for batch in reader.batches(batch_records):
            if cancelled():
                return
            if size(batch):
                self.records_out[head.id] += size(batch)
                self._forward(head.id, batch)
            if between is not None:
                between(reader)

    # -- checkpoints (dataflow.checkpoints; the slice sends barriers and acks) ---------------

    def snapshot(self, checkpoint: int, position: Any = None, final: bool = False) -> bytes:
        """This subtask's snapshot of ``checkpoint`` (its barrier is here: what came before
        is in it), its sinks' transactions pre-committed; partial pre-aggregates go out first
        (they belong before the barrier, which the caller sends after this returns).
        ``final``: the subtask has finished; its keyed state is left out (everything it
        would emit from it has gone downstream: a restore must not emit it again)."""
        keyed = {} if final else self.snapshot_state()  # (flushes the combiners first)
        taken = Snapshot(
            tuple(self.chain.operators),
            self.index,
            self.parallelism,
            checkpoint,
            position,
            keyed,
            {op_id: [b for b in batches if size(b)] for op_id, batches in self.collected.items()},
            self.transactions.pre_commit(checkpoint),
        )
        return dump_snapshot(taken)

    def restore(self, part: RestorePart) -> None:
        """Start from a checkpoint's share (before any input)."""
        if part.keyed:
            self.restore_state(part.keyed)
        for op_id, batches in part.collected.items():
            if op_id in self.collected:
                self.collected[op_id] = list(batches)
        self.position = part.position
        self.transactions.next_id = max(self.transactions.next_id, part.checkpoint + 1)
        self.transactions.recover(part.transactions)

    def checkpoint_complete(self, checkpoint: int) -> None:
        self.transactions.commit(checkpoint)

    def push(self, op_id: int, batch: Batch) -> None:
        """Process ``batch`` arriving at operator ``op_id`` of this chain."""
        fused = self.fused.get(op_id)
        if fused is not None and isinstance(batch, list):
            fused_out = fused.run(batch, self.records_in, self.records_out)
            if fused_out and fused.combiner is not None:
                self._route_parts(fused.edge, fused_out)
            elif fused_out:
                self._forward(fused.ops[-1], fused_out)
            return
        op = self.job.operator(op_id)
        state = self.state.get(op_id)
        if isinstance(state, ColumnAggregate) and isinstance(batch, dict):
            self.records_in[op_id] += state.push(batch)
            return
        if isinstance(state, Aggregate) and state.partials and isinstance(batch, list):
            self.records_in[op_id] += partial_records(batch)
        else:
            self.records_in[op_id] += size(batch)
        out = self._apply(op, batch)
        if size(out):
            self.records_out[op_id] += size(out)
            self._forward(op_id, out)

    def finish(self) -> None:
        """End of input: flush stateful operators in chain order (upstream first)."""
        for op_id in self.chain.operators:
            op = self.job.operator(op_id)
            state = self.state.get(op_id)
            if state is not None:
                out = state.finish()
                if size(out):
                    self.records_out[op_id] += size(out)
                    self._forward(op_id, out)
            elif op.kind == "sink" and op.id in self.transactions.sinks:
                pass  # committed below
            elif op.kind == "sink" and op.params["sink"] == "text":
                self._text_file(op).close()
        if not self.checkpointing:
            self.transactions.finish()
        # Checkpointing: what the sinks wrote last stays open, to be pre-committed by the
        # first checkpoint taken after this subtask's end and committed when it completes
        # (Flink's final checkpoint): committed now, a restore from an earlier checkpoint
        # would write it again (dataflow.slice waits for that checkpoint).
        for e, combiner in self.combiners.items():
            partial = combiner.flush()
            if partial is not None:
                self._route_parts(e, partial)

    # -- operators ------------------------------------------------------------------------

    def _apply(self, op: Operator, data: Batch) -> Batch:
        kind = op.kind
        if kind in STATELESS:
            return transform(op, data)
        if kind == "aggregate":
            state = self.state[op.id]
            if isinstance(state, ColumnAggregate):
                return []  # an empty record batch (push folds in column batches)
            out: Batch = state.push(rows(data))
            return out
        if kind == "process":
            processed: Batch = self.state[op.id].push(rows(data))
            return processed
        if kind == "window":
            window = self.state[op.id]
            columnar = isinstance(window, TimeWindow) and isinstance(data, dict)
            if columnar and window.push_columns(data):
                return []
            windowed: Batch = window.push(rows(data))
            return windowed
        if kind == "sink":
            sink = op.params["sink"]
            if op.id in self.transactions.sinks:
                self.transactions.write(op.id, rows(data))
            elif sink == "collect":
                self.collected[op.id].append(data)
            elif sink == "for_each":
                call_each(op, data)
            else:
                self._text_file(op).writelines(f"{r}\n" for r in rows(data))
            return []
        raise ValueError(f"unknown operator kind {kind!r}")

    def _text_file(self, op: Operator) -> IO[str]:
        handle = self.files.get(op.id)
        if handle is None:
            path = text_sink_path(op, self.index, self.parallelism)
            handle = self.files[op.id] = open(path, "w", encoding="utf-8")  # noqa: SIM115
        return handle

    def open_files(self) -> None:
        """Create text sinks' files now, so an empty input still leaves an (empty) file."""
        for op_id in self.chain.operators:
            op = self.job.operator(op_id)
            if (
                op.kind == "sink"
                and op.params["sink"] == "text"
                and op_id not in self.transactions.sinks
            ):
                self._text_file(op)

    def close_files(self) -> None:
        for handle in self.files.values():
            handle.close()

    # -- routing --------------------------------------------------------------------------

    def _forward(self, op_id: int, out: Batch) -> None:
        for e in self.chained_out[op_id]:
            self.push(self.job.edges[e].target, out)
        for e in self.exchange_out[op_id]:
            self._route(e, out)

    def _route(self, e: int, batch: Batch) -> None:
        combiner = self.combiners.get(e)
        if combiner is not None:  # into an aggregation: no watermarks to send
            partial: Batch | None = None
            # Two branches, not one `or`: each narrows both types for the type checker.
            if isinstance(combiner, ColumnCombiner) and isinstance(batch, dict):  # noqa: SIM114
                partial = combiner.push(batch)
            elif isinstance(combiner, RecordCombiner) and isinstance(batch, list):
                partial = combiner.push(batch)
            if partial is not None:
                self._route_parts(e, partial)
            return
        self._route_parts(e, batch)
        time_of = self.time_of.get(e)
        if time_of is None or self.mark is None or not size(batch):
            return
        mark = max(time_of(r) for r in rows(batch))
        if e in self.marked and mark <= self.marked[e]:
            return
        self.marked[e] = mark
        edge = self.job.edges[e]
        kind = self.plan.edge_partitioning[e]
        q = self.job.operator(edge.target).parallelism
        p, index = self.parallelism, self.index
        targets = (
            range(index, index + 1)
            if kind == "forward"
            else rescale_targets(index, p, q)
            if kind == "rescale"
            else range(q)
        )
        for t in targets:  # every channel of the edge, data or not: the consumer's min moves
            self.mark(e, t, mark)

    def _route_parts(self, e: int, batch: Batch) -> None:
        edge = self.job.edges[e]
        kind = self.plan.edge_partitioning[e]
        target = self.job.operator(edge.target)
        q = target.parallelism
        n = size(batch)
        index, p = self.index, self.parallelism
        if kind == "forward":
            if n:
                self.send(e, index, batch)
            return
        if kind == "broadcast":
            parts = broadcast(batch, q) if isinstance(batch, dict) else [list(batch)] * q
            for t in range(q):
                self.send(e, t, parts[t])
            return
        targets: range = range(q)
        start = self.sent.get(e, 0)
        self.sent[e] = start + n
        ids: npt.NDArray[np.int32]
        if kind == "rebalance":
            ids = round_robin(n, q, start=index + start)
        elif kind == "rescale":
            ids = rescale(n, index, p, q, start=start)
            targets = rescale_targets(index, p, q)
        elif kind == "hash":
            assert edge.key is not None
            if isinstance(self.combiners.get(e), RecordCombiner):
                keys = key_array([p[0] for p in batch], edge.key.scheme)  # partial records
            else:
                keys = _keys(edge.key, batch)
            ids = keyed_subtasks(keys, edge.key.scheme, q, max_parallelism(target))
        else:  # custom
            assert edge.key is not None
            assert edge.partitioner is not None
            if isinstance(batch, dict) and edge.key.kind == "column":
                values = batch[str(edge.key.selector)].tolist()
            else:
                get = getter(edge.key)
                values = [get(r) for r in rows(batch)]
            ids = custom_subtasks(values, edge.partitioner, q)
        if isinstance(batch, dict):
            split_parts: list[Batch] = list(split(batch, ids, q))
        else:
            order, offsets = scatter(ids, q)
            positions = order.tolist()
            bounds = offsets.tolist()
            split_parts = [
                [batch[j] for j in positions[bounds[t] : bounds[t + 1]]] for t in range(q)
            ]
        for t in targets:
            if size(split_parts[t]):
                self.send(e, t, split_parts[t])


def _keys(spec: KeySpec, data: Batch) -> Any:
    if isinstance(data, dict) and spec.kind == "column":
        return data[str(spec.selector)]
    get = getter(spec)
    return key_array([get(r) for r in rows(data)], spec.scheme)
