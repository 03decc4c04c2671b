"""A dataflow job on a cluster: the job master's glue, :class:`JobRun` (private).

It runs in the job's master process, which the dispatcher starts for each submitted job
(``pydispatch.dataflow.master_process``); users hold a :class:`pydispatch.stream.JobHandle` that
asks it for status, metrics and the result over its control socket.

The job is planned here (``plan.ExecutionGraph``), checked against the registered workers
(``plan.why_not_fit``: a job that can never fit is refused at submission with the reason),
and deployed as one dispatcher task per slot-sharing slice (``dataflow.slice.run_slice``), so the
dispatcher's solver-backed placer puts slices on slots like any task and its heartbeats find
lost workers. A thread here runs :class:`pydispatch.dataflow.lifecycle.JobMaster` and performs its
instructions: it binds a control ROUTER that slices report to (``ready`` with their data
endpoints, ``failed`` with a traceback), answers with the peers' endpoints, cancels a failed
attempt's slices by force (their slot processes are killed and replaced) and redeploys after
the restart strategy's delay. Every control message is a ``protocol.JobMessage`` struct: a
malformed one is logged and dropped, and a slice of another protocol version is refused.

The control socket outlives the job: after the job ends it still answers status and result
requests until :meth:`JobRun.close` (the master process keeps the result for a while).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import zmq

from ..errors import JobFailedError, UnfitError
from ..plan import ExecutionGraph, _sources, placement_input, why_not_fit
from ..plan._job_graph import JobGraph
from ..wire import job_plane as jp
from ..wire import protocol as p
from ..wire import transport
from ..wire.security import JobCredentials
from . import lifecycle as jm
from .checkpoint_glue import CheckpointGlue
from .checkpoints import CheckpointConfig
from .control_gate import ControlGate
from .graph_view import describe_plan
from .job_metrics import job_figures, sendable
from .slice import PathUnavailableError, SliceSpec, SubtaskMetrics, run_slice
from .slice_placement import place_slices
from .slice_results import CollectedSlices, collect_dir, unpack_outcome

if TYPE_CHECKING:
    from ..runtime.client import Client
    from .result import JobResult


__all__ = ["JobOptions", "JobRun"]


@dataclass
class JobOptions:
    chaining: bool = True
    batch_records: int = 4096
    credits: int = 8
    host: str = "127.0.0.1"  # where the control socket and the slices' data sockets bind
    master_timeout: float = 60.0  # slices end themselves when their master is silent this long
    restart: jm.RestartStrategy | None = None
    # Slices wait for each other at start-up; if the cluster cannot run them all at once
    # (other jobs hold the slots) the attempt fails after this long rather than hold its slots.
    deploy_timeout: float = 60.0
    priority: int = 0
    place_with_solver: bool = True
    # How long the job's master process keeps the result after the job ends, if nobody
    # fetches it (Flink's jobstore.expiration-time, shorter: a result can be large).
    result_retention: float = 600.0
    # env.enable_checkpointing: barrier snapshots every interval (dataflow.checkpoints).
    checkpoint: CheckpointConfig | None = None
    from_savepoint: str = ""  # start from this savepoint (or checkpoint) directory


@dataclass
class _Attempt:
    futures: dict[int, Future[Any]] = field(default_factory=dict)  # by slice index
    identities: dict[int, bytes] = field(default_factory=dict)
    deployed_at: float = 0.0
    connected: bool = False


log = logging.getLogger(__name__)
_ids = itertools.count(1)
_MAX_WAIT = 60.0  # the longest a result request is held before a status answer
_MAX_WAITERS = 1024  # result requests held at once; more are answered with the status at once
_CONTROL_QUEUE = 1000  # messages queued per peer on the control socket, at most
# Slices report figures and tracebacks there, never data: a larger message cuts its peer off
# (libzmq, before anything of it is read).
_CONTROL_MESSAGE_LIMIT = 4 << 20
# How long a master waits for a cluster with no worker at all (a dispatcher that has just
# restarted: its workers come back within a heartbeat or two) before refusing the job.
_WAIT_FOR_WORKERS = 10.0


class _Inbox:
    """Events for a job's master thread from other threads (a slice's future done, a cancel,
    a close), and the thread's wait for them or for its control socket: a put ends the wait
    at once (waiting out a 20 ms poll made a job's result and its close ~20 ms later each).
    A zmq socket is not thread-safe: the waking end is used under a lock, and closed by the
    master thread as it ends."""

    def __init__(self, context: zmq.Context[Any], control: zmq.Socket[Any]) -> None:
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._in = context.socket(zmq.PULL)
        self._in.bind(f"inproc://inbox-{id(self)}")
        self._out: zmq.Socket[Any] | None = context.socket(zmq.PUSH)
        self._out.connect(f"inproc://inbox-{id(self)}")
        self._control = control
        self._poller = zmq.Poller()
        self._poller.register(control, zmq.POLLIN)
        self._poller.register(self._in, zmq.POLLIN)

    def put(self, event: tuple[Any, ...]) -> None:
        self._events.put(event)
        self.wake()

    def wake(self) -> None:
        with self._lock, contextlib.suppress(zmq.Again):
            if self._out is not None:  # else the master thread has ended
                self._out.send(b"", zmq.NOBLOCK)

    def wait(self, timeout_ms: int) -> bool:
        """Until an event, a message or the timeout; whether the control socket has one."""
        ready = dict(self._poller.poll(timeout_ms))
        if self._in in ready:
            with contextlib.suppress(zmq.Again):
                while True:
                    self._in.recv(zmq.NOBLOCK)
        return self._control in ready

    def events(self) -> Iterator[tuple[Any, ...]]:
        while True:
            try:
                yield self._events.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        with self._lock:
            if self._out is not None:
                self._out.close(linger=0)
                self._out = None
        self._in.close(linger=0)


class JobRun:
    """A job's master: deploys and watches the job, serves its control socket.

    ``status()``, ``result()``, ``cancel()``, ``metrics()`` as a ``JobHandle`` has them (the
    handle asks these over the socket); :meth:`close` ends the master thread."""

    def __init__(
        self,
        client: Client,
        job: JobGraph,
        name: str,
        options: JobOptions,
        original_ids: list[int] | None = None,
        job_id: str | None = None,
        credentials: JobCredentials | None = None,
        token: str = "",
    ) -> None:
        self.name = name
        self.job_id = job_id or f"{name}-{next(_ids)}-{uuid.uuid4().hex[:6]}"
        self.token = token  # given by the dispatcher that started this master (see JobUpdate)
        self._client = client
        self._options = options
        self._ids = original_ids if original_ids is not None else list(range(len(job.operators)))
        self.plan = plan = ExecutionGraph(job, chaining=options.chaining)
        _refuse_if_unfit(client, plan, name)
        pairs = zip(
            plan.subtask_index[plan.channel_src].tolist(),
            plan.subtask_index[plan.channel_dst].tolist(),
            strict=True,
        )
        regions = jm.regions_of(list(pairs), plan.n_slots)
        self._master = jm.JobMaster(plan.n_slots, options.restart, regions)
        self._final: dict[int, Future[Any]] = {}  # each slice's latest future
        self._specs = [
            SliceSpec(
                _slice_job(job, index),
                options.chaining,
                options.batch_records,
                options.credits,
                options.host,
                options.master_timeout,
                (credentials.public, credentials.secret) if credentials else None,
                options.checkpoint is not None,
            )
            for index in range(plan.n_slots)
        ]
        self._slice_resources = _slice_resources(plan)
        self._attempts: dict[int, _Attempt] = {}
        self._timers: list[tuple[float, int]] = []
        self._done = threading.Event()
        self._result: JobResult | None = None
        self._error: str | None = None
        self._metrics: dict[str, Any] = {}
        #: What the collect sinks' slices returned, passed on to handles unread.
        self._collected: CollectedSlices | None = None
        self._context: zmq.Context[Any] = zmq.Context()
        # ROUTER_MANDATORY (make_socket): a reply to a peer gone already raises
        # EHOSTUNREACH, which _reply logs, instead of vanishing.
        self._control = transport.make_socket(
            self._context, zmq.ROUTER, max_message_size=_CONTROL_MESSAGE_LIMIT
        )
        self._control.setsockopt(zmq.RCVHWM, _CONTROL_QUEUE)
        self._control.setsockopt(zmq.SNDHWM, _CONTROL_QUEUE)
        # With keys: CURVE with the job's key; only its slices, owner and admins get in.
        self._gate = ControlGate(self._context, self._control, credentials, self.job_id)
        port = self._control.bind_to_random_port(f"tcp://{options.host}")
        self.endpoint = f"tcp://{options.host}:{port}"
        self._closing = threading.Event()
        self._inbox = _Inbox(self._context, self._control)
        self._waiters: list[tuple[bytes, float]] = []  # result requests held until the end
        self._handed_over = False  # see abort
        self._outcome: tuple[jp.JobResultReply, list[transport.FrameLike]] | None = None
        #: When a handle was last sent the outcome (the master process may exit then).
        self.fetched_at: float | None = None
        self._started = time.monotonic()
        self._announced: tuple[str, int] = ("", 0)
        self._placement: dict[str, Any] = {}
        self._live: dict[int, dict[int, SubtaskMetrics]] = {}  # slice -> its latest report
        self._graph = describe_plan(plan, self._ids)  # for the dashboard's job page
        self._checkpoints: CheckpointGlue | None = None
        if options.checkpoint is not None:
            self._checkpoints = CheckpointGlue(
                options.checkpoint,
                plan,
                self.job_id,
                self._to_slice,
                self._reply,
                lambda: self._event(("cancel", Future())),
                options.from_savepoint,
            )
            self._checkpoints.check_savepoint()
        self._thread = threading.Thread(target=self._loop, name=f"job-{self.job_id}", daemon=True)
        self._perform(self._master.start())
        # Listed before the job is reported accepted: both go out on the client's socket.
        self._announce()
        self._thread.start()

    # -- public ---------------------------------------------------------------------------

    def status(self) -> str:
        """CREATED, RUNNING, RESTARTING, FINISHED, FAILED or CANCELED."""
        return self._master.state

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> JobResult:
        """Wait for the job (records unpickled here); raises JobFailedError or CancelledError."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"job {self.job_id} is still {self.status()}")
        if self._master.state == jm.CANCELED:
            raise CancelledError(f"job {self.job_id} was cancelled")
        if self._result is None:
            raise JobFailedError(self._error or "the job failed")
        return unpack_outcome((self._result, self._collected))[0]

    def cancel(self) -> bool:
        """Cancel the job (its running slices are killed); False if it had ended already."""
        if self._done.is_set():
            return False
        reply: Future[bool] = Future()
        self._inbox.put(("cancel", reply))
        return reply.result(timeout=30)

    def abort(self, reason: str, hand_over: bool = False) -> bool:
        """End the job as FAILED with ``reason`` (its running slices are killed), when its
        master must stop while it runs; False if it had ended already. ``hand_over``: to
        the next dispatcher's master: no result request is answered (this master exits)."""
        if self._done.is_set():
            return False
        reply: Future[bool] = Future()
        self._inbox.put(("abort", reply, reason, hand_over))
        return reply.result(timeout=30)

    def alive(self) -> bool:
        """Whether the master thread still serves the control socket."""
        return self._thread.is_alive()

    def close(self, keep_collected: bool = False) -> None:
        """Stop serving the control socket (the job should have ended: see ``cancel``); remove
        its sources' shared-memory files (``handle.spill_sources``), and its collected records'
        unless the dispatcher keeps its outcome (``keep_collected``) or a next master runs it."""
        self._closing.set()
        self._inbox.wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
        for directory in _spilled_directories(self.plan.job, keep_collected or self._handed_over):
            shutil.rmtree(directory, ignore_errors=True)

    def metrics(self) -> dict[str, Any]:
        """Records in/out per operator, bytes and batches shuffled, busy and back-pressured
        seconds per chain, restarts, placement. While the job runs: the current attempt's
        figures as its slices last reported them (every 0.5 s); once finished: the final ones."""
        base: dict[str, Any] = {"status": self.status(), "attempt": self._master.attempt}
        base["restarts"] = self._master.restarts
        base["placement"] = self._placement
        base["graph"] = self._graph
        if self._checkpoints is not None:
            base["checkpoints"] = self._checkpoints.figures()
        if self._metrics:
            return {**base, **self._metrics}
        live = dict(self._live)  # the master thread replaces entries, never mutates them
        figures = self._figures({g: m for r in live.values() for g, m in r.items()})
        return {**base, **figures}

    def __repr__(self) -> str:
        return f"JobRun({self.job_id!r}, {self.status()})"

    # -- the master thread ----------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._closing.is_set():
                if self._inbox.wait(20):
                    self._receive()
                for event in self._inbox.events():
                    self._event(event)
                now = time.monotonic()
                due = [t for t in self._timers if t[0] <= now]
                for timer in due:
                    self._timers.remove(timer)
                    self._perform(self._master.timer_fired(timer[1]))
                self._check_deployment(now)
                if self._checkpoints is not None:
                    if self._all_connected():
                        self._checkpoints.running(now)
                    self._checkpoints.tick(now, self._master.state)
                self._announce()
                if self._master.state in jm.TERMINAL and not self._done.is_set():
                    self._done.set()
                self._answer_waiters(now)
        except BaseException as exc:  # the job must end, whatever happened here
            log.exception(
                "job %s: the master thread failed", self.job_id, extra={"job_id": self.job_id}
            )
            self._error = f"the job master failed: {exc!r}"
            self._master.state = jm.FAILED
            self._done.set()
        finally:
            with contextlib.suppress(Exception):
                self._announce()
            self._control.close()
            self._inbox.close()
            self._gate.stop()
            self._context.term()

    def _announce(self) -> None:
        """Tell the dispatcher of each change of state (``pydispatch jobs`` lists them)."""
        seen = (self._master.state, self._master.attempt)
        if seen == self._announced:
            return
        self._announced = seen
        info = p.JobInfo(
            self.job_id, self.name, seen[0], self.endpoint, seen[1], self._master.slices
        )
        self._client._send_control(p.JobUpdate(info, self.token))

    def _check_deployment(self, now: float) -> None:
        timeout = self._options.deploy_timeout
        for attempt in _late(self._master.running_attempts(), self._attempts, now, timeout):
            error = (
                f"not every slice of attempt {attempt} started within {timeout:g} s "
                "(the cluster's slots are busy?)"
            )
            self._perform(self._master.slice_failed(attempt, -1, error, now))

    def _receive(self) -> None:
        while True:
            try:
                parts = self._control.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            key = self._gate.sender(parts[-1])
            if key is None:
                continue
            try:
                identity, body = transport.split_envelope(parts, routed=True)
                message = transport.parse_job(body)
            except p.ProtocolError as error:  # a peer's bug: drop it, keep the job
                self._gate.malformed(key, str(error))
                continue
            if self._gate.allows(key, message):
                self._handle(identity, message)

    def _reply(
        self,
        identity: bytes,
        message: jp.JobMessage,
        frames: list[transport.FrameLike] | None = None,
    ) -> bool:
        try:
            transport.send(self._control, message, frames or (), identity=identity)
        except zmq.ZMQError as error:  # the peer left (EHOSTUNREACH): nothing to answer
            log.warning(
                "job %s could not answer a control peer: %s",
                self.job_id,
                error,
                extra={"job_id": self.job_id},
            )
            return False
        return True

    # -- requests of the job's handles ------------------------------------------------------

    def _status_reply(self) -> jp.JobStatusReply:
        return jp.JobStatusReply(self.job_id, self.name, self.status(), sendable(self.metrics()))

    def _answer_result(self, identity: bytes) -> None:
        if self._reply(identity, *self.outcome()):
            self.fetched_at = time.monotonic()

    def outcome(self) -> tuple[jp.JobResultReply, list[transport.FrameLike]]:
        """What a handle asking for the result gets, once the job has ended."""
        if self._outcome is None:
            reply = jp.JobResultReply(
                self.job_id, self.name, self.status(), sendable(self.metrics()), self._error or ""
            )
            frames: list[transport.FrameLike] = []
            if self._result is not None:
                reply.spilled = collect_dir(self.plan.job)
                # Pickled once; every handle that asks gets the same frames (no copies). The
                # records are the slices' own pickles, as frames: read by the handle only.
                outcome = (self._result, self._collected)
                try:
                    reply.result = transport.dumps(outcome, frames, inline_limit=0)
                except Exception as error:  # the records came pickled: this is unlikely
                    log.exception(
                        "job %s: its result cannot be pickled",
                        self.job_id,
                        extra={"job_id": self.job_id},
                    )
                    reply.error = f"the job's result could not be pickled: {error!r}"
                    frames = []
            self._outcome = (reply, frames)
        return self._outcome

    def _answer_waiters(self, now: float) -> None:
        if not self._waiters or self._handed_over:
            return
        if self._done.is_set():
            waiters, self._waiters = self._waiters, []
            for identity, _ in waiters:
                self._answer_result(identity)
            return
        due = [w for w in self._waiters if w[1] <= now]
        if due:
            self._waiters = [w for w in self._waiters if w[1] > now]
            reply = self._status_reply()
            for identity, _ in due:
                self._reply(identity, reply)

    def _handle(self, identity: bytes, message: jp.JobMessage) -> None:
        reports = (jp.SliceReady, jp.SliceMetrics, jp.SliceFailed)
        if isinstance(message, reports) and not 0 <= message.index < self.plan.n_slots:
            # Well-formed but from no slice of this job: the master must not index with it.
            log.error(
                "job %s dropped a report of slice %d",
                self.job_id,
                message.index,
                extra={"job_id": self.job_id},
            )
            return
        if isinstance(message, jp.SliceReady):
            if reason := _version_refusal(message):
                log.error(
                    "job %s refused a slice: %s", self.job_id, reason, extra={"job_id": self.job_id}
                )
                self._reply(identity, p.Error("version", reason))
                return
            record = self._attempts.get(message.attempt)
            if record is not None:
                record.identities[message.index] = identity
            ready = self._master.slice_ready(message.attempt, message.index, message.endpoints)
            self._perform(ready)
        elif isinstance(message, jp.SliceMetrics):
            self._reply(identity, jp.MasterAlive())  # the slice watches for it
            if message.attempt == self._master.attempt_of(message.index):
                self._live[message.index] = _live_figures(message)
                if message.ended and self._checkpoints is not None:
                    self._checkpoints.slice_ended(message.index)
        elif isinstance(message, jp.JobCancel):  # a handle, or `pydispatch cancel ADDRESS JOB`
            reply: Future[bool] = Future()
            self._event(("cancel", reply))
            self._reply(identity, jp.JobCancelled(reply.result()))
        elif isinstance(message, jp.JobStatusRequest):
            self._reply(identity, self._status_reply())
        elif isinstance(message, jp.JobResultRequest):
            wait = min(message.wait, _MAX_WAIT) if message.wait > 0 else 0.0  # NaN: 0
            if self._handed_over:  # its outcome is the next master's to give (see abort)
                pass
            elif self._done.is_set():
                self._answer_result(identity)
            elif wait == 0 or len(self._waiters) >= _MAX_WAITERS:
                self._reply(identity, self._status_reply())
            else:
                self._waiters.append((identity, time.monotonic() + wait))
        elif isinstance(message, jp.CheckpointAck | jp.CheckpointDeclined | jp.SavepointRequest):
            if self._checkpoints is None or self._master.state in jm.TERMINAL:
                if isinstance(message, jp.SavepointRequest):
                    why = "the job has ended" if self._checkpoints else "it does not checkpoint"
                    self._reply(identity, jp.SavepointReply(message.path, why))
            else:
                self._checkpoints.on_message(identity, message, self._master.attempt_of)
        elif isinstance(message, jp.SliceFailed):
            self._reply(identity, jp.MasterAck())
            now = time.monotonic()
            self._perform(
                self._master.slice_failed(message.attempt, message.index, message.error, now)
            )
        else:
            log.error(
                "job %s ignored a %s on its control socket", self.job_id, type(message).__name__
            )

    def _event(self, event: tuple[Any, ...]) -> None:
        if event[0] in ("cancel", "abort"):
            reply: Future[bool] = event[1]
            if self._master.state in jm.TERMINAL:  # ended already (cancelled, perhaps)
                reply.set_result(False)
                return
            self._perform(self._master.cancel())
            if event[0] == "abort":  # killed like a cancelled job, but nobody cancelled it
                self._master.state = jm.FAILED
                self._error = f"job {self.job_id} failed: {event[2]}"
                self._handed_over = event[3]
            reply.set_result(self._master.state in jm.TERMINAL)
            return
        _, attempt, index, future = event
        if future.cancelled():
            error = "the slice was cancelled"
            self._perform(self._master.slice_failed(attempt, index, error, time.monotonic()))
            return
        exc = future.exception()
        if exc is None:
            self._perform(self._master.slice_finished(attempt, index, future.result()))
        elif isinstance(exc, PathUnavailableError):
            where = getattr(future, "worker", "") or "?"
            error = f"worker {where} {exc}"
            now = time.monotonic()
            self._perform(self._master.slice_failed(attempt, index, error, now, fatal=True))
        else:
            error = f"{type(exc).__name__}: {exc}"
            if exc.__cause__ is not None:
                error += f"{exc.__cause__}"
            self._perform(self._master.slice_failed(attempt, index, error, time.monotonic()))

    def _perform(self, instructions: list[jm.Instruction]) -> None:
        for ins in instructions:
            if isinstance(ins, jm.Deploy):
                self._deploy(ins.attempt, ins.slices)
            elif isinstance(ins, jm.SendPeers):
                self._attempts[ins.attempt].connected = True
                peers = jp.Peers(dict(ins.peers))
                for identity in self._attempts[ins.attempt].identities.values():
                    self._reply(identity, peers)
            elif isinstance(ins, jm.CancelAttempt):
                if self._checkpoints is not None:
                    self._checkpoints.failed(time.monotonic())
                for future in self._attempts[ins.attempt].futures.values():
                    with contextlib.suppress(ValueError):
                        self._client.cancel(future, force=True)
            elif isinstance(ins, jm.StartTimer):
                self._timers.append((time.monotonic() + ins.delay, ins.attempt))
            elif isinstance(ins, jm.Finish):
                self._finish(ins.results)
            else:
                failures = "\n".join(self._master.failures)
                self._error = f"job {self.job_id} failed: {ins.error}\nall failures:\n{failures}"

    def _deploy(self, attempt: int, slices: tuple[int, ...]) -> None:
        record = self._attempts[attempt] = _Attempt(deployed_at=time.monotonic())
        for index in slices:
            self._live.pop(index, None)
        # The solver places the whole job; a region restarting alone goes to free slots.
        whole = len(slices) == self.plan.n_slots and self._options.place_with_solver
        labels: list[dict[str, str]] = [{} for _ in range(self.plan.n_slots)]
        if whole:  # metrics()["placement"] says how it went
            labels, self._placement = place_slices(self.plan, self._client)
        checkpoint = None if self._checkpoints is None else self._checkpoints.deploy_args(slices)
        for index in slices:
            future = self._client.submit(
                run_slice,
                self._specs[index],
                index,
                attempt,
                self.endpoint,
                checkpoint,
                retries=0,
                resources=self._slice_resources[index],
                priority=self._options.priority,
                labels=labels[index],
            )
            record.futures[index] = future
            self._final[index] = future
            future.add_done_callback(self._on_done(attempt, index))

    # -- checkpoints (dataflow.checkpoint_glue does the work) --------------------------------

    def _all_connected(self) -> bool:
        attempts = self._master.running_attempts()
        return (
            self._master.state == jm.RUNNING
            and len(attempts) == len(self._master.regions)
            and all(a in self._attempts and self._attempts[a].connected for a in attempts)
        )

    def _to_slice(self, index: int, message: jp.JobMessage) -> None:
        attempt = self._master.attempt_of(index)
        record = self._attempts.get(attempt)
        identity = None if record is None else record.identities.get(index)
        if identity is None:
            return
        if isinstance(message, jp.TriggerCheckpoint):
            message = jp.TriggerCheckpoint(attempt, message.checkpoint)
        self._reply(identity, message)

    def _figures(self, metrics: dict[int, SubtaskMetrics]) -> dict[str, Any]:
        return job_figures(self.plan, self._ids, metrics, self._started)

    def _on_done(self, attempt: int, index: int) -> Callable[[Future[Any]], None]:
        def put(future: Future[Any]) -> None:
            self._inbox.put(("done", attempt, index, future))

        return put

    def _finish(self, results: dict[int, Any]) -> None:
        from .result import JobResult

        futures = [self._final[i] for i in range(self.plan.n_slots)]
        self._placement["ran_on"] = [getattr(f, "worker", "") for f in futures]
        self._collected = CollectedSlices.of(self.plan, self._ids, results)
        metrics = {g: m for r in results.values() for g, m in r["metrics"].items()}
        self._metrics = self._figures(metrics)
        records_in = self._metrics["records_in"]
        records_out = self._metrics["records_out"]
        # ``collected`` is filled in by the handle (slice_results.unpack_outcome).
        self._result = JobResult(self.name, self.plan.runtime_mode, {}, records_in, records_out)


def _live_figures(message: jp.SliceMetrics) -> dict[int, SubtaskMetrics]:
    return {
        gid: SubtaskMetrics(**msgspec.structs.asdict(figures))
        for gid, figures in message.figures.items()
    }


def _late(
    running: list[int], attempts: dict[int, _Attempt], now: float, timeout: float
) -> list[int]:
    """The running attempts whose slices are not all connected ``timeout`` after deploying."""
    late = []
    for attempt in running:
        record = attempts.get(attempt)
        if record is not None and not record.connected and now - record.deployed_at > timeout:
            late.append(attempt)
    return late


def _refuse_if_unfit(client: Client, plan: ExecutionGraph, name: str) -> None:
    # No worker at all is most often a dispatcher that has just (re)started, its workers
    # reconnecting (a resumed job's master starts then): wait for them a while.
    deadline = time.monotonic() + _WAIT_FOR_WORKERS
    while not (workers := [w for w in client.status().workers if not w.draining]):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    capacity = [{"slots": float(w.slots), **w.resources} for w in workers]
    reason = why_not_fit(placement_input(plan), capacity) if capacity else "no workers"
    if reason:
        raise UnfitError(f"job {name!r} can never fit the cluster: {reason}")


def _version_refusal(message: jp.SliceReady) -> str:
    """Why a slice of another protocol version is refused ("" if it is not)."""
    if message.version == p.PROTOCOL_VERSION:
        return ""
    return (
        f"slice {message.index} speaks protocol version {message.version}, this "
        f"job master speaks {p.PROTOCOL_VERSION} (mixed pydispatch versions?)"
    )


def _slice_job(job: JobGraph, index: int) -> JobGraph:
    """The job as slice ``index`` needs it: in-memory sources hold only that slice's split
    (``presplit``), so a large ``from_arrays`` or ``from_collection`` is not shipped to every
    slot whole; ``rows``, the whole's size, says where the split lies (a restore at another
    parallelism reads old splits' rest by record number: ``positions.RowRanges``)."""
    for op in job.sources():
        params = op.params
        if params["source"] not in ("arrays", "elements"):
            continue
        par = op.parallelism
        new = dict(params, presplit=True, rows=_sources.total_rows(params))
        if params["source"] == "arrays":
            columns = params["columns"]
            if any(isinstance(c, _sources.MappedColumn) for c in columns.values()):
                continue  # a file every slice maps its own rows of: nothing to ship
            new["columns"] = (
                _sources.arrays_split(columns, index, par)
                if index < par
                else {name: c[:0] for name, c in columns.items()}
            )
        else:
            elements = params["elements"]
            if isinstance(elements, _sources.SpilledElements):  # each slice reads its file
                new["elements"] = elements.part(index) if index < par else ()
            else:
                new["elements"] = (
                    tuple(_sources.sequence_split(elements, index, par)) if index < par else ()
                )
        job = job.replace(op.id, params=new)
    return job


def _spilled_directories(job: JobGraph, keep_collected: bool) -> set[str]:
    """The directories ``handle.spill_sources`` wrote this job's arrays and elements to, and
    (unless ``keep_collected``) the one its slices wrote their collected records to."""
    paths = []
    for op in job.sources():
        if op.params["source"] == "arrays":
            for column in op.params["columns"].values():
                if isinstance(column, _sources.MappedColumn):
                    paths.append(column.path)
        elif isinstance(op.params.get("elements"), _sources.SpilledElements):
            paths.extend(op.params["elements"].paths)
    directories = {os.path.dirname(path) for path in paths}
    if not keep_collected and collect_dir(job):
        directories.add(collect_dir(job))
    return {d for d in directories if os.path.basename(d).startswith(_sources.SPILL_PREFIX)}


def _slice_resources(plan: ExecutionGraph) -> list[dict[str, float]]:
    """Each slice's demand beyond its slot: the sum over the subtasks it holds."""
    out: list[dict[str, float]] = [{} for _ in range(plan.n_slots)]
    for chain in plan.chains:
        for index in range(chain.parallelism):
            for name, amount in chain.resources.items():
                if name != "slots":
                    out[index][name] = out[index].get(name, 0.0) + amount
    return out
