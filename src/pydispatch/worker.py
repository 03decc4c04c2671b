"""A worker process: registers with the dispatcher, runs tasks in N slot subprocesses.

* Heartbeats come from a thread with its own socket, so nothing the main loop does (and no
  task: tasks run in slot subprocesses) can silence them; only a stopped or dead process can.
* Force-cancel (``Kill``): the slot process running the attempt is killed with SIGKILL and a
  fresh slot is started in its place; the attempt is reported ``cancelled``, which frees its
  slot in the dispatcher. Attempts of the same slot batch that had not started go to the new
  slot; a cancelled attempt that had not started is reported at once and skipped by its slot.
* SIGINT stops at once (running attempts are reported ``lost`` and re-queued elsewhere).
* SIGTERM is a graceful drain: the worker tells the dispatcher (which places nothing new on
  it), lets running tasks finish for up to ``drain_grace`` seconds, reports any it had to
  abandon as ``lost`` (the dispatcher re-queues them elsewhere), and exits when the dispatcher
  releases it. A second SIGTERM ends the grace period at once.
* ``Reregister`` (the dispatcher removed us for silence, or restarted): attempts still running
  here were already re-queued elsewhere, so their slots are killed and replaced, then the
  worker registers again.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import shutil
import signal
import socket as _socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import zmq

from . import protocol as p
from ._slot import READY
from .transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FrameLike,
    Socket,
    make_socket,
    parse,
    rebase,
    receive_pending,
    send,
)

log = logging.getLogger(__name__)

_REGISTER_RETRY: Final = 5.0  # seconds without a Registered reply before registering again
_SLOT_BATCH: Final = 32  # attempts handed to one slot process in one message, at most


@dataclass(slots=True)
class _Attempt:
    spec: p.RunSpec
    frames: list[zmq.Frame]
    seq: int = 0  # arrival order, to keep FIFO among equal priorities


class _LocalQueue:
    """Attempts placed here but not handed to a slot yet, highest priority first.

    With prefetch the dispatcher places a few attempts beyond the free slots; ordering them
    here by priority lets a later, more urgent task overtake those still waiting.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, _Attempt]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self) -> Iterator[_Attempt]:
        return iter([entry[2] for entry in sorted(self._heap)])

    def push(self, attempt: _Attempt, *, keep_seq: bool = False) -> None:
        if not keep_seq:
            attempt.seq = next(self._seq)
        heapq.heappush(self._heap, (-attempt.spec.priority, attempt.seq, attempt))

    def pop(self) -> _Attempt:
        return heapq.heappop(self._heap)[2]

    def head_priority(self) -> int:
        return self._heap[0][2].spec.priority

    def remove(self, attempt_ids: set[int]) -> list[_Attempt]:
        removed = [e[2] for e in self._heap if e[2].spec.attempt_id in attempt_ids]
        if removed:
            self._heap = [e for e in self._heap if e[2].spec.attempt_id not in attempt_ids]
            heapq.heapify(self._heap)
        return removed

    def clear(self) -> list[_Attempt]:
        everything = [entry[2] for entry in sorted(self._heap)]
        self._heap = []
        return everything


@dataclass(slots=True, eq=False)
class _Slot:
    index: int
    endpoint: str
    sock: Socket
    process: subprocess.Popen[bytes]
    ready: bool = False
    # Attempts sent to this slot and not reported yet, in the order it runs them.
    attempts: dict[int, _Attempt] = field(default_factory=dict)


@dataclass(slots=True)
class WorkerOptions:
    slots: int = 1
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    name: str = ""
    node: str = ""
    drain_grace: float = 30.0
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    # Where this worker's data socket binds (a ROUTER reserved for worker-to-worker traffic of
    # dataflow jobs; nothing is served on it yet). Its bound address is advertised on
    # registration. "" disables it.
    data_bind: str = "tcp://127.0.0.1:*"
    # Stop (as on SIGINT) when the process with this pid is no longer our parent: set by
    # LocalCluster and ``worker --nprocs`` so that workers never outlive who started them.
    exit_with_parent: int = 0


class Worker:
    def __init__(self, address: str, options: WorkerOptions | None = None) -> None:
        self.options = options or WorkerOptions()
        self.address = address
        self.node = self.options.node or _socket.gethostname()
        self.name = self.options.name or f"{self.node}-{os.getpid()}"
        self.identity = f"{self.name}/{uuid.uuid4().hex[:8]}".encode()
        self._context: zmq.Context[Any] = zmq.Context()
        self._sock = make_socket(
            self._context,
            zmq.DEALER,
            max_message_size=self.options.max_message_size,
            identity=self.identity,
        )
        self._sock.connect(address)
        self._data_sock: Socket | None = None
        self.data_address = ""
        if self.options.data_bind:
            self._data_sock = make_socket(
                self._context, zmq.ROUTER, max_message_size=self.options.max_message_size
            )
            self._data_sock.bind(self.options.data_bind)
            self.data_address = self._data_sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._tmpdir = tempfile.mkdtemp(prefix="pydispatch-slots-")
        self._slots: list[_Slot] = []
        self._slot_generation = 0
        self._queue = _LocalQueue()
        self._running: dict[int, _Slot] = {}
        self._outbox: list[tuple[p.AttemptResult, list[FrameLike]]] = []
        self._heartbeat_interval = 1.0
        self._heartbeat_stop = threading.Event()
        self._registered_at: float | None = None
        self._register_sent_at = 0.0
        self._drain_requested = 0  # number of SIGTERMs received
        self._drain_deadline: float | None = None
        self._released = False

    # ---------------------------------------------------------------------------- run

    def run(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
            signal.signal(signal.SIGINT, self._on_sigint)
        try:
            for index in range(self.options.slots):
                self._slots.append(self._start_slot(index))
            # Register only once every slot can take a task: "registered" means "ready".
            self._wait_for_slots(timeout=60.0)
            self._register()
            heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True)
            heartbeat.start()
            self._loop()
        finally:
            self._heartbeat_stop.set()
            self._shutdown_slots()
            self._sock.close(linger=200)
            if self._data_sock is not None:
                self._data_sock.close(linger=0)
            self._context.term()
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def request_drain(self) -> None:
        self._drain_requested += 1

    def request_stop(self) -> None:
        """Stop now: running attempts are abandoned (re-queued elsewhere by the dispatcher)."""
        self._drain_requested += 2

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.request_drain()

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.request_stop()

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        next_check = 0.0
        while True:
            now = time.monotonic()
            if self._drain_requested and self._drain_deadline is None:
                self._start_drain(now)
            if self._drain_deadline is not None and (
                now >= self._drain_deadline or self._drain_requested > 1
            ):
                self._abandon_all("the worker's drain grace period ended")
                self._flush()
                send(self._sock, p.Goodbye())
                return
            if self._released:
                return
            if self._registered_at is None and now - self._register_sent_at > _REGISTER_RETRY:
                self._register()
            for sock_or_fd, _ in poller.poll(100):
                if sock_or_fd is self._sock:
                    self._receive_from_dispatcher()
            for slot in self._slots:
                self._receive_from_slot(slot)
            if now >= next_check:
                if self.options.exit_with_parent and os.getppid() != self.options.exit_with_parent:
                    self.request_stop()
                self._check_slot_processes()
                next_check = now + 0.1
            self._start_queued()
            self._flush()
            self._sync_poller(poller)

    def _sync_poller(self, poller: zmq.Poller) -> None:
        registered = {sock for sock, _ in poller.sockets}
        wanted = {slot.sock for slot in self._slots}
        for sock in registered - wanted - {self._sock}:
            poller.unregister(sock)
        for sock in wanted - registered:
            poller.register(sock, zmq.POLLIN)

    # -------------------------------------------------------------------- dispatcher

    def _register(self) -> None:
        self._registered_at = None
        self._register_sent_at = time.monotonic()
        send(
            self._sock,
            p.Register(
                p.PROTOCOL_VERSION,
                self.name,
                self.node,
                os.getpid(),
                self.options.slots,
                self.options.resources,
                self.options.labels,
                self.data_address,
            ),
        )

    def _heartbeat_loop(self) -> None:
        sock = make_socket(self._context, zmq.DEALER, identity=self.identity + b"/heartbeat")
        sock.connect(self.address)
        try:
            while not self._heartbeat_stop.wait(self._heartbeat_interval):
                if self._registered_at is not None:
                    send(sock, p.Heartbeat(self.identity))
        finally:
            sock.close(linger=0)

    def _receive_from_dispatcher(self) -> None:
        for message, frames in receive_pending(self._sock, "the dispatcher"):
            try:
                self._handle(message, frames)
            except Exception:  # a bad message must not kill the worker and its tasks
                log.exception("error handling %s from the dispatcher", type(message).__name__)

    def _handle(self, message: p.Message, frames: list[zmq.Frame]) -> None:
        match message:
            case p.Run(attempts=attempts):
                for spec in attempts:
                    self._queue.push(_Attempt(spec, frames))
            case p.Kill(attempt_ids=ids):
                self._kill(ids)
            case p.Registered(heartbeat_interval=interval):
                self._heartbeat_interval = interval
                self._registered_at = time.monotonic()
                if self._drain_deadline is not None:
                    send(self._sock, p.Drain())
            case p.Reregister():
                if self._registered_at is None:
                    return  # a Register is already on its way
                log.warning("the dispatcher no longer knows this worker: registering again")
                # Hand over whatever finished meanwhile (the dispatcher discards it as late),
                # then drop the rest: it was re-queued elsewhere when we were removed.
                for slot in self._slots:
                    self._receive_from_slot(slot)
                self._flush()
                self._abandon_all("", report=False)
                self._register()
            case p.Goodbye():
                self._released = True
            case p.Error(code=code, message=text):
                log.error("the dispatcher refused a message: %s: %s", code, text)
            case _:
                log.error("unexpected %s from the dispatcher", type(message).__name__)

    def _start_drain(self, now: float) -> None:
        log.info("draining: running tasks get %.1f s to finish", self.options.drain_grace)
        self._drain_deadline = now + self.options.drain_grace
        if self._registered_at is None:
            self._released = True  # nothing was ever placed here
            return
        send(self._sock, p.Drain())

    def _flush(self) -> None:
        if not self._outbox:
            return
        frames: list[FrameLike] = []
        results = []
        for result, own in self._outbox:
            blob = rebase(result.value, own, frames) if result.value is not None else None
            results.append(
                p.AttemptResult(
                    result.attempt_id, result.status, blob, result.error, result.traceback
                )
            )
        self._outbox.clear()
        send(self._sock, p.Done(results), frames)

    # ------------------------------------------------------------------------- slots

    def _start_slot(self, index: int) -> _Slot:
        self._slot_generation += 1
        endpoint = f"ipc://{self._tmpdir}/slot-{index}-{self._slot_generation}"
        sock = make_socket(self._context, zmq.PAIR, max_message_size=self.options.max_message_size)
        sock.bind(endpoint)
        process = subprocess.Popen(
            [sys.executable, "-m", "pydispatch._slot", endpoint, str(os.getpid())],
            stdin=subprocess.DEVNULL,
        )
        return _Slot(index, endpoint, sock, process)

    def _wait_for_slots(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(slot.ready for slot in self._slots):
            if time.monotonic() > deadline:
                raise RuntimeError("slot processes did not start in time")
            if self._drain_requested:
                return
            for slot in self._slots:
                if not slot.ready and slot.sock.poll(20):
                    self._receive_from_slot(slot)
            self._check_slot_processes()

    def _replace_slot(self, slot: _Slot) -> None:
        _kill_process(slot.process)
        slot.sock.close(linger=0)
        self._slots[slot.index] = self._start_slot(slot.index)

    def _start_queued(self) -> None:
        idle = [slot for slot in self._slots if slot.ready and not slot.attempts]
        if not self._queue or not idle:
            return
        # Hand each idle slot its share of the local queue in one message (at most
        # _SLOT_BATCH): with prefetch, small tasks then cost one worker<->slot message pair
        # per batch, not per task. The slot reports each attempt as it finishes.
        # The share counts slots still starting (a replaced slot): otherwise the first ready
        # slot takes tasks meant for its neighbours and runs them one after the other, which
        # deadlocks tasks that wait for each other (the slices of a dataflow job).
        free = sum(1 for slot in self._slots if not slot.attempts)
        share = min(_SLOT_BATCH, -(-len(self._queue) // max(free, 1)))
        for slot in idle:
            if not self._queue:
                return
            frames: list[FrameLike] = []
            placed: dict[int, int] = {}
            specs = []
            # A batch is committed to its slot, so it never mixes priorities: attempts of
            # lower priority stay in the local queue, where later urgent ones can overtake.
            priority = self._queue.head_priority()
            for _ in range(share):
                if not self._queue or self._queue.head_priority() != priority:
                    break
                attempt = self._queue.pop()
                specs.append(
                    p.RunSpec(
                        attempt.spec.attempt_id,
                        attempt.spec.kind,
                        rebase(attempt.spec.fn, attempt.frames, frames, placed),
                        rebase(attempt.spec.args, attempt.frames, frames, placed),
                    )
                )
                slot.attempts[attempt.spec.attempt_id] = attempt
                self._running[attempt.spec.attempt_id] = slot
            slot.sock.send_multipart([p.encode(p.Run(specs)), *frames], copy=False)

    def _receive_from_slot(self, slot: _Slot) -> None:
        while True:
            try:
                parts = slot.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(parts) == 1 and parts[0].bytes == READY:
                slot.ready = True
                continue
            try:
                message, frames = parse(parts)
            except p.ProtocolError as error:
                log.error("dropped a malformed message from slot %d: %s", slot.index, error)
                continue
            if not isinstance(message, p.Done):
                continue
            for result in message.results:
                if self._running.pop(result.attempt_id, None) is not None:
                    slot.attempts.pop(result.attempt_id, None)
                    self._outbox.append((result, list(frames)))

    def _requeue_front(self, attempts: list[_Attempt]) -> None:
        """Attempts a replaced slot had not started yet go back to the head of the queue."""
        for attempt in reversed(attempts):
            self._running.pop(attempt.spec.attempt_id, None)
            self._queue.push(attempt, keep_seq=True)

    def _check_slot_processes(self) -> None:
        for slot in list(self._slots):
            code = slot.process.poll()
            if code is None:
                continue
            pending = list(slot.attempts.values())
            if pending:
                # A slot runs its batch in order: the first unfinished attempt killed it.
                crashed = pending.pop(0).spec.attempt_id
                self._running.pop(crashed, None)
                error = f"the slot process running this task died (exit code {code})"
                self._report(crashed, "failed", error)
                self._requeue_front(pending)
            log.warning("slot %d died (exit code %s): starting a new one", slot.index, code)
            self._replace_slot(slot)

    def _kill(self, attempt_ids: list[int]) -> None:
        wanted = set(attempt_ids)
        for attempt in self._queue.remove(wanted):
            self._report(attempt.spec.attempt_id, "cancelled", "cancelled before it started")
        for slot in list(self._slots):
            targets = wanted & slot.attempts.keys()
            if not targets:
                continue
            self._receive_from_slot(slot)  # results already sent are kept, not re-run
            targets &= slot.attempts.keys()
            if not targets:
                continue
            # A slot runs its batch in order: the first unreported attempt is the running one.
            running = next(iter(slot.attempts))
            if running in targets:
                _kill_process(slot.process)
                # Whatever it finished before dying is still in the socket: keep those
                # results (a target among them simply finished before the cancel came).
                while slot.sock.poll(2):
                    self._receive_from_slot(slot)
                for attempt_id in targets & slot.attempts.keys():
                    del slot.attempts[attempt_id]
                    del self._running[attempt_id]
                    self._report(attempt_id, "cancelled", "force-cancelled (slot killed)")
                others = list(slot.attempts.values())
                self._replace_slot(slot)
                self._requeue_front(others)  # not started yet: they run on the new slot
            else:
                # Not started yet: cancelled now (the dispatcher frees their places at
                # once); the slot is told to skip them, and its later report is ignored.
                slot.sock.send_multipart([p.encode(p.Kill(sorted(targets)))])
                for attempt_id in targets:
                    del slot.attempts[attempt_id]
                    del self._running[attempt_id]
                    self._report(attempt_id, "cancelled", "cancelled before it started")

    def _abandon_all(self, reason: str, report: bool = True) -> None:
        """Give up every queued and running attempt (reported ``lost`` if ``report``)."""
        for attempt in self._queue.clear():
            if report:
                self._report(attempt.spec.attempt_id, "lost", reason)
        for slot in list(self._slots):
            if not slot.attempts:
                continue
            for attempt_id in slot.attempts:
                self._running.pop(attempt_id, None)
                if report:
                    self._report(attempt_id, "lost", reason)
            self._replace_slot(slot)

    def _report(self, attempt_id: int, status: p.Status, error: str) -> None:
        self._outbox.append((p.AttemptResult(attempt_id, status, None, error), []))

    def _shutdown_slots(self) -> None:
        for slot in self._slots:
            _kill_process(slot.process)
            slot.sock.close(linger=0)


def _kill_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        log.error("slot process %d did not die", process.pid)


def run_worker(address: str, options: WorkerOptions) -> None:
    """Run one worker in this process until it is drained (SIGTERM) or released."""
    Worker(address, options).run()
