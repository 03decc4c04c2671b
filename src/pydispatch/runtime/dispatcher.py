"""The dispatcher process: one ROUTER socket for clients and workers, and the glue that feeds
the scheduler events and performs its instructions.

The loop drains every message that is ready (up to a batch), then runs one placement round and
flushes what it produced: one ``Run`` per worker and one ``Results``/``Started`` per client per
round, however many tasks they carry. That is the whole batching story: when the dispatcher is
busy, rounds grow and messages coalesce; when it is idle, a task goes out alone at once.

Each message kind a dispatcher accepts has its handler (``_on_<kind>``), found by the
message's type in a table built once. Nothing a peer sends can crash the loop: malformed,
unknown, wrong-version or inconsistent messages get an :class:`~pydispatch.wire.protocol.Error`
reply (or are logged and dropped if there is nobody to reply to); oversized ones never reach
Python (``ZMQ_MAXMSGSIZE`` disconnects the peer).

Three parts of the dispatcher live in modules of their own, each owned by :class:`Dispatcher`:
:class:`~pydispatch.runtime.client_book.ClientBook` (its clients, their sending sockets, when
each was last heard from), :class:`~pydispatch.runtime.leasing.Leasing` (the leases it grants)
and :class:`~pydispatch.runtime.outbox.Outbox` (what clients hear of their tasks, coalesced per
round); dataflow job masters are supervised by :mod:`~pydispatch.runtime.job_masters`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec
import zmq

from ..scheduling import scheduler as s
from ..scheduling.placer import Placer
from ..scheduling.solver_placer import solver_placer
from ..wire import protocol as p
from ..wire.transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FrameLike,
    Socket,
    frame_sizes,
    make_socket,
    parse,
    rebase,
    recv_parts,
    send,
    split_envelope,
)
from .client_book import ClientBook
from .job_masters import JobHosts
from .leasing import Leasing
from .memory import collect_less_often, keep_large_buffers
from .outbox import STARTED_DELAY, Outbox

__all__ = ["DEFAULT_PREFETCH", "LISTEN_BACKLOG", "Dispatcher", "run_dispatcher"]

log = logging.getLogger(__name__)

# Attempts queued on a slot beyond the running one, at most (the scheduler also bounds them
# by about 2 ms of measured work, so this cap binds only for tasks under ~30 us): small tasks
# then never wait for a dispatcher round trip, and a slot that never runs dry is never woken
# (on 2 cores, waking one cost the dispatcher more than sending it work: 16 -> 64 took 10k
# no-ops from ~42k to ~56k tasks/s). 0 = exact priorities and fair share.
DEFAULT_PREFETCH: Final = 64

# Connections waiting to be accepted (TCP listen backlog; zmq's default is 100). A herd of
# workers (a thousand, four connections each, at a dispatcher (re)start) overflows 100, and the
# kernel's SYN retries (1 s, then 3 s) made a staircase of their registration. Linux caps it at
# net.core.somaxconn (4096 by default since 5.4; lower on older kernels: raise it there).
LISTEN_BACKLOG: Final = 4096
_KEEP_FREE: Final = 256 << 20  # freed heap the dispatcher keeps for the next large frames
_BATCH: Final = 4096  # messages handled before a placement round, at most
_JOB_ENDED: Final = frozenset({"FINISHED", "FAILED", "CANCELED"})
_KEEP_ENDED_JOBS: Final = 100  # ended dataflow jobs listed by `pydispatch jobs`
_MAX_COUNT: Final = 1 << 24  # direct attempts a slot may count in one Done (0.2 s of them)

Frames = list[zmq.Frame]
# A message kind's handler: (sender's identity, message, its frames, time.monotonic()).
_Handler = Callable[[bytes, Any, Frames, float], None]


@dataclass(slots=True)
class _Payload:
    """A task as the dispatcher keeps it: its blobs renumbered over its own frames only."""

    kind: int
    fn: p.Blob
    args: p.Blob
    frames: list[FrameLike]
    priority: int
    lease_for: bytes = b""  # this client asked for a lease on the slot this task goes to


class Dispatcher:
    """Serve clients and workers on ``bind`` until :meth:`stop` (thread-safe) is called."""

    def __init__(
        self,
        bind: str = "tcp://127.0.0.1:5555",
        *,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        placer: Placer = solver_placer,
        prefetch: int = DEFAULT_PREFETCH,
        exit_with_parent: int = 0,
        job_masters: bool = True,
        client_timeout: float = 30.0,
    ) -> None:
        # A client with tasks outstanding says hello every client_timeout / 4 seconds; one
        # silent for client_timeout has its queued tasks failed (running ones finish): a
        # client killed outright must not keep the cluster busy, nor its fair share.
        self.client_timeout = client_timeout
        # Stop when the process with this pid is no longer our parent (LocalCluster sets it).
        self._exit_with_parent = exit_with_parent
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.scheduler = s.Scheduler(
            heartbeat_timeout=heartbeat_timeout, placer=placer, prefetch=prefetch
        )
        self._context: zmq.Context[Any] = zmq.Context()
        self._socket: Socket = make_socket(
            self._context, zmq.ROUTER, max_message_size=max_message_size
        )
        self._socket.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)  # issue 21: before bind
        self._socket.bind(bind)
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self.epoch = uuid.uuid4().hex  # tells clients apart a restarted dispatcher
        self._clients = ClientBook(client_timeout, self.scheduler.knows_peer)
        self._worker_names: dict[bytes, str] = {}
        self._leasing = Leasing(self.scheduler, self._send)  # the direct lanes, granted here
        self.protocol_errors = 0
        # What clients hear of their tasks, flushed once per loop iteration.
        self._outbox = Outbox(self._send, self._forget_client)
        self._jobs: dict[str, p.JobInfo] = {}  # dataflow jobs, as their masters announce them
        # Submitted dataflow jobs' master processes (spawned, tracked, reaped there).
        self._job_hosts = JobHosts(
            self.endpoint, self._send, self._jobs, self._job_update, enabled=job_masters
        )
        self._handlers = self._handler_table()

    # --------------------------------------------------------------------------- loop

    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        tick_every = min(self.heartbeat_interval, self.heartbeat_timeout / 4)
        next_tick = time.monotonic() + tick_every
        try:
            while not self._stop.is_set():
                wait_ms = max(0, int((next_tick - time.monotonic()) * 1000))
                if self._outbox.started_waiting:
                    wait_ms = min(wait_ms, 1 + int(STARTED_DELAY * 1000))
                if poller.poll(min(wait_ms, 200)):
                    self._receive_batch()
                now = time.monotonic()
                if now >= next_tick:
                    if self._exit_with_parent and os.getppid() != self._exit_with_parent:
                        log.warning("the process that started this dispatcher is gone: exiting")
                        return
                    next_tick = now + tick_every
                    self._guarded(lambda: self._perform(self.scheduler.tick(time.monotonic())))
                    self._guarded(lambda: self._perform(self._silent_clients(time.monotonic())))
                    self._guarded(self._job_hosts.reap)
                self._guarded(lambda: self._perform(self.scheduler.schedule()))
                if self.scheduler.waiting and self._leasing.any_open:
                    # Tasks wait for a slot: leased ones go back to work once their direct
                    # attempts are done (see Leasing).
                    self._guarded(self._leasing.close_all)
                self._guarded(self._outbox.flush)
        finally:
            self._job_hosts.close()  # no job master outlives its dispatcher
            self._socket.close(linger=0)
            self._context.term()

    def _silent_clients(self, now: float) -> list[s.Instruction]:
        out: list[s.Instruction] = []
        for client, silence in self._clients.silent(now):
            reason = f"its client was silent for {silence:.1f} s (presumed gone)"
            failed = self.scheduler.fail_queued(client, reason)
            if failed:
                log.warning("client %r silent: %d queued task(s) failed", client, len(failed))
            out += failed
        return out

    @staticmethod
    def _guarded(step: Callable[[], None]) -> None:
        # A bug in one round must not take every client's work down with the dispatcher.
        try:
            step()
        except Exception:
            log.exception("error in the dispatcher loop (continuing)")

    def _receive_batch(self) -> None:
        for _ in range(_BATCH):
            try:
                parts = recv_parts(self._socket, zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handle_parts(parts)

    def _handle_parts(self, parts: Frames) -> None:
        identity = parts[0].bytes
        identity = self._clients.senders.get(identity, identity)  # a client's sending socket
        try:
            _, body = split_envelope(parts, routed=True)
            message, frames = parse(body)
            self._handle(identity, message, frames)
        except p.ProtocolError as error:
            self._refuse(identity, "protocol", str(error))
        except Exception as error:  # a bug here must not take the dispatcher down
            log.exception("error handling a message from %r", identity)
            self._refuse(identity, "internal", f"{type(error).__name__}: {error}")

    def _refuse(self, identity: bytes, code: str, message: str) -> None:
        self.protocol_errors += 1
        log.warning("refused a message from %r: %s: %s", identity, code, message)
        self._send(identity, p.Error(code, message))

    def _send(
        self, identity: bytes, message: p.Message, frames: list[FrameLike] | None = None
    ) -> bool:
        try:
            send(self._socket, message, frames or (), identity=identity)
        except zmq.ZMQError as error:  # EHOSTUNREACH: that peer is gone
            log.info("could not send %s to %r: %s", type(message).__name__, identity, error)
            return False
        return True

    # ----------------------------------------------------------------------- messages

    def _handle(self, identity: bytes, message: p.Message, frames: Frames) -> None:
        now = time.monotonic()
        seen = self._clients.seen
        if identity in seen:
            seen[identity] = now
        handler = self._handlers.get(type(message))
        if handler is None:
            raise p.ProtocolError(f"a dispatcher does not accept {type(message).__name__}")
        handler(identity, message, frames, now)

    def _handler_table(self) -> dict[type[Any], _Handler]:
        """One handler per message kind a dispatcher accepts, by the message's exact type (a
        dict lookup: the hot loop's cheapest dispatch, the same for every kind)."""
        return {
            p.Submit: self._on_submit,
            p.Done: self._on_done,
            p.LeaseClosed: self._on_lease_closed,
            p.KillDirect: self._on_kill_direct,
            p.ReturnLease: self._on_return_lease,
            p.Heartbeat: self._on_heartbeat,
            p.Cancel: self._on_cancel,
            p.ClientHello: self._on_client_hello,
            p.Register: self._on_register,
            p.SlotHello: self._on_slot_hello,
            p.SlotReady: self._on_slot_ready,
            p.SlotLost: self._on_slot_lost,
            p.Drain: self._on_drain,
            p.Goodbye: self._on_goodbye,
            p.ClientBye: self._on_client_bye,
            p.StatusRequest: self._on_status_request,
            p.JobUpdate: self._on_job_update,
            p.JobsRequest: self._on_jobs_request,
            p.SubmitJob: self._on_submit_job,
            p.JobPayloadRequest: self._on_job_payload_request,
            p.JobHostReport: self._on_job_host_report,
        }

    def _on_submit(self, peer: bytes, m: p.Submit, frames: Frames, now: float) -> None:
        if peer not in self._clients:
            raise p.ProtocolError("send ClientHello before Submit")
        sizes = frame_sizes(frames)
        new: list[s.NewTask] = []
        refused: list[s.Instruction] = []
        for spec in m.tasks:
            try:
                p.check_blob(spec.fn, sizes)
                p.check_blob(spec.args, sizes)
                if spec.kind not in p.KINDS:
                    raise p.ProtocolError(f"unknown task kind {spec.kind}")
            except p.ProtocolError as error:
                self.protocol_errors += 1
                refused.append(
                    s.Resolve(peer, spec.task_id, "failed", error=f"protocol error: {error}")
                )
                continue
            own: list[FrameLike] = []
            placed: dict[int, int] = {}
            payload = _Payload(
                spec.kind,
                rebase(spec.fn, frames, own, placed),
                rebase(spec.args, frames, own, placed),
                own,
                spec.priority,
            )
            if m.lease and len(m.tasks) == 1 and _leasable(spec):
                payload.lease_for = peer
            new.append(
                s.NewTask(
                    spec.task_id, payload, spec.resources, spec.labels, spec.priority, spec.retries
                )
            )
        self._perform(refused + self.scheduler.submit(peer, new))

    def _on_done(self, peer: bytes, m: p.Done, frames: Frames, now: float) -> None:
        finished, cancelled = m.direct_finished, m.direct_cancelled
        if not (0 <= finished <= _MAX_COUNT and 0 <= cancelled <= _MAX_COUNT):
            raise p.ProtocolError(f"implausible counts {finished}, {cancelled}")
        # Only a registered slot counts (a removed one's results are discarded below).
        if (finished or cancelled) and self.scheduler.knows_slot(peer):
            self.scheduler.count_direct(finished, cancelled)
        sizes = frame_sizes(frames)
        outcomes = []
        for result in m.results:
            if result.attempt_id < 0:
                continue  # a worker's "not started" for a direct attempt: the slot answers it
            status, value, error = result.status, None, result.error
            if result.value is not None:
                try:
                    p.check_blob(result.value, sizes)
                    value = (result.value, frames)
                except p.ProtocolError as problem:
                    self.protocol_errors += 1
                    status, error = "failed", f"protocol error in the worker's result: {problem}"
            outcomes.append(
                s.AttemptOutcome(
                    result.attempt_id, status, value, error, result.traceback, result.seconds
                )
            )
        self._perform(self.scheduler.attempts_finished(peer, outcomes, now))

    def _on_lease_closed(self, peer: bytes, m: p.LeaseClosed, frames: Frames, now: float) -> None:
        self._perform(self._leasing.confirm_closed(m.lease_id, peer))

    def _on_kill_direct(self, peer: bytes, m: p.KillDirect, frames: Frames, now: float) -> None:
        self._leasing.kill_direct(peer, m.lease_id, m.attempt_id)

    def _on_return_lease(self, peer: bytes, m: p.ReturnLease, frames: Frames, now: float) -> None:
        self._leasing.return_lease(peer, m.lease_id)

    def _on_heartbeat(self, peer: bytes, m: p.Heartbeat, frames: Frames, now: float) -> None:
        self._perform(self.scheduler.heartbeat(m.worker, now))

    def _on_cancel(self, peer: bytes, m: p.Cancel, frames: Frames, now: float) -> None:
        self._perform(self.scheduler.cancel(peer, m.task_ids, m.force))

    def _on_client_hello(self, peer: bytes, m: p.ClientHello, frames: Frames, now: float) -> None:
        self._check_version(m.version)
        self._clients.hello(peer, m.sender, now)
        welcome = p.Welcome(
            p.PROTOCOL_VERSION, self.scheduler.total_slots, self.epoch, self.client_timeout / 4
        )
        self._send(peer, welcome)

    def _on_register(self, peer: bytes, m: p.Register, frames: Frames, now: float) -> None:
        self._check_version(m.version)
        for name, amount in m.resources.items():
            if not math.isfinite(amount) or amount < 0:
                raise p.ProtocolError(f"invalid resource {name}={amount}")
        if len(set(m.slot_ids)) != len(m.slot_ids) or len(m.slot_ids) > max(0, m.slots):
            raise p.ProtocolError(f"{len(m.slot_ids)} slot identities for {m.slots} slots")
        # "worker": its name, so a job master can pin a slice where the solver put it.
        labels = {"node": m.node, "worker": m.name, **m.labels}
        self._worker_names[peer] = m.name
        self._perform(
            self.scheduler.register_worker(
                peer,
                now=now,
                name=m.name,
                node=m.node,
                pid=m.pid,
                slots=m.slots,
                resources=m.resources,
                labels=labels,
                data_address=m.data_address,
                slot_ids=m.slot_ids,
            )
        )
        self._send(peer, p.Registered(self.heartbeat_interval, self.heartbeat_timeout))
        log.info("worker %s registered (%d slots)", m.name, m.slots)

    def _on_slot_hello(self, peer: bytes, m: p.SlotHello, frames: Frames, now: float) -> None:
        self._check_version(m.version)
        if m.direct and not m.direct.startswith(("tcp://", "ipc://")):
            raise p.ProtocolError(f"a direct endpoint must be tcp:// or ipc://: {m.direct}")
        self._leasing.slot_endpoint(peer, m.direct)
        # Stateless: the slot's worker registers it (Register or SlotReady) once it knows the
        # dispatcher can route to it, which this reply proves.
        self._send(peer, p.SlotWelcome())

    def _on_slot_ready(self, peer: bytes, m: p.SlotReady, frames: Frames, now: float) -> None:
        self._perform(self.scheduler.slot_ready(peer, m.slot, now))

    def _on_slot_lost(self, peer: bytes, m: p.SlotLost, frames: Frames, now: float) -> None:
        if m.status not in ("failed", "cancelled", "lost"):
            raise p.ProtocolError(f"a lost slot's attempt cannot end {m.status!r}")
        self._leasing.slot_gone(peer, m.slot, m.running, m.status, m.error)
        self._perform(self.scheduler.slot_lost(peer, m.slot, m.running, m.status, m.error, now))

    def _on_drain(self, peer: bytes, m: p.Drain, frames: Frames, now: float) -> None:
        self._leasing.close_worker(peer)
        self._perform(self.scheduler.drain_worker(peer, now))

    def _on_goodbye(self, peer: bytes, m: p.Goodbye, frames: Frames, now: float) -> None:
        self._perform(self.scheduler.deregister_worker(peer, now))

    def _on_client_bye(self, peer: bytes, m: p.ClientBye, frames: Frames, now: float) -> None:
        self._forget_client(peer)

    def _on_status_request(
        self, peer: bytes, m: p.StatusRequest, frames: Frames, now: float
    ) -> None:
        self._send(peer, self._status(now))

    def _on_job_update(self, peer: bytes, m: p.JobUpdate, frames: Frames, now: float) -> None:
        self._job_update(self._job_hosts.seen(m.job))

    def _on_jobs_request(self, peer: bytes, m: p.JobsRequest, frames: Frames, now: float) -> None:
        self._send(peer, p.JobsReply(list(self._jobs.values())))

    def _on_submit_job(self, peer: bytes, m: p.SubmitJob, frames: Frames, now: float) -> None:
        self._job_hosts.submit(peer, m, frames)

    def _on_job_payload_request(
        self, peer: bytes, m: p.JobPayloadRequest, frames: Frames, now: float
    ) -> None:
        self._job_hosts.payload(peer, m)

    def _on_job_host_report(
        self, peer: bytes, m: p.JobHostReport, frames: Frames, now: float
    ) -> None:
        self._job_hosts.report(m)

    # ---------------------------------------------------------------- for the handlers

    def _forget_client(self, client: bytes) -> None:
        self._clients.forget(client)
        self._leasing.close_client(client)
        self._perform(self.scheduler.client_gone(client))

    def _job_update(self, job: p.JobInfo) -> None:
        self._jobs.pop(job.job_id, None)  # re-inserted last: the dict stays in update order
        self._jobs[job.job_id] = job
        ended = [i for i, j in self._jobs.items() if j.state in _JOB_ENDED]
        for job_id in ended[: max(0, len(ended) - _KEEP_ENDED_JOBS)]:
            del self._jobs[job_id]

    @staticmethod
    def _check_version(version: int) -> None:
        if version != p.PROTOCOL_VERSION:
            raise p.ProtocolError(
                f"protocol version {version} is not supported (this dispatcher speaks "
                f"version {p.PROTOCOL_VERSION})"
            )

    # ------------------------------------------------------------------- instructions

    def _perform(self, instructions: list[s.Instruction]) -> None:
        for ins in instructions:
            match ins:
                case s.Resolve():
                    self._outbox.result(ins)
                case s.RunAttempts(worker=worker, slot=slot, attempts=attempts):
                    if self._send_run(slot, attempts):
                        for _, payload in attempts:
                            task = cast(_Payload, payload)
                            if task.lease_for:  # once: not again if it is retried
                                name = self._worker_names.get(worker, "")
                                self._leasing.grant(task.lease_for, slot, worker, name)
                                task.lease_for = b""
                    else:
                        # Dead (its worker reports that soon) or cut off from us while its
                        # worker is not: either way it gets nothing more, and its worker is
                        # asked to replace it (a no-op for a slot replaced already). The
                        # worker's SlotLost names the attempt it was running: only then is
                        # what it held settled (a task that crashes its slot must not come
                        # back uncounted).
                        self._perform(self.scheduler.slot_unreachable(worker, slot))
                        self._send(worker, p.ReplaceSlot(slot))
                case s.NotifyStarted(client=client, task_ids=ids):
                    self._outbox.started(client, ids)
                case s.KillAttempts(worker=worker, slot=slot, attempt_ids=ids):
                    self._send(slot, p.Kill(ids))
                    self._send(worker, p.Kill(ids))
                case s.ReleaseWorker(worker=worker):
                    self._send(worker, p.Goodbye())
                case s.AskToReregister(worker=worker):
                    self._send(worker, p.Reregister())
                case s.ForgetWorker(worker=worker, reason=reason):
                    self._leasing.worker_gone(worker, reason)
                    name = self._worker_names.pop(worker, worker.hex())
                    level = (
                        logging.INFO if reason in ("drained", "deregistered") else logging.WARNING
                    )
                    log.log(level, "worker %s removed: %s", name, reason)

    def _send_run(self, slot: bytes, attempts: list[tuple[int, object]]) -> bool:
        frames: list[FrameLike] = []
        placed: dict[int, int] = {}
        specs = []
        for attempt_id, payload in attempts:
            assert isinstance(payload, _Payload)
            specs.append(
                p.RunSpec(
                    attempt_id,
                    payload.kind,
                    rebase(payload.fn, payload.frames, frames, placed),
                    rebase(payload.args, payload.frames, frames, placed),
                    payload.priority,
                )
            )
        return self._send(slot, p.Run(specs), frames)

    def _status(self, now: float) -> p.StatusReply:
        snap = self.scheduler.snapshot(now)
        c = snap.counters
        return p.StatusReply(
            # The scheduler's own snapshots, heartbeat ages to the millisecond.
            workers=[
                msgspec.structs.replace(
                    w, seconds_since_heartbeat=round(w.seconds_since_heartbeat, 3)
                )
                for w in snap.workers
            ],
            queued=snap.queued,
            running=snap.running,
            finished=c.finished,
            failed=c.failed,
            cancelled=c.cancelled,
            retried=c.retried,
            discarded_late_results=c.discarded_late_results,
            protocol_errors=self.protocol_errors,
        )


def _leasable(spec: p.TaskSpec) -> bool:
    # A lease is for a client's lone plain calls: a task with demands of its own must go
    # where the scheduler places it.
    return spec.kind == p.KIND_CALL and not spec.resources and not spec.labels


def run_dispatcher(
    bind: str,
    *,
    heartbeat_interval: float = 1.0,
    heartbeat_timeout: float = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    prefetch: int = DEFAULT_PREFETCH,
    exit_with_parent: int = 0,
    announce: bool = True,
    job_masters: bool = True,
    client_timeout: float = 30.0,
) -> None:
    """Run a dispatcher in this process until SIGTERM/SIGINT."""
    import signal

    # Every task's frames pass through here and queued ones pile up: keep what they used.
    keep_large_buffers(_KEEP_FREE)
    collect_less_often()

    dispatcher = Dispatcher(
        bind,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        max_message_size=max_message_size,
        prefetch=prefetch,
        exit_with_parent=exit_with_parent,
        job_masters=job_masters,
        client_timeout=client_timeout,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: dispatcher.stop())
    if announce:
        # LocalCluster reads this line to learn the port when binding to ":*" or ":0".
        print(f"pydispatch dispatcher listening on {dispatcher.endpoint}", flush=True)
    dispatcher.serve_forever()
