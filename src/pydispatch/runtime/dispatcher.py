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

import functools
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec
import zmq

from ..monitor.recorder import Recorder
from ..monitor.view import DispatcherView
from ..scheduling import scheduler as s
from ..scheduling.placer import Placer
from ..scheduling.prefetch import DEFAULT_PREFETCH  # re-exported: the CLI's default
from ..scheduling.solver_placer import SolverStats, solver_placer
from ..wire import protocol as p
from ..wire.addresses import advertised
from ..wire.security import AdminTokens, Gate, Keys
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
from .access import Access, JobKeys, RefusedError, serve_keys
from .admin import AdminDesk
from .client_book import ClientBook
from .heartbeat_pacing import DEFAULT_MAX_HEARTBEATS, HeartbeatPacing
from .job_desk import JobDesk
from .job_store import JobStore, SqliteJobStore, store_path
from .leasing import Leasing
from .memory import collect_less_often, keep_large_buffers
from .monitoring import Monitoring
from .outbox import STARTED_DELAY, Outbox
from .reconnect import take_over_identities
from .task_pickling import byte_bounded

__all__ = ["DEFAULT_PREFETCH", "LISTEN_BACKLOG", "PEER_QUEUE", "Dispatcher", "run_dispatcher"]

log = logging.getLogger(__name__)

# Connections waiting to be accepted (TCP listen backlog; zmq's default is 100). A herd of
# workers (a thousand, four connections each, at a dispatcher (re)start) overflows 100, and the
# kernel's SYN retries (1 s, then 3 s) made a staircase of their registration. Linux caps it at
# net.core.somaxconn (4096 by default since 5.4; lower on older kernels: raise it there).
LISTEN_BACKLOG: Final = 4096
_KEEP_FREE: Final = 256 << 20  # freed heap the dispatcher keeps for the next large frames
_BATCH: Final = 4096  # messages handled before a placement round, at most
_MAX_COUNT: Final = 1 << 24  # direct attempts a slot may count in one Done (0.2 s of them)
# Messages queued for one peer, at most: beyond, what is sent to it is dropped (and logged
# once). A peer's own libzmq reads eagerly, so only a peer that stopped reading (or never
# reads) fills this: its memory in this process stays bounded.
PEER_QUEUE: Final = 10_000

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
    owner: bytes  # its client's identity and task id, sent with each attempt (RunSpec.owner)
    task_id: int
    lease_for: bytes = b""  # this client asked for a lease on the slot this task goes to
    queued_at: float = 0.0  # when it was submitted (time.monotonic()), for the metrics
    placed: bool = False  # an attempt of it was placed (the metrics count the next as retried)


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
        metrics: bool = True,
        keys: Keys | None = None,
        job_store: JobStore | None = None,
        still_leading: Callable[[], bool] | None = None,
        max_heartbeat_rate: float = DEFAULT_MAX_HEARTBEATS,
    ) -> None:
        # Monitoring (issue 16): counters the loop bumps, views it hands the HTTP thread.
        self._recorder = Recorder() if metrics else None
        self._monitoring = monitoring = Monitoring(self._recorder)
        self._solver_stats = SolverStats()
        if metrics and placer is solver_placer:
            placer = functools.partial(solver_placer, stats=self._solver_stats)
        # A client with tasks outstanding says hello every client_timeout / 4 seconds; one
        # silent for client_timeout has its queued tasks dropped (running ones finish): a
        # client killed outright must not keep the cluster busy, nor its fair share.
        self.client_timeout = client_timeout
        # Stop when the process with this pid is no longer our parent (LocalCluster sets it).
        self._exit_with_parent = exit_with_parent
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self._pacing = HeartbeatPacing(heartbeat_interval, heartbeat_timeout, max_heartbeat_rate)
        self.scheduler = s.Scheduler(
            heartbeat_timeout=heartbeat_timeout,
            placer=placer,
            prefetch=prefetch,
            # Above any id a previous incarnation used (2**20 a millisecond since it started):
            # its attempts may still be reported by slots that outlived it.
            first_attempt_id=(time.time_ns() // 1_000_000) << 20,
        )
        self._context: zmq.Context[Any] = zmq.Context()
        self._socket: Socket = make_socket(
            self._context, zmq.ROUTER, max_message_size=max_message_size
        )
        self._socket.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)  # issue 21: before bind
        take_over_identities(self._socket)  # issue 14: peers reconnecting after a link cut
        self._socket.setsockopt(zmq.SNDHWM, PEER_QUEUE)
        self._socket.setsockopt(zmq.RCVHWM, PEER_QUEUE)
        self._dropped: dict[bytes, int] = {}  # peers whose queue overflowed (logged once)
        self._access: Access | None = None
        self._gate: Gate | None = None
        job_keys: JobKeys | None = None
        if keys is not None:  # CURVE, and only known keys in their roles (see access)
            access = serve_keys(self._context, self._socket, keys, self._forget_if_client)
            self._access, self._gate, job_keys = access
        self._socket.bind(bind)
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self.epoch = uuid.uuid4().hex  # tells clients apart a restarted dispatcher
        key_of = self._access.key_of if self._access is not None else None
        labels, knows_peer = monitoring.labels, self.scheduler.knows_peer
        self._clients = ClientBook(client_timeout, knows_peer, labels, key_of)
        self._worker_names: dict[bytes, str] = {}
        # The direct lanes, granted here.
        self._leasing = Leasing(self.scheduler, self._send, key_of)
        self.protocol_errors = 0
        # What clients hear of their tasks, flushed once per loop iteration.
        self._outbox = Outbox(self._send, self._forget_client, monitoring.resolved)
        # Dataflow jobs: listed, kept in the store if there is one, their masters hosted.
        peers = self._access.peers if self._access is not None else None
        self._jobs = JobDesk(
            self.endpoint, self._send, self._access, job_keys, job_masters, job_store, peers
        )
        self._admin = AdminDesk(
            self.scheduler,
            self._leasing,
            self._worker_names,
            self._access,
            self._perform,
            self._send,
        )
        self._handlers = self._handler_table()
        # With standbys (pg_store): checked every tick; a deposed leader stops serving.
        self._still_leading = still_leading
        self.deposed = False

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
                    began = time.monotonic()
                    self._receive_batch()
                else:
                    began = time.monotonic()
                now = time.monotonic()
                if now >= next_tick:
                    if self._exit_with_parent and os.getppid() != self._exit_with_parent:
                        log.warning("the process that started this dispatcher is gone: exiting")
                        return
                    if (paused := now - next_tick) > self.heartbeat_timeout / 2:
                        log.warning("did not run for %.1f s: not the workers' silence", paused)
                        self._perform(self.scheduler.dispatcher_paused(paused, now))
                    next_tick = now + tick_every
                    if self._still_leading is not None and not self._still_leading():
                        log.error("this dispatcher no longer leads (its lock session ended, or "
                                  "another took the lead): stopping")  # fmt: skip
                        self.deposed = True
                        return
                    _guarded(lambda: self._perform(self.scheduler.tick(time.monotonic())))
                    _guarded(lambda: self._drop_silent_clients(time.monotonic()))
                    _guarded(self._jobs.hosts.reap)
                    _guarded(self._jobs.sweep)  # shared-memory files of outcomes gone
                _guarded(lambda: self._perform(self.scheduler.schedule()))
                if self.scheduler.waiting and self._leasing.any_open:
                    # Tasks wait for a slot: leased ones go back to work once their direct
                    # attempts are done (see Leasing).
                    _guarded(self._leasing.close_all)
                _guarded(self._outbox.flush)
                # monitoring: the loop's own latency; views asked for by the HTTP thread.
                if self._recorder is not None:
                    self._recorder.loop.observe(time.monotonic() - began)
                if self._monitoring.views.waiting:
                    _guarded(lambda: self._monitoring.views.serve(self._monitor_view))
        finally:
            self._jobs.close()  # no job master outlives its dispatcher
            self._socket.close(linger=0)
            if self._gate is not None:
                self._gate.stop()
            self._context.term()

    def _drop_silent_clients(self, now: float) -> None:
        # Not failed: a client only cut off sends its unresolved tasks again when it is back.
        for client, silence in self._clients.silent(now):
            if dropped := self.scheduler.drop_queued(client):
                why = "client %r silent for %.1f s (presumed gone): %d queued task(s) dropped"
                log.warning(why, client, silence, dropped, extra={"client": client.hex()})

    def _receive_batch(self) -> None:
        for _ in range(_BATCH):
            try:
                parts = recv_parts(self._socket, zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handle_parts(parts)

    def _handle_parts(self, parts: Frames) -> None:
        if self._recorder is not None:
            self._recorder.messages_in += 1
            if len(parts) > 3:  # identity, empty delimiter, header, then the payload frames
                self._recorder.payload_bytes_in += sum(map(len, parts[3:]))
        routing = parts[0].bytes
        identity = self._clients.senders.get(routing, routing)  # a client's sending socket
        try:
            # Who sent it, before anything is decoded; may it send this kind, before it is
            # handled (nothing here unpickles; slots and job masters get only what passed).
            peer = self._access.peer(parts[-1]) if self._access is not None else None
            _, body = split_envelope(parts, routed=True)
            message, frames = parse(body)
            if peer is not None:
                self._access.admit(peer, routing, identity, message)  # type: ignore[union-attr]
            self._handle(identity, message, frames)
        except RefusedError as refusal:
            self.protocol_errors += 1
            if refusal.reply:  # once per key (a hostile peer gets no stream of answers)
                self._send(routing, p.Error("forbidden", str(refusal)))
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
            send(self._socket, message, frames or (), identity=identity, noblock=True)
        except zmq.Again:  # that peer's queue is full: it does not read (see PEER_QUEUE)
            dropped = self._dropped.get(identity, 0)
            if not dropped:
                if len(self._dropped) >= PEER_QUEUE:
                    self._dropped.clear()
                log.warning(
                    "dropped a %s to %r: %d messages wait for it already (it does not read; "
                    "logged once per peer)",
                    type(message).__name__,
                    identity,
                    PEER_QUEUE,
                )
            self._dropped[identity] = dropped + 1
            return False
        except zmq.ZMQError as error:  # EHOSTUNREACH: that peer is gone
            log.info("could not send %s to %r: %s", type(message).__name__, identity, error)
            return False
        if self._recorder is not None:
            self._recorder.messages_out += 1
            if frames:
                self._recorder.payload_bytes_out += sum(frame_sizes(frames))
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
            **self._jobs.handlers(),
            **self._admin.handlers(),
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
                peer,
                spec.task_id,
                queued_at=now,
            )
            if m.lease and len(m.tasks) == 1 and _leasable(spec):
                payload.lease_for = peer
            new.append(
                s.NewTask(
                    spec.task_id, payload, spec.resources, spec.labels, spec.priority, spec.retries
                )
            )
        if self._recorder is not None:
            self._monitoring.submitted(peer, new, now)
        self._perform(refused + self.scheduler.submit(peer, new))

    def _on_done(self, peer: bytes, m: p.Done, frames: Frames, now: float) -> None:
        finished, cancelled = m.direct_finished, m.direct_cancelled
        if not (0 <= finished <= _MAX_COUNT and 0 <= cancelled <= _MAX_COUNT):
            raise p.ProtocolError(f"implausible counts {finished}, {cancelled}")
        # Only a registered slot counts (a removed one's results are discarded below).
        if (finished or cancelled) and self.scheduler.knows_slot(peer):
            self.scheduler.count_direct(finished, cancelled)
        if m.started:
            if len(m.started) > _MAX_COUNT:
                raise p.ProtocolError(f"implausibly many started attempts: {len(m.started)}")
            self._perform(self.scheduler.attempts_started(peer, m.started))
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
                    result.attempt_id,
                    status,
                    value,
                    error,
                    result.traceback,
                    result.seconds,
                    result.owner,
                    result.task_id,
                )
            )
        if self._recorder is not None:
            self._monitoring.ran(outcomes)
        self._perform(self.scheduler.attempts_finished(peer, outcomes, now))
        if m.sync:  # a slot's barrier (see Done.sync): after every Kill sent to it so far
            self._send(peer, p.Kill([], m.sync))

    def _on_lease_closed(self, peer: bytes, m: p.LeaseClosed, frames: Frames, now: float) -> None:
        self._perform(self._leasing.confirm_closed(m.lease_id, peer))

    def _on_kill_direct(self, peer: bytes, m: p.KillDirect, frames: Frames, now: float) -> None:
        self._leasing.kill_direct(peer, m.lease_id, m.attempt_id)

    def _on_return_lease(self, peer: bytes, m: p.ReturnLease, frames: Frames, now: float) -> None:
        self._leasing.return_lease(peer, m.lease_id)

    def _on_heartbeat(self, peer: bytes, m: p.Heartbeat, frames: Frames, now: float) -> None:
        if self.scheduler.knows_worker(m.worker):  # no table entries for strangers
            self._monitoring.usage[m.worker] = (m.cpu_seconds, m.rss_bytes)
            if (again := self._pacing.retell(m.worker, self.epoch)) is not None:
                self._send(m.worker, again)  # to its main socket (this came on another)
        self._perform(self.scheduler.heartbeat(m.worker, now))

    def _on_cancel(self, peer: bytes, m: p.Cancel, frames: Frames, now: float) -> None:
        # Tasks submitted before are placed first, as if each message were handled alone:
        # read in one batch with their submission, all would be cancelled before any ran
        # (shutdown(cancel_futures=True) just after submit: the standard executors run some).
        self._perform(self.scheduler.schedule())
        self._perform(self.scheduler.cancel(peer, m.task_ids, m.force))

    def _on_client_hello(self, peer: bytes, m: p.ClientHello, frames: Frames, now: float) -> None:
        _check_version(m.version)
        self._clients.hello(peer, m.sender, now, m.name)
        welcome = p.Welcome(
            p.PROTOCOL_VERSION, self.scheduler.total_slots, self.epoch, self.client_timeout / 4
        )
        self._send(peer, welcome)

    def _on_register(self, peer: bytes, m: p.Register, frames: Frames, now: float) -> None:
        _check_register(m)
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
        self._send(peer, self._pacing.registered(peer, self.epoch))  # its heartbeat interval
        log.info("worker %s registered (%d slots)", m.name, m.slots, extra={"worker": m.name})

    def _on_slot_hello(self, peer: bytes, m: p.SlotHello, frames: Frames, now: float) -> None:
        _check_version(m.version)
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
        reply = _status_reply(self.scheduler.snapshot(now), self.protocol_errors)
        self._send(peer, self._access.status_for_peer(reply) if self._access else reply)

    # ---------------------------------------------------------------- for the handlers

    def _forget_if_client(self, identity: bytes) -> None:
        if identity in self._clients:
            self._forget_client(identity)

    def _forget_client(self, client: bytes) -> None:
        if self._access is not None:
            self._access.forget(client)
        self._clients.forget(client)
        self._leasing.close_client(client)
        self._perform(self.scheduler.client_gone(client))

    # ------------------------------------------------------------------- instructions

    def _perform(self, instructions: list[s.Instruction]) -> None:
        for ins in instructions:
            match ins:
                case s.Resolve():  # counted, and a failure logged, by the monitor
                    self._outbox.result(ins)
                case s.RunAttempts(worker=worker, slot=slot, attempts=attempts):
                    if self._recorder is not None:
                        self._monitoring.placed(attempts, time.monotonic())
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
                case s.KillAttempts(worker=worker, slot=slot, attempt_ids=ids, force=force):
                    self._send(slot, p.Kill(ids))
                    if force:
                        self._send(worker, p.Kill(ids))
                case s.ReleaseWorker(worker=worker):
                    self._send(worker, p.Goodbye())
                case s.AskToReregister(worker=worker):
                    self._send(worker, p.Reregister(self.epoch))
                case s.ForgetWorker(worker=worker, reason=reason):
                    self._pacing.forget(worker)
                    self._monitoring.worker_removed(worker, reason)
                    self._leasing.worker_gone(worker, reason)
                    name = self._worker_names.pop(worker, worker.hex())
                    level = (
                        logging.INFO if reason in ("drained", "deregistered") else logging.WARNING
                    )
                    log.log(level, "worker %s removed: %s", name, reason, extra={"worker": name})

    def _send_run(self, slot: bytes, attempts: list[tuple[int, object]]) -> bool:
        return all(self._send(slot, run, frames) for run, frames in _run_messages(attempts))

    # --------------------------------------------------------------------- monitoring

    def view(self, timeout: float = 5.0) -> DispatcherView:
        """A picture of this dispatcher for the monitor (any thread: the loop makes it)."""
        return self._monitoring.views.get(timeout)

    def _monitor_view(self) -> DispatcherView:
        snapshot = self.scheduler.snapshot(time.monotonic(), by_client=self._monitoring.walk_due())
        return self._monitoring.view(
            snapshot, self._worker_names, self._jobs.listed(), self._solver_stats, self.endpoint,
            self.epoch, self.protocol_errors,
        )  # fmt: skip


def _run_messages(
    attempts: list[tuple[int, object]],
) -> Iterator[tuple[p.Run, list[FrameLike]]]:
    """A slot's attempts as ``Run`` messages of about ``MESSAGE_BYTES`` each: a window of
    large arguments in one message would reach the slot only once all of it had."""
    for batch in byte_bounded(attempts, lambda a: cast(_Payload, a[1]).frames, len(attempts)):
        frames: list[FrameLike] = []
        placed: dict[int, int] = {}
        specs = []
        for attempt_id, payload in batch:
            assert isinstance(payload, _Payload)
            specs.append(
                p.RunSpec(
                    attempt_id,
                    payload.kind,
                    rebase(payload.fn, payload.frames, frames, placed),
                    rebase(payload.args, payload.frames, frames, placed),
                    payload.priority,
                    payload.owner,
                    payload.task_id,
                )
            )
        yield p.Run(specs), frames


def _status_reply(snap: s.Snapshot, protocol_errors: int) -> p.StatusReply:
    c = snap.counters
    return p.StatusReply(
        # The scheduler's own snapshots, heartbeat ages to the millisecond.
        workers=[
            msgspec.structs.replace(w, seconds_since_heartbeat=round(w.seconds_since_heartbeat, 3))
            for w in snap.workers
        ],
        queued=snap.queued,
        running=snap.running,
        finished=c.finished,
        failed=c.failed,
        cancelled=c.cancelled,
        retried=c.retried,
        discarded_late_results=c.discarded_late_results,
        protocol_errors=protocol_errors,
    )


def _guarded(step: Callable[[], None]) -> None:
    # A bug in one round must not take every client's work down with the dispatcher.
    try:
        step()
    except Exception:
        log.exception("error in the dispatcher loop (continuing)")


def _check_version(version: int) -> None:
    if version != p.PROTOCOL_VERSION:
        raise p.ProtocolError(
            f"protocol version {version} is not supported (this dispatcher speaks "
            f"version {p.PROTOCOL_VERSION})"
        )


def _check_register(m: p.Register) -> None:
    _check_version(m.version)
    for name, amount in m.resources.items():
        if not math.isfinite(amount) or amount < 0:
            raise p.ProtocolError(f"invalid resource {name}={amount}")
    if len(set(m.slot_ids)) != len(m.slot_ids) or len(m.slot_ids) > max(0, m.slots):
        raise p.ProtocolError(f"{len(m.slot_ids)} slot identities for {m.slots} slots")


def _leasable(spec: p.TaskSpec) -> bool:
    # A lease is for a client's lone plain calls: a task with demands of its own must go
    # where the scheduler places it.
    return spec.kind == p.KIND_CALL and not spec.resources and not spec.labels


def run_dispatcher(
    bind: str,
    *,
    heartbeat_interval: float = 1.0,
    heartbeat_timeout: float = 10.0,
    max_heartbeat_rate: float = DEFAULT_MAX_HEARTBEATS,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    prefetch: int = DEFAULT_PREFETCH,
    exit_with_parent: int = 0,
    announce: bool = True,
    job_masters: bool = True,
    client_timeout: float = 30.0,
    metrics: bool = True,
    http: str | None = None,
    http_insecure: bool = False,
    http_fallback: bool = False,
    keys: Keys | None = None,
    state_dir: str | None = None,
    ha: str = "",
    advertise_host: str = "",
) -> None:
    """Run a dispatcher in this process until SIGTERM/SIGINT; with ``http`` (``HOST:PORT``),
    serve its metrics, JSON API and dashboard there (see :mod:`pydispatch.monitor.http`); with
    ``keys``: CurveZMQ, and only the keys of their directory, each in its role. With
    ``state_dir``, accepted dataflow jobs are kept in a store there (one per ``bind`` address)
    and the unfinished ones run again when a dispatcher starts there again; ``JobStoreError``
    if it is unreadable. With ``ha`` (a PostgreSQL URL) the store is there instead, shared by
    standby dispatchers: until this one leads, it answers on ``bind`` with the leader's
    address (see ``standby``), and it names itself by ``bind`` with a wildcard host replaced
    by ``advertise_host`` (or this host's name)."""
    import signal

    # Every task's frames pass through here and queued ones pile up: keep what they used.
    keep_large_buffers(_KEEP_FREE)
    collect_less_often()

    store: JobStore | None = SqliteJobStore(store_path(state_dir, bind)) if state_dir else None
    leading: Callable[[], bool] | None = None
    if ha:
        advertised_as = advertised(bind, advertise_host or socket.gethostname())
        store, leading = _lead(ha, bind, advertised_as, keys, heartbeat_interval,
                               heartbeat_timeout, announce)  # fmt: skip
    dispatcher = Dispatcher(
        bind,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        max_heartbeat_rate=max_heartbeat_rate,
        max_message_size=max_message_size,
        prefetch=prefetch,
        exit_with_parent=exit_with_parent,
        job_masters=job_masters,
        client_timeout=client_timeout,
        metrics=metrics,
        keys=keys,
        job_store=store,
        still_leading=leading,
    )
    server = None
    if http:
        from ..monitor.http import MonitorServer  # only a dispatcher serving HTTP pays for it

        # With keys, every request needs an admin's token (and may then come from anywhere).
        tokens = AdminTokens(keys).check if keys is not None else None
        server = MonitorServer(
            http, dispatcher.view, insecure=http_insecure, fallback=http_fallback, tokens=tokens
        )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: dispatcher.stop())
    if announce:
        # LocalCluster reads this line to learn the port when binding to ":*" or ":0".
        print(f"pydispatch dispatcher listening on {dispatcher.endpoint}", flush=True)
        if server is not None:  # LocalCluster reads this second line when it asked for HTTP
            print(f"pydispatch dashboard and metrics at {server.url}", flush=True)
    try:
        dispatcher.serve_forever()
    finally:
        if server is not None:
            server.close()
    if dispatcher.deposed:
        raise SystemExit(3)


def _lead(
    dsn: str,
    bind: str,
    advertised_as: str,
    keys: Keys | None,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    announce: bool,
) -> tuple[JobStore, Callable[[], bool]]:
    """Wait as a standby until this dispatcher leads; its fenced store and leadership check."""
    from .pg_store import Leadership, PostgresJobStore
    from .standby import wait_as_standby

    leadership = Leadership(dsn, advertised_as, heartbeat_timeout)
    told = ""

    def standby(leader: str) -> None:
        nonlocal told
        if announce and leader != told:  # (LocalCluster-style readers wait for "listening")
            print(f"pydispatch dispatcher standby: the leader is at {leader}", flush=True)
            told = leader

    epoch = wait_as_standby(leadership, bind, keys, heartbeat_interval, standby)
    log.warning("this dispatcher leads (epoch %d)", epoch)
    return PostgresJobStore(dsn, epoch), leadership.still_leading
