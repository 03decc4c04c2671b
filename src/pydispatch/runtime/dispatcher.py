"""The dispatcher process: one ROUTER socket for clients and workers, and the glue that feeds
the scheduler events and performs its instructions.

The loop drains every message that is ready (up to a batch), then runs one placement round and
flushes what it produced: one ``Run`` per worker and one ``Results``/``Started`` per client per
round, however many tasks they carry. That is the whole batching story: when the dispatcher is
busy, rounds grow and messages coalesce; when it is idle, a task goes out alone at once.

Nothing a peer sends can crash the loop: malformed, unknown, wrong-version or inconsistent messages
get an :class:`~pydispatch.wire.protocol.Error` reply (or are logged and dropped if there is nobody
to reply to); oversized ones never reach Python (``ZMQ_MAXMSGSIZE`` disconnects the peer).
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

import zmq

from ..scheduling import scheduler as s
from ..scheduling.leases import Lease, Leases
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
from .job_masters import JobHosts
from .memory import collect_less_often, keep_large_buffers

__all__ = ["DEFAULT_PREFETCH", "Dispatcher", "run_dispatcher"]

log = logging.getLogger(__name__)

# Attempts queued on a slot beyond the running one, at most (the scheduler also bounds them
# by about 2 ms of measured work, so this cap binds only for tasks under ~30 us): small tasks
# then never wait for a dispatcher round trip, and a slot that never runs dry is never woken
# (on 2 cores, waking one cost the dispatcher more than sending it work: 16 -> 64 took 10k
# no-ops from ~42k to ~56k tasks/s). 0 = exact priorities and fair share.
DEFAULT_PREFETCH: Final = 64

_KEEP_FREE: Final = 256 << 20  # freed heap the dispatcher keeps for the next large frames
_BATCH: Final = 4096  # messages handled before a placement round, at most
_JOB_ENDED: Final = frozenset({"FINISHED", "FAILED", "CANCELED"})
_KEEP_ENDED_JOBS: Final = 100  # ended dataflow jobs listed by `pydispatch jobs`
_RESULTS_PER_MESSAGE: Final = 2048
_MAX_COUNT: Final = 1 << 24  # direct attempts a slot may count in one Done (0.2 s of them)
# "Started" notices wait this long for a result to ride with: a short task then costs its
# client one message, not two (``future.running()`` turns true up to this much later).
_STARTED_DELAY: Final = 0.002


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
        self._client_seen: dict[bytes, float] = {}
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
        self._socket.bind(bind)
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self.epoch = uuid.uuid4().hex  # tells clients apart a restarted dispatcher
        self._clients: set[bytes] = set()
        # A client's second (sending) socket -> the client's identity (see ClientHello.sender).
        self._senders: dict[bytes, bytes] = {}
        self._sender_of: dict[bytes, bytes] = {}  # and back
        self._worker_names: dict[bytes, str] = {}
        self._leases = Leases()
        self.protocol_errors = 0
        # Per-round outgoing buffers, flushed once per loop iteration.
        self._results: dict[bytes, list[s.Resolve]] = {}
        # Per client: when its oldest pending notice came, and the task ids started since.
        self._started: dict[bytes, tuple[float, list[int]]] = {}
        self._jobs: dict[str, p.JobInfo] = {}  # dataflow jobs, as their masters announce them
        # Submitted dataflow jobs' master processes (spawned, tracked, reaped there).
        self._job_hosts = JobHosts(
            self.endpoint, self._send, self._jobs, self._job_update, enabled=job_masters
        )

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
                if self._started:
                    wait_ms = min(wait_ms, 1 + int(_STARTED_DELAY * 1000))
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
                if self.scheduler.waiting and self._leases.any_open:
                    # Tasks wait for a slot: leased ones go back to work once their direct
                    # attempts are done (see _leases).
                    self._guarded(lambda: self._close_leases(self._leases.close_all()))
                self._guarded(self._flush)
        finally:
            self._job_hosts.close()  # no job master outlives its dispatcher
            self._socket.close(linger=0)
            self._context.term()

    def _silent_clients(self, now: float) -> list[s.Instruction]:
        out: list[s.Instruction] = []
        for client, seen in list(self._client_seen.items()):
            if now - seen > self.client_timeout:
                self._client_seen[client] = now  # its clock restarts: no work each tick
                reason = f"its client was silent for {now - seen:.1f} s (presumed gone)"
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

    def _handle_parts(self, parts: list[zmq.Frame]) -> None:
        identity = parts[0].bytes
        identity = self._senders.get(identity, identity)  # a client's sending socket: the client
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

    def _handle(self, identity: bytes, message: p.Message, frames: list[zmq.Frame]) -> None:
        now = time.monotonic()
        if identity in self._client_seen:
            self._client_seen[identity] = now
        match message:
            case p.Submit(tasks=tasks, lease=ask_lease):
                if identity not in self._clients:
                    raise p.ProtocolError("send ClientHello before Submit")
                self._perform(self._submit(identity, tasks, frames, ask_lease))
            case p.Done(results=results, direct_finished=finished, direct_cancelled=cancelled):
                if not (0 <= finished <= _MAX_COUNT and 0 <= cancelled <= _MAX_COUNT):
                    raise p.ProtocolError(f"implausible counts {finished}, {cancelled}")
                # Only a registered slot counts (a removed one's results are discarded below).
                if (finished or cancelled) and self.scheduler.knows_slot(identity):
                    self.scheduler.count_direct(finished, cancelled)
                self._perform(self._done(identity, results, frames, now))
            case p.LeaseClosed(lease_id=lease_id):
                lease = self._leases.confirm_closed(lease_id, identity)
                if lease is not None:
                    self._perform(self.scheduler.unlease_slot(lease.worker, lease.slot))
            case p.KillDirect(lease_id=lease_id, attempt_id=attempt_id):
                self._kill_direct(identity, lease_id, attempt_id)
            case p.ReturnLease(lease_id=lease_id):
                lease = self._leases.get(lease_id, identity)
                if lease is not None and lease.open:
                    self._close_leases(self._leases.close_client(identity))
            case p.Heartbeat(worker=worker):
                self._perform(self.scheduler.heartbeat(worker, now))
            case p.Cancel(task_ids=task_ids, force=force):
                self._perform(self.scheduler.cancel(identity, task_ids, force))
            case p.ClientHello(version=version, sender=sender):
                self._check_version(version)
                if sender:
                    self._add_sender(identity, sender)
                self._clients.add(identity)
                self._client_seen[identity] = now
                welcome = p.Welcome(
                    p.PROTOCOL_VERSION,
                    self.scheduler.total_slots,
                    self.epoch,
                    self.client_timeout / 4,
                )
                self._send(identity, welcome)
            case p.Register() as register:
                self._check_version(register.version)
                for name, amount in register.resources.items():
                    if not math.isfinite(amount) or amount < 0:
                        raise p.ProtocolError(f"invalid resource {name}={amount}")
                if len(set(register.slot_ids)) != len(register.slot_ids) or len(
                    register.slot_ids
                ) > max(0, register.slots):
                    raise p.ProtocolError(
                        f"{len(register.slot_ids)} slot identities for {register.slots} slots"
                    )
                # "worker": its name, so a job master can pin a slice where the solver put it.
                labels = {"node": register.node, "worker": register.name, **register.labels}
                self._worker_names[identity] = register.name
                self._perform(
                    self.scheduler.register_worker(
                        identity,
                        now=now,
                        name=register.name,
                        node=register.node,
                        pid=register.pid,
                        slots=register.slots,
                        resources=register.resources,
                        labels=labels,
                        data_address=register.data_address,
                        slot_ids=register.slot_ids,
                    )
                )
                self._send(identity, p.Registered(self.heartbeat_interval, self.heartbeat_timeout))
                log.info("worker %s registered (%d slots)", register.name, register.slots)
            case p.SlotHello(version=version, direct=direct):
                self._check_version(version)
                if direct and not direct.startswith(("tcp://", "ipc://")):
                    raise p.ProtocolError(f"a direct endpoint must be tcp:// or ipc://: {direct}")
                self._leases.slot_endpoint(identity, direct)
                # Stateless: the slot's worker registers it (Register or SlotReady) once it
                # knows the dispatcher can route to it, which this reply proves.
                self._send(identity, p.SlotWelcome())
            case p.SlotReady(slot=slot):
                self._perform(self.scheduler.slot_ready(identity, slot, now))
            case p.SlotLost(slot=slot, running=running, status=status, error=error):
                if status not in ("failed", "cancelled", "lost"):
                    raise p.ProtocolError(f"a lost slot's attempt cannot end {status!r}")
                self._end_leases(self._leases.slot_gone(identity, slot), running, status, error)
                self._perform(self.scheduler.slot_lost(identity, slot, running, status, error, now))
            case p.Drain():
                self._close_leases(self._leases.close_worker(identity))
                self._perform(self.scheduler.drain_worker(identity, now))
            case p.Goodbye():
                self._perform(self.scheduler.deregister_worker(identity, now))
            case p.ClientBye():
                self._forget_client(identity)
            case p.StatusRequest():
                self._send(identity, self._status(now))
            case p.JobUpdate(job=job):
                self._job_update(self._job_hosts.seen(job))
            case p.JobsRequest():
                self._send(identity, p.JobsReply(list(self._jobs.values())))
            case p.SubmitJob():
                self._job_hosts.submit(identity, message, frames)
            case p.JobPayloadRequest():
                self._job_hosts.payload(identity, message)
            case p.JobHostReport():
                self._job_hosts.report(message)
            case _:
                raise p.ProtocolError(f"a dispatcher does not accept {type(message).__name__}")

    def _add_sender(self, client: bytes, sender: bytes) -> None:
        owner = self._senders.get(sender)
        if (
            sender == client
            or sender in self._clients
            or owner not in (None, client)
            or self.scheduler.knows_peer(sender)
        ):
            raise p.ProtocolError("the hello names a sender identity that is taken")
        previous = self._sender_of.get(client)
        if previous is not None and previous != sender:
            del self._senders[previous]  # one sending socket per client
        self._senders[sender] = client
        self._sender_of[client] = sender

    def _forget_client(self, client: bytes) -> None:
        self._clients.discard(client)
        self._client_seen.pop(client, None)
        sender = self._sender_of.pop(client, None)
        if sender is not None:
            del self._senders[sender]
        self._close_leases(self._leases.close_client(client))
        self._perform(self.scheduler.client_gone(client))

    # ------------------------------------------------------------------------ leases

    def _grant_lease(self, client: bytes, slot: bytes, worker: bytes) -> None:
        # A client asks only when it holds no lease: one it dropped (its slot refused it) is
        # closed here, or its slot would stay reserved for nothing.
        self._close_leases(self._leases.close_client(client))
        lease = self._leases.grant(client, slot, worker)
        if lease is None:
            return
        if not self.scheduler.lease_slot(worker, slot):
            self._leases.discard(lease)
            return
        # The slot hears first: the client's first DirectRun most likely finds the lease open
        # (if not, the slot refuses it and the client sends the task through us).
        self._send(slot, p.LeaseOpen(lease.lease_id))
        granted = p.LeaseGranted(lease.lease_id, lease.address, self._worker_names.get(worker, ""))
        if not self._send(client, granted):
            self._close_leases(self._leases.close_client(client))

    def _close_leases(self, leases: list[Lease]) -> None:
        """Closed: their slots refuse new direct attempts, answer those they took, then say
        LeaseClosed (and get work again); their clients send through us again."""
        for lease in leases:
            self.scheduler.close_lease(lease.worker, lease.slot)
            self._send(lease.slot, p.LeaseClose(lease.lease_id))
            self._send(lease.client, p.LeaseEnded(lease.lease_id))

    def _end_leases(self, leases: list[Lease], running: int, status: p.Status, error: str) -> None:
        """These leases' slots are gone: each client hears which of its direct attempts was
        running (with its outcome); the others it sent there never started."""
        for lease in leases:
            if running < 0 and -running >> 32 == lease.lease_id:
                ended = p.LeaseEnded(lease.lease_id, running, status, error)
                if status != "lost":  # killed by a forced cancel, or crashed by the task
                    self.scheduler.count_direct(
                        cancelled=status == "cancelled", failed=status == "failed"
                    )
            else:
                ended = p.LeaseEnded(lease.lease_id, 0, "lost", error)
            self._send(lease.client, ended)

    def _kill_direct(self, client: bytes, lease_id: int, attempt_id: int) -> None:
        lease = self._leases.get(lease_id, client)
        if lease is None or attempt_id >= 0 or -attempt_id >> 32 != lease_id:
            return  # its slot is gone already (the client hears of it), or nonsense
        # As for a dispatcher attempt: the slot skips it if not started, and its worker kills
        # the slot if running it (the slot's loss then ends the lease, naming the attempt).
        self._send(lease.slot, p.Kill([attempt_id]))
        self._send(lease.worker, p.Kill([attempt_id]))

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

    def _submit(
        self, client: bytes, tasks: list[p.TaskSpec], frames: list[zmq.Frame], lease: bool
    ) -> list[s.Instruction]:
        sizes = frame_sizes(frames)
        new: list[s.NewTask] = []
        refused: list[s.Instruction] = []
        for spec in tasks:
            try:
                p.check_blob(spec.fn, sizes)
                p.check_blob(spec.args, sizes)
                if spec.kind not in p.KINDS:
                    raise p.ProtocolError(f"unknown task kind {spec.kind}")
            except p.ProtocolError as error:
                self.protocol_errors += 1
                refused.append(
                    s.Resolve(client, spec.task_id, "failed", error=f"protocol error: {error}")
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
            if lease and len(tasks) == 1 and _leasable(spec):
                payload.lease_for = client
            new.append(
                s.NewTask(
                    spec.task_id, payload, spec.resources, spec.labels, spec.priority, spec.retries
                )
            )
        return refused + self.scheduler.submit(client, new)

    def _done(
        self, worker: bytes, results: list[p.AttemptResult], frames: list[zmq.Frame], now: float
    ) -> list[s.Instruction]:
        sizes = frame_sizes(frames)
        outcomes = []
        for result in results:
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
        return self.scheduler.attempts_finished(worker, outcomes, now)

    # ------------------------------------------------------------------- instructions

    def _perform(self, instructions: list[s.Instruction]) -> None:
        for ins in instructions:
            match ins:
                case s.Resolve():
                    self._queue_result(ins)
                case s.RunAttempts(worker=worker, slot=slot, attempts=attempts):
                    if self._send_run(slot, attempts):
                        for _, payload in attempts:
                            task = cast(_Payload, payload)
                            if task.lease_for:  # once: not again if it is retried
                                self._grant_lease(task.lease_for, slot, worker)
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
                    self._started.setdefault(client, (time.monotonic(), []))[1].extend(ids)
                case s.KillAttempts(worker=worker, slot=slot, attempt_ids=ids):
                    self._send(slot, p.Kill(ids))
                    self._send(worker, p.Kill(ids))
                case s.ReleaseWorker(worker=worker):
                    self._send(worker, p.Goodbye())
                case s.AskToReregister(worker=worker):
                    self._send(worker, p.Reregister())
                case s.ForgetWorker(worker=worker, reason=reason):
                    self._end_leases(self._leases.worker_gone(worker), 0, "lost", reason)
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

    def _queue_result(self, resolve: s.Resolve) -> None:
        self._results.setdefault(resolve.client, []).append(resolve)

    def _flush(self) -> None:
        # One message per client per round: what started and what ended travel together.
        due = time.monotonic() - _STARTED_DELAY
        for client in [c for c, (since, _) in self._started.items() if since <= due]:
            if client not in self._results:
                self._send(client, p.Started(self._started.pop(client)[1]))
        for client, pending in self._results.items():
            started = self._started.pop(client, (0.0, []))[1]
            for start in range(0, len(pending), _RESULTS_PER_MESSAGE):
                frames: list[FrameLike] = []
                placed: dict[int, int] = {}
                results = []
                for resolve in pending[start : start + _RESULTS_PER_MESSAGE]:
                    blob = None
                    if resolve.value is not None:
                        value, own = cast(tuple[p.Blob, list[FrameLike]], resolve.value)
                        blob = rebase(value, own, frames, placed)
                    results.append(
                        p.TaskResult(
                            resolve.task_id,
                            resolve.status,
                            blob,
                            resolve.error,
                            resolve.traceback,
                            resolve.worker,
                        )
                    )
                if not self._send(client, p.Results(results, started), frames):
                    self._forget_client(client)
                    break
                started = []
        self._results.clear()

    def _status(self, now: float) -> p.StatusReply:
        snap = self.scheduler.snapshot(now)
        c = snap.counters
        return p.StatusReply(
            workers=[
                p.WorkerStatus(
                    w.name,
                    w.node,
                    w.pid,
                    w.slots,
                    w.slots_used,
                    w.resources,
                    w.free_resources,
                    w.labels,
                    round(w.seconds_since_heartbeat, 3),
                    w.draining,
                    w.data_address,
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
