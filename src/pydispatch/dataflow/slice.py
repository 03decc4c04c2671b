"""A slice of a dataflow job in a worker slot (private; the distributed executor's data plane).

With slot sharing, slice ``i`` of a job is subtask ``i`` of every chain (Flink's default
slot-sharing group): it runs as ONE dispatcher task in one slot, each subtask in its own
thread. Start-up is a barrier with the job master: every subtask with inputs binds a ROUTER
data socket, the slice reports the endpoints (``ready``), and the master answers with every
subtask's endpoint (``peers``) once all slices of the attempt are up. Then:

- a producer connects one DEALER (identity = its global subtask id) to each downstream subtask
  it feeds and sends ``protocol.BatchData`` headers (``transport.batch_message``): numpy columns
  as raw frames (no copies), records (user objects) as a pickled frame;
- credit-based flow control: a producer starts with ``credits`` batches per downstream
  subtask and may send only while it has some; the consumer returns one ``Credit`` per
  batch once it has processed it. A slow consumer thus stops its producers, which stop reading
  their own input, back to the sources: at most ``credits`` batches are ever queued on a
  connection, so memory stays bounded whatever the speeds;
- end of input: a producer sends ``EndOfInput`` on each of its channels after its last batch; a
  consumer finishes (flushing its keyed state) once every input channel has ended. A job with
  transactional sinks that checkpoints: the slice then waits for a checkpoint holding its
  subtasks' final states, whose completion commits their sinks' last transactions.

Control messages to and from the master are ``protocol.JobMessage`` structs, never pickles;
a malformed message on a data socket is logged and dropped.

The slice returns what its collect sinks received (pickled by the slice: the master passes it
on unread) and its metrics as the task's result. Every
message carries nothing of the attempt: each attempt binds fresh sockets, so stale traffic of
an earlier attempt cannot reach it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from ..plan import ExecutionGraph, _files
from ..plan._job_graph import JobGraph
from ..plan._sources import MappedColumn
from ..wire import data_plane as dp
from ..wire import job_plane as jp
from ..wire import protocol as p
from ..wire import transport
from ..wire.addresses import (
    ADVERTISE_ENV,
    LOOPBACK,
    await_connections,
    connection_watch,
    url_host,
)
from ..wire.security import Gate, connect_curve, serve_curve
from . import snapshots
from .barriers import Aligner
from .operators import Batch, concat, size
from .positions import PositionedReader
from .slice_results import PickledCollected, collect_dir
from .subtask import SubtaskRunner, commits_on_checkpoints

__all__ = [
    "PathUnavailableError",
    "SliceSpec",
    "SubtaskMetrics",
    "check_paths",
    "figures",
    "run_slice",
]

log = logging.getLogger(__name__)

_CREDIT = p.encode(dp.Credit())
_ACK_TIMEOUT_MS = 10_000
# A master whose connection dropped and did not come back for this long (at most the job's
# master_timeout) is dead: a master never comes back at its endpoint (a restarted dispatcher
# starts a new one elsewhere), and the slot should go to the job's next attempt at once.
_MASTER_LOST = 3.0
_KILL_WAIT = 60.0
_REPORT_EVERY = 0.5  # seconds between a running slice's metric reports to its master
_INBOX_QUEUE = 1000  # messages queued per producer on an inbox, at most
_IDLE_POLL_MS = 50  # an idle consumer looks for completed checkpoints this often
#: A subtask's acknowledgement: checkpoint, snapshot, its sinks' fsyncs still under way.
_Ack = tuple[int, bytes, list[Future[None]]]


class PathUnavailableError(OSError):
    """A file a slice's sources or sinks name is not there, or not readable or writable, on
    this worker: no restart can help, so the job master fails the job at once."""


def check_paths(plan: ExecutionGraph, slice_index: int) -> None:
    """Raise :class:`PathUnavailableError` for the first path of this slice's text and CSV
    sources and text sinks that this machine cannot use (paths are absolute: resolved where
    the job was built). Checked before the slice starts, so a worker without the shared file
    system fails the job with the path rather than after a restart's delay."""
    for chain in plan.chains:
        if chain.parallelism <= slice_index:
            continue
        for op_id in chain.operators:
            op = plan.job.operator(op_id)
            if op.kind == "source" and op.params["source"] == "arrays":
                for column in op.params["columns"].values():
                    if isinstance(column, MappedColumn) and not os.path.isfile(column.path):
                        raise PathUnavailableError(
                            f"cannot read the job's arrays at {column.path}: the client wrote "
                            "them to its host's shared memory, not this worker's"
                        )
            elif op.kind == "source" and op.params["source"] in ("text", "csv"):
                for path in op.params["paths"]:
                    reason = _files.unreadable(path)  # a local path, or an fsspec URL
                    if reason is not None:
                        raise PathUnavailableError(f"cannot read {path}: {reason}")
            elif op.kind == "sink" and op.params["sink"] == "text":
                path = op.params["path"]
                directory = op.params.get("directory") or chain.parallelism > 1
                # The sink makes a directory of its own, so the nearest existing one counts.
                where = path if directory or os.path.isdir(path) else os.path.dirname(path)
                while directory and not os.path.exists(where) and where != os.path.dirname(where):
                    where = os.path.dirname(where)
                if not os.path.isdir(where):
                    raise PathUnavailableError(f"cannot write {path}: no directory {where}")
                if not os.access(where, os.W_OK | os.X_OK):
                    raise PathUnavailableError(f"cannot write {path}: {where} is not writable")


@dataclass(frozen=True)
class SliceSpec:
    """What every slice of a job needs (pickled once per job by the master)."""

    job: JobGraph
    chaining: bool = True
    batch_records: int = 4096
    credits: int = 8
    data_host: str = "127.0.0.1"
    # A slice whose master is silent this long (the driver process died) ends itself, so
    # that a lost driver does not hold slots for ever. The master answers every report.
    master_timeout: float = 60.0
    # With keys: the job's key pair (public, secret), issued by the dispatcher. The master's
    # control socket and every inbox of the job serve with it and accept only it; slices
    # connect with it. It reaches the slot inside this task, over CURVE.
    job_key: tuple[str, str] | None = None
    # The job takes checkpoints (dataflow.checkpoints): sources take triggers, operators
    # align barriers, text sinks write two-phase.
    checkpointing: bool = False


@dataclass
class SubtaskMetrics:
    records_in: dict[int, int] = field(default_factory=dict)
    records_out: dict[int, int] = field(default_factory=dict)
    bytes_out: int = 0
    batches_out: int = 0
    busy: float = 0.0
    backpressured: float = 0.0
    max_in_flight: int = 0  # most batches ever sent without their credit back, per channel
    # Bytes of the batches (their frames) sent on each operator's out edges and received on
    # its in edges, by operator id: what crosses between subtasks (chained operators hand
    # records over in memory, and count none).
    operator_bytes_in: dict[int, int] = field(default_factory=dict)
    operator_bytes_out: dict[int, int] = field(default_factory=dict)
    watermarks: dict[int, tuple[float, float]] = field(default_factory=dict)


def figures(m: SubtaskMetrics) -> jp.SubtaskFigures:
    return jp.SubtaskFigures(
        m.records_in,
        m.records_out,
        m.bytes_out,
        m.batches_out,
        m.busy,
        m.backpressured,
        m.max_in_flight,
        m.operator_bytes_in,
        m.operator_bytes_out,
        m.watermarks,
    )


class _Subtask:
    """One subtask's thread: its runner, its input socket and its producer side."""

    def __init__(
        self,
        plan: ExecutionGraph,
        spec: SliceSpec,
        chain: int,
        index: int,
        context: zmq.Context[Any],
        next_checkpoint: int = 1,
    ) -> None:
        self.plan = plan
        self.spec = spec
        self.gid = plan.subtask(chain, index)
        self.context = context
        self.runner = SubtaskRunner(
            plan,
            chain,
            index,
            self._send,
            self._mark,
            checkpointing=spec.checkpointing,
            next_checkpoint=next_checkpoint,
        )
        # Checkpoints: triggers (sources) and completions in from the slice's main thread,
        # snapshots out to it (it alone owns the control socket).
        self.triggers: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.completions: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.acks: queue.SimpleQueue[_Ack] = queue.SimpleQueue()
        self.unsynced: deque[_Ack] = deque()  # acks waiting for their fsyncs (main thread's)
        self.acked = 0  # the latest checkpoint acknowledged
        self.final_ack = 0  # the first checkpoint acknowledged with its final state
        self.final_position: Any = None
        self.metrics = SubtaskMetrics()
        self.expected_ends = int(np.count_nonzero(plan.channel_dst == self.gid))
        self.first_target: dict[int, int] = {}
        for x in plan.exchanges:
            self.first_target[x.edge] = plan.chains[x.target_chain].first_subtask
        self.out_channels = [
            (int(plan.exchanges[int(x)].edge), int(d))
            for x, s, d in zip(
                plan.channel_exchange, plan.channel_src, plan.channel_dst, strict=True
            )
            if s == self.gid
        ]
        self.inbox: zmq.Socket[Any] | None = None
        self.endpoint = ""
        if self.expected_ends:
            # Where this machine's slices bind and are reached: PYDISPATCH_DATA_HOST if set,
            # else the address its worker is reached at (its route to the dispatcher: peers
            # on other hosts reach it), else the job's host.
            host = url_host(
                os.environ.get("PYDISPATCH_DATA_HOST")
                or os.environ.get(ADVERTISE_ENV)
                or spec.data_host
                or LOOPBACK
            )
            self.inbox = context.socket(zmq.ROUTER)
            self.inbox.setsockopt(zmq.LINGER, 0)
            self.inbox.setsockopt(zmq.RCVHWM, _INBOX_QUEUE)  # credits bound it already
            self.inbox.setsockopt(zmq.MAXMSGSIZE, transport.DEFAULT_MAX_MESSAGE_SIZE)
            if spec.job_key is not None:
                serve_curve(self.inbox, *spec.job_key)
            port = self.inbox.bind_to_random_port(f"tcp://{host}")
            self.endpoint = f"tcp://{host}:{port}"
        self.dealers: dict[int, zmq.Socket[Any]] = {}
        self.credits: dict[int, int] = {}
        self.target_of: dict[zmq.Socket[Any], int] = {}
        self.poller = zmq.Poller()
        self.error: str | None = None
        self.started = 0.0
        self.ended = 0.0
        self.waiting = 0.0

    def connect(self, peers: dict[int, str]) -> None:
        """Connect to the inboxes this subtask sends to; a ConnectionError naming those not
        reached within seconds (zmq alone would retry in silence)."""
        watches: dict[str, zmq.Socket[Any]] = {}
        for _, target in self.out_channels:
            if target in self.dealers:
                continue
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, str(self.gid).encode())
            sock.setsockopt(zmq.LINGER, 30_000)
            if self.spec.job_key is not None:
                public, secret = self.spec.job_key
                connect_curve(sock, public, secret, public)
            watches[peers[target]] = connection_watch(sock)
            sock.connect(peers[target])
            self.dealers[target] = sock
            self.target_of[sock] = target
            self.credits[target] = self.spec.credits
            self.poller.register(sock, zmq.POLLIN)
        try:
            await_connections(watches, "the inboxes of the next operators")
        finally:
            for sock in self.dealers.values():
                with contextlib.suppress(zmq.ZMQError):
                    sock.disable_monitor()
            for watch in watches.values():
                watch.close(linger=0)

    # -- producer side --------------------------------------------------------------------

    def _send(self, edge: int, index: int, batch: Batch) -> None:
        target = self.first_target[edge] + index
        if self.credits[target] <= 0:
            self._await_credit(target)
        self.credits[target] -= 1
        in_flight = self.spec.credits - self.credits[target]
        self.metrics.max_in_flight = max(self.metrics.max_in_flight, in_flight)
        header, frames = transport.batch_message(edge, batch)
        size = sum(transport.frame_sizes(frames))
        m = self.metrics
        m.bytes_out += size
        source = self.plan.job.edges[edge].source
        m.operator_bytes_out[source] = m.operator_bytes_out.get(source, 0) + size
        m.batches_out += 1
        transport.send(self.dealers[target], header, frames)

    def _mark(self, edge: int, index: int, mark: Any) -> None:
        # No credit: at most one mark follows each data batch, which credits bound already.
        target = self.first_target[edge] + index
        transport.send(self.dealers[target], *transport.watermark_message(edge, mark))

    def _await_credit(self, target: int) -> None:
        started = time.monotonic()
        while True:
            self._take_credits(block=True)
            if self.credits[target] > 0:
                break
        self.metrics.backpressured += time.monotonic() - started

    def _take_credits(self, block: bool) -> None:
        for sock, _ in self.poller.poll(None if block else 0):
            while True:
                try:
                    # Only the consumer this DEALER connected to sends here, only credits:
                    # each message is one, whatever it holds, so nothing is decoded.
                    sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self.credits[self.target_of[sock]] += 1

    # -- the thread -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = "".join(traceback.format_exception(exc))

    def snapshot(self) -> SubtaskMetrics:
        """Figures so far (read from another thread: counters only grow, keys are fixed)."""
        m = self.metrics
        elapsed = (self.ended or time.monotonic()) - self.started if self.started else 0.0
        return SubtaskMetrics(
            dict(self.runner.records_in),
            dict(self.runner.records_out),
            m.bytes_out,
            m.batches_out,
            max(0.0, elapsed - self.waiting - m.backpressured),
            m.backpressured,
            m.max_in_flight,
            dict(m.operator_bytes_in),
            dict(m.operator_bytes_out),
            self.runner.watermarks(),
        )

    def _run(self) -> None:
        self.started = started = time.monotonic()
        runner = self.runner
        runner.open_files()
        try:
            if runner.head.kind == "source":
                runner.run_source(self.spec.batch_records, lambda: False, self._between)
            else:
                self._consume()
            runner.finish()
        finally:
            runner.close_files()
        for edge, target in self.out_channels:
            transport.send(self.dealers[target], dp.EndOfInput(edge))
        m = self.metrics
        m.records_in = runner.records_in
        m.records_out = runner.records_out
        m.watermarks = runner.watermarks()
        self.ended = time.monotonic()
        m.busy = self.ended - started - self.waiting - m.backpressured

    # -- checkpoints ----------------------------------------------------------------------

    def _between(self, reader: PositionedReader) -> None:
        """A source between two batches: commit what completed, take what was triggered."""
        self._take_completions()
        while True:
            try:
                checkpoint = self.triggers.get_nowait()
            except queue.Empty:
                break
            self.final_position = reader.position()
            self._snapshot(checkpoint, self.final_position)
        self.final_position = reader.position()

    def _take_completions(self) -> None:
        while True:
            try:
                self.runner.checkpoint_complete(self.completions.get_nowait())
            except queue.Empty:
                return

    def _snapshot(self, checkpoint: int, position: Any = None) -> None:
        """Snapshot, then the barrier down every output channel, then the ack."""
        snapshot = self.runner.snapshot(checkpoint, position)
        for edge, target in self.out_channels:
            transport.send(self.dealers[target], dp.Barrier(edge, checkpoint))
        self.acked = checkpoint
        # Its sinks' fsyncs go on in the background: the slice acks once they are done.
        self.acks.put((checkpoint, snapshot, self.runner.transactions.take_durability()))

    def _consume(self) -> None:
        """Read input until every channel has ended (``waiting``: seconds without input)."""
        assert self.inbox is not None
        inbox = self.inbox
        aligner = Aligner(self.expected_ends)
        replay: list[tuple[Any, Any]] = []
        while len(aligner.ended) < self.expected_ends:
            if replay:
                channel, item = replay.pop(0)
                if aligner.holds(channel):
                    aligner.hold(channel, item)
                else:
                    self._message(aligner, replay, *item)
                continue
            if not inbox.poll(0):
                t = time.monotonic()
                # A process function's processing-time timers fire while input is idle too,
                # and an idle sink commits the checkpoints that complete meanwhile.
                wait = self.runner.timer_wait()
                limit = _IDLE_POLL_MS if wait is None else max(1, int(wait * 1000) + 1)
                ready = inbox.poll(min(limit, _IDLE_POLL_MS))
                self.waiting += time.monotonic() - t
                if not ready:
                    self._take_completions()
                    self.runner.fire_timers()
                    continue
            self._take_completions()
            parts = inbox.recv_multipart(copy=False)
            try:
                identity, body = transport.split_envelope(parts, routed=True)
                message, frames = transport.parse_data(body)
            except p.ProtocolError as error:
                log.error("subtask %d dropped a malformed data message: %s", self.gid, error)
                continue
            channel = (identity, getattr(message, "edge", -1))
            if aligner.holds(channel):
                aligner.hold(channel, (identity, message, frames))
                continue
            self._message(aligner, replay, identity, message, frames)

    def _message(
        self,
        aligner: Aligner,
        replay: list[tuple[Any, Any]],
        identity: bytes,
        message: dp.DataMessage,
        frames: list[zmq.Frame],
    ) -> None:
        """One data message of an unheld channel."""
        inbox = self.inbox
        assert inbox is not None
        job = self.plan.job
        if isinstance(message, dp.Barrier | dp.EndOfInput):
            channel = (identity, message.edge)
            if isinstance(message, dp.Barrier):
                aligned = aligner.barrier(channel, message.checkpoint)
            else:
                aligned = aligner.end(channel)
            if aligned is not None:
                self._snapshot(aligned)
                replay.extend(aligner.release())
            return
        try:
            if isinstance(message, (dp.BatchData, dp.Watermark)):
                if not 0 <= message.edge < len(job.edges):
                    raise p.ProtocolError(f"no edge {message.edge} in the job")
                target = job.edges[message.edge].target
            if isinstance(message, dp.BatchData):
                size = sum(transport.frame_sizes(frames))
                into = self.metrics.operator_bytes_in
                into[target] = into.get(target, 0) + size
                self.runner.push(target, transport.batch_from(message, frames))
                inbox.send_multipart([identity, b"", _CREDIT])
            elif isinstance(message, dp.Watermark):
                mark = transport.watermark_from(message, frames)
                self.runner.watermark(target, (identity, message.edge), mark)
        except p.ProtocolError as error:
            log.error("subtask %d dropped a malformed data message: %s", self.gid, error)

    def close(self) -> None:
        if self.inbox is not None:
            self.inbox.close()
        for sock in self.dealers.values():
            sock.close()


def run_slice(
    spec: SliceSpec,
    slice_index: int,
    attempt: int,
    master: str,
    checkpoint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The task a slot runs for slice ``slice_index`` of a job (see the module docstring).

    ``checkpoint`` (a checkpointing job): ``next``, the number of the next checkpoint, and
    ``restored`` / ``snapshots`` (old subtask id -> bytes) when the slice starts from a
    checkpoint (``dataflow.snapshots``)."""
    plan = ExecutionGraph(spec.job, chaining=spec.chaining)
    check_paths(plan, slice_index)
    context: zmq.Context[Any] = zmq.Context()
    gate = None
    if spec.job_key is not None:  # the job's inboxes accept the job's key only
        gate = Gate(context, spec.job_key[0].__eq__, "a job's inbox")
    try:
        result = _run_slice(spec, plan, slice_index, attempt, master, context, checkpoint or {})
    finally:
        if gate is not None:  # (its thread would keep the context, and the slot, busy)
            gate.stop()
    context.term()
    return result


def _run_slice(
    spec: SliceSpec,
    plan: ExecutionGraph,
    slice_index: int,
    attempt: int,
    master: str,
    context: zmq.Context[Any],
    checkpoint: dict[str, Any],
) -> dict[str, Any]:
    control = context.socket(zmq.DEALER)
    control.setsockopt(zmq.LINGER, 2000)
    if spec.job_key is not None:
        connect_curve(control, spec.job_key[0], spec.job_key[1], spec.job_key[0])
    lost = connection_watch(control)  # before connecting: the first handshake counts
    control.connect(master)
    lost_at: float | None = None  # since when the connection to the master is down
    next_checkpoint = int(checkpoint.get("next", 1))
    subtasks = [
        _Subtask(plan, spec, c.id, slice_index, context, next_checkpoint)
        for c in plan.chains
        if c.parallelism > slice_index
    ]
    if checkpoint.get("snapshots"):
        olds = [snapshots.load_snapshot(data) for data in checkpoint["snapshots"].values()]
        restored = int(checkpoint["restored"])
        for s in subtasks:
            chain = s.runner.chain.id
            s.runner.restore(snapshots.restore_part(plan, chain, slice_index, olds, restored))
    triggered = 0  # the latest checkpoint the master triggered
    endpoints = {s.gid: s.endpoint for s in subtasks if s.endpoint}
    ready = jp.SliceReady(p.PROTOCOL_VERSION, attempt, slice_index, endpoints, os.getpid())
    transport.send(control, ready)
    try:
        await_connections({master: lost}, "the job master")
    except ConnectionError:
        control.disable_monitor()
        lost.close(linger=0)
        control.close(linger=0)
        for s in subtasks:
            s.close()
        raise
    peers = _await_peers(control, spec.master_timeout)
    threads = []
    for s in subtasks:
        thread = threading.Thread(target=_in_thread, args=(s, peers), daemon=True)
        thread.start()
        threads.append(thread)
    pending = list(zip(subtasks, threads, strict=True))
    # With transactional sinks, the slice stays until a checkpoint holding every subtask's
    # final state completes: its sinks commit their last transactions then (not at their
    # end of input) and its subtasks can be acknowledged in that checkpoint.
    final_checkpoint = commits_on_checkpoints(plan.job, spec.checkpointing)
    completed = 0  # the latest checkpoint the master said was complete
    reported = heard = time.monotonic()
    said_ended = False
    while pending or (final_checkpoint and not _committed_final(subtasks, completed)):
        now = time.monotonic()
        if now - reported > _REPORT_EVERY or (not pending and not said_ended):
            reported = now
            said_ended = not pending  # (at once: the master hurries the final checkpoint)
            snapshot = {s.gid: figures(s.snapshot()) for s in subtasks}
            report = jp.SliceMetrics(attempt, slice_index, snapshot, said_ended)
            transport.send(control, report)
        while control.poll(0):
            heard = now  # hearing anything is what matters, MasterAlive or not
            order = _control_message(control)
            if isinstance(order, jp.TriggerCheckpoint) and order.attempt == attempt:
                triggered = max(triggered, order.checkpoint)
                for s in subtasks:
                    if s.runner.head.kind == "source":
                        s.triggers.put(order.checkpoint)
            elif isinstance(order, jp.CheckpointComplete):
                completed = max(completed, order.checkpoint)
                for s in subtasks:
                    s.completions.put(order.checkpoint)
        _send_acks(control, attempt, slice_index, subtasks, triggered)
        while lost.poll(0):
            event = lost.recv_multipart()[0]
            down = int.from_bytes(event[:2], "little") == zmq.EVENT_DISCONNECTED
            lost_at = (lost_at or now) if down else None
        if now - heard > spec.master_timeout or (
            lost_at is not None and now - lost_at > min(_MASTER_LOST, spec.master_timeout)
        ):
            os._exit(71)  # the master is gone; threads blocked on peers cannot be stopped
        running = {s.gid for s, _ in pending}
        for s in subtasks:  # (a running subtask's thread commits between its batches)
            if s.gid not in running and s.error is None:
                _take_completions(s)
        if not pending:
            control.poll(20)  # waiting for the final checkpoint
        for s, thread in list(pending):
            thread.join(0.02)
            if not thread.is_alive():
                pending.remove((s, thread))
            if s.error is not None:
                # Tell the master first (it cancels the whole attempt); the other threads
                # may be blocked on peers that will never send, so end this process.
                transport.send(control, jp.SliceFailed(attempt, slice_index, s.error))
                if any(t.is_alive() for _, t in pending):
                    # Threads blocked on peers cannot be stopped: once the master has the
                    # error it kills this slot with the rest of the attempt (a force cancel,
                    # which the worker replaces cleanly); end the process only if it does not.
                    if control.poll(_ACK_TIMEOUT_MS):
                        time.sleep(_KILL_WAIT)
                    os._exit(70)
                control.close()
                raise RuntimeError(s.error)
    for s in subtasks:
        s.close()
    control.disable_monitor()
    lost.close(linger=0)
    control.close()
    return _slice_result(plan, subtasks)


def _control_message(control: zmq.Socket[Any]) -> jp.JobMessage | None:
    try:
        _, body = transport.split_envelope(control.recv_multipart(copy=False), routed=False)
        return transport.parse_job(body)
    except p.ProtocolError as error:
        log.error("dropped a malformed message from the job master: %s", error)
        return None


def _committed_final(subtasks: list[_Subtask], completed: int) -> bool:
    """Whether every subtask has finished and a checkpoint holding its final state has
    completed (its sinks' last transactions are committed: ``_take_completions``)."""
    return all(s.final_ack and completed >= s.final_ack for s in subtasks)


def _take_completions(s: _Subtask) -> None:
    """Commit what completed checkpoints cover, for a subtask whose thread has ended."""
    while True:
        try:
            s.runner.checkpoint_complete(s.completions.get_nowait())
        except queue.Empty:
            return


def _send_acks(
    control: zmq.Socket[Any], attempt: int, index: int, subtasks: list[_Subtask], triggered: int
) -> None:
    """Send the subtasks' snapshots; a subtask that ended acknowledges every later checkpoint
    with its final state (no barrier reaches it any more), once its sinks' last transactions
    are durable as well."""
    for s in subtasks:
        while True:
            try:
                s.unsynced.append(s.acks.get_nowait())
            except queue.Empty:
                break
        _send_durable(control, attempt, index, s)
        if s.unsynced:
            continue  # (a final ack goes after the ones still waiting)
        if s.ended and s.error is None and s.acked < triggered:
            s.acked = triggered
            s.final_ack = s.final_ack or triggered
            snapshot = s.runner.snapshot(triggered, s.final_position, final=True)
            s.unsynced.append((triggered, snapshot, s.runner.transactions.take_durability()))
            _send_durable(control, attempt, index, s)


def _send_durable(control: zmq.Socket[Any], attempt: int, index: int, s: _Subtask) -> None:
    """Send, in order, the acks whose sinks' pre-commits are done (a failed one declines)."""
    while s.unsynced and all(f.done() for f in s.unsynced[0][2]):
        checkpoint, snapshot, durability = s.unsynced.popleft()
        failed = next((e for f in durability if (e := f.exception()) is not None), None)
        if failed is not None:
            reason = f"a sink's pre-commit failed: {failed!r}"
            transport.send(control, jp.CheckpointDeclined(attempt, index, checkpoint, reason))
        else:
            transport.send(control, jp.CheckpointAck(attempt, index, checkpoint, s.gid, snapshot))


def _await_peers(control: zmq.Socket[Any], timeout: float) -> dict[int, str]:
    """The master's answer to ``SliceReady``: every data endpoint of the attempt. A refusal
    (another protocol version) ends the slice with the master's reason."""
    deadline = time.monotonic() + timeout
    while control.poll(max(0, int((deadline - time.monotonic()) * 1000))):
        try:
            _, body = transport.split_envelope(control.recv_multipart(copy=False), routed=False)
            message = transport.parse_job(body)
        except p.ProtocolError as error:
            log.error("dropped a malformed message from the job master: %s", error)
            continue
        if isinstance(message, jp.Peers):
            return message.peers
        if isinstance(message, p.Error):
            raise RuntimeError(f"the job master refused this slice: {message.message}")
        log.error("expected Peers from the job master, got %s", type(message).__name__)
    raise RuntimeError(f"no word from the job master in {timeout:g} s")


def _in_thread(subtask: _Subtask, peers: dict[int, str]) -> None:
    try:
        subtask.connect(peers)
    except BaseException as exc:
        subtask.error = "".join(traceback.format_exception(exc))
        return
    subtask.run()


def _slice_result(plan: ExecutionGraph, subtasks: list[_Subtask]) -> dict[str, Any]:
    collected: dict[int, Batch] = {}
    metrics: dict[int, SubtaskMetrics] = {}
    for s in subtasks:
        metrics[s.gid] = s.metrics
        for op_id, batches in s.runner.collected.items():
            parts = [b for b in batches if size(b)]
            collected[op_id] = concat(parts) if parts else []
    # Pickled here, once: the master passes these bytes on unread, or (one host) the client
    # reads them from the job's shared-memory directory (dataflow.slice_results).
    part = PickledCollected.of(collected, collect_dir(plan.job))
    return {"collected": part, "metrics": metrics}
