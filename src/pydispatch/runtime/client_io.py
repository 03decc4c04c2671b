"""The client's I/O: its sockets and I/O thread, and the futures of the tasks it sent.

:class:`ClientIO` is what the ``Executor`` facade (``client``: ``pydispatch.Client``) stands on.
It says hello to the dispatcher and keeps saying it (a restarted dispatcher is noticed: its
epoch changed, and every unresolved task is sent to it again, see below), sends
tasks (batched into ``Submit`` messages), keeps the table of outstanding futures and resolves
them from results, and sends lone tasks on the direct lane of a lease (``lane``).
:class:`TaskFuture` is defined here, as this module makes and resolves the futures (``client``
imports this module, never the reverse, and re-exports it as ``pydispatch.TaskFuture``).

Two sockets, because zmq sockets are not thread-safe: the I/O thread receives on one (and
says hello and asks for status there, so that answers come back to it), and everything else
the client says goes out on the other, from any thread, under a lock. ``submit`` pickles in the
caller's thread and appends to an outbox. When the task is the only one outstanding the caller
sends it at once itself (a round trip then costs no thread hand-off); otherwise it wakes the
I/O thread through a pipe, which sends everything waiting as one ``Submit`` message, so tasks
submitted in a tight loop coalesce into few messages without any timer.

The direct lane: a lone task without resources or labels asks the dispatcher for a lease on
the slot it is placed on. Once granted, the next lone plain tasks go straight to that slot and
their results come straight back (two hops instead of four), received by the caller waiting in
``result()`` itself (see ``lane``). When the lease ends the client sends tasks through the
dispatcher again; one that was out on the lane is sent there too (if its slot died while
running it, that counts as a retry, as it does for the dispatcher), so nothing is lost.

The client owns its tasks (as in Ray's ownership model): each future keeps what was sent for
it until it resolves. A restarted dispatcher knows none of them, so on its first Welcome every
unresolved task goes to it again under the same id (the scheduler ignores an id it holds
already); a slot that ran one across the restart reports the outcome with the task's id, and
it resolves the future if it still waits. A future resolves once; a task runs at least once
(possibly twice). Nothing per task is written anywhere but in this process's memory.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Generator
from concurrent.futures import InvalidStateError
from functools import partial
from typing import Any, Final, Protocol, cast

import zmq

from ..errors import RemoteError, RemoteTraceback, TaskFailedError
from ..wire import protocol as p
from ..wire.security import Keys, connect_with
from ..wire.transport import (
    FrameLike,
    Socket,
    dumps,
    loads,
    make_socket,
    receive_pending,
    send,
)
from .hellos import DispatcherHellos, Leaders, ask_status
from .lane import DirectAttempt, Lane
from .lean_future import LeanFuture
from .reconnect import CLIENT_SILENCE_S, WORKER_SILENCE_S, drop_when_silent, spread_reconnects
from .task_pickling import FunctionBlobs, submit_batches

__all__ = ["DEFAULT_RECONNECT_TIMEOUT", "ClientIO", "TaskFuture", "interpreter_exiting"]

log = logging.getLogger(__name__)

_MAX_TASKS_PER_SUBMIT: Final = 8192
# How long a client with work outstanding waits for a silent dispatcher before it fails every
# unresolved future with ConnectionError (see Client's reconnect_timeout).
DEFAULT_RECONNECT_TIMEOUT: Final = 60.0
# A cancel() waiting for the dispatcher's answer also looks this often (seconds), whatever
# resolves the future (a failure on reconnect_timeout, a terminate) without waking it.
_VERDICT_POLL: Final = 0.05

# As concurrent.futures.thread does: at interpreter exit (before atexit's own handlers, so
# before a LocalCluster closes) every client still open gets its outstanding futures done and
# closes, and no new task is taken. Weak: a client collected needs nothing more.
_live: weakref.WeakSet[ClientIO] = weakref.WeakSet()
_exiting = False
_exit_lock = threading.Lock()


def interpreter_exiting() -> bool:
    """Whether interpreter shutdown has begun (``submit`` then raises ``RuntimeError``)."""
    return _exiting


def _python_exit() -> None:
    global _exiting
    with _exit_lock:
        _exiting = True
        clients = list(_live)
    for io in clients:
        io.start_closing()
        io.wake()
    for io in clients:
        if io.thread is not threading.current_thread():
            io.thread.join()


def _after_fork() -> None:
    # A forked child has no I/O threads: its copies of the parent's clients are not its own.
    global _exit_lock
    _exit_lock = threading.Lock()
    _live.clear()


threading._register_atexit(_python_exit)  # type: ignore[attr-defined]
os.register_at_fork(after_in_child=_after_fork)


class _Client(Protocol):
    """What a future uses of the client that made it (``client.Client``, which imports this
    module: named by its shape, not imported)."""

    _lane: Lane
    _io: ClientIO


class TaskFuture(LeanFuture[Any]):
    """A future for one task; also awaitable from asyncio (``await future``)."""

    def __init__(self, client: _Client, task_id: int) -> None:
        super().__init__()
        self._client = client
        self.task_id = task_id
        self.worker = ""  # the worker that produced the outcome, once known
        self._lane_attempt = 0  # its direct attempt while out on the lane (see lane)
        # Set by the I/O thread when a cancel() waiting for the dispatcher's answer should
        # look again (RUNNING is not announced to a Future's own waiters: result() would end).
        self._verdict: threading.Event | None = None
        # What was sent, kept until the future resolves: a restarted dispatcher gets it again.
        self._payload: tuple[p.TaskSpec, list[FrameLike]] | None = None

    def cancel(self) -> bool:
        """Cancel the task unless it has started in its slot (the future is then RUNNING) or
        it ended. True if the future is cancelled, and then the task never runs.

        A task not sent yet is dropped here. Otherwise this waits for the dispatcher's answer
        (a round trip, or two when the task waits in a slot's queue): it cancels the task where
        it waits, its queue or the slot's (which skips it), or tells that it started. Called
        from the client's I/O thread (a done-callback), which cannot wait for that answer, it
        cancels the future at once and asks the dispatcher alone: a task that started
        meanwhile then runs and its result is discarded."""
        with self._condition:
            if self._state in ("CANCELLED", "CANCELLED_AND_NOTIFIED"):
                return True
            if self._state != "PENDING":
                return False
        io = self._client._io
        self._verdict = threading.Event()
        if not io.cancel_unstarted([self]):
            self._cancel_now()  # no answer can come (see above): as before the answer
            return True
        while self._state == "PENDING":  # until "cancelled", "started" or its outcome
            self._verdict.wait(_VERDICT_POLL)
        return self._state in ("CANCELLED", "CANCELLED_AND_NOTIFIED")

    def _wake_verdict(self) -> None:
        verdict = self._verdict
        if verdict is not None:
            verdict.set()

    def _cancel_now(self) -> None:
        """PENDING -> CANCELLED_AND_NOTIFIED here, without asking anyone."""
        if super().cancel():
            self._notify_cancelled()

    def _notify_cancelled(self) -> bool:
        """CANCELLED -> CANCELLED_AND_NOTIFIED, as an executor does when it would have started
        the task: ``wait()`` and ``as_completed()`` count it done. False if done already."""
        with self._condition:
            if self._state != "CANCELLED":
                return False
            self.set_running_or_notify_cancel()
            return True

    def result(self, timeout: float | None = None) -> Any:
        return super().result(self._receive_direct(timeout))

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return super().exception(self._receive_direct(timeout))

    def _receive_direct(self, timeout: float | None) -> float | None:
        """A direct attempt's outcome is received by its waiting caller itself (no hand-off
        from the I/O thread). Returns what is left of ``timeout``."""
        attempt_id = self._lane_attempt
        if not attempt_id or self._state != "RUNNING":
            return timeout
        start = time.monotonic()
        self._client._lane.wait(self, attempt_id, timeout)
        return None if timeout is None else max(0.0, timeout - (time.monotonic() - start))

    def __await__(self) -> Generator[Any, None, Any]:
        # Imported here: asyncio costs every client process ~15 ms at import, and only a
        # program awaiting a future (which has imported asyncio already) needs it.
        import asyncio

        return asyncio.wrap_future(self).__await__()

    def _cancel_running(self) -> None:
        """Cancel even though RUNNING: the dispatcher confirmed a forced cancellation."""
        with self._condition:
            if self._state == "RUNNING":
                self._state = "PENDING"  # lets Future.cancel() do all its notifications
            super().cancel()
            self._notify_cancelled()


class ClientIO:
    """A client's connection to the dispatcher at ``address``: sockets, I/O thread, futures.

    Made by ``client``; the hello goes out and the I/O thread starts at once (see
    :meth:`welcome`). ``client`` is what the futures made here name as theirs.
    """

    def __init__(
        self,
        client: _Client,
        address: str,
        name: str,
        max_message_size: int,
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
        keys: Keys | None = None,
    ) -> None:
        self.total_slots = 0
        # A leader and its standbys: the client follows whichever leads (see _follow_leader).
        self._leaders = Leaders(address, keys, min(10.0, reconnect_timeout))
        self.address = self._leaders.current
        self._client = client
        self._context: zmq.Context[Any] = zmq.Context()
        self._keys = keys
        self._sock, self._sender_id, self._sender, self._sender_monitor = _dispatcher_sockets(
            self._context, max_message_size, keys, self.address
        )
        self._send_lock = threading.Lock()
        self.lane = Lane(
            self._context, max_message_size, self._lane_result, self._lane_refused, keys
        )
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._futures: dict[int, TaskFuture] = {}
        self._outbox: list[tuple[p.TaskSpec, list[FrameLike]]] = []
        self._controls: list[p.Message] = []
        self._requests: list[p.Message] = []  # sent by the I/O thread on its own socket
        self._wake_pending = False
        self._io_done = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        # Closed only when this is collected: once the I/O thread is done nothing writes to
        # the pipe (_io_done), and the fd numbers cannot be reused meanwhile.
        weakref.finalize(self, _close_fds, self._wake_read, self._wake_write)
        self._functions = FunctionBlobs()
        self.closing = False  # no new tasks: the I/O thread ends once all are done
        self._terminated: str | None = None
        self._status_replies: queue.Queue[p.StatusReply] = queue.Queue()
        self._welcome: queue.Queue[p.Welcome | p.Error] = queue.Queue()
        self._hello_answered = False
        # The dispatcher's epoch changes when it restarts: it knows none of our tasks. While
        # tasks are outstanding the client says hello (with its name) every few seconds, and
        # a new epoch has every unresolved task sent again, under its id (_resubmit_unresolved).
        self._epoch = ""  # a silent dispatcher must not leave futures waiting (see hellos)
        self._hellos = DispatcherHellos(self.address, reconnect_timeout)
        self._hello = p.ClientHello(p.PROTOCOL_VERSION, name, self._sender_id)
        send(self._sock, self._hello)
        self.thread = threading.Thread(target=self._io_loop, name="pydispatch-client", daemon=True)
        with _exit_lock:
            if _exiting:
                _abandon(self.lane, self._sender, self._sock, self._context)
                raise RuntimeError("cannot create a client after interpreter shutdown")
            _live.add(self)
            self.thread.start()

    # ------------------------------------------------------------ the facade's requests

    def welcome(self, timeout: float) -> p.Welcome | p.Error | None:
        """The dispatcher's answer to the first hello (None: none within ``timeout``)."""
        try:
            reply = self._welcome.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(reply, p.Welcome):
            self.total_slots = reply.total_slots
        return reply

    def submit(
        self,
        kind: int,
        fn: Callable[..., Any],
        args: object,
        resources: dict[str, float] | None,
        labels: dict[str, str] | None,
        priority: int,
        retries: int,
    ) -> TaskFuture:
        """Pickle a task (in the caller's thread) and send it or queue it; its arguments were
        checked (``closing`` included) by the caller."""
        fn_blob, fn_frames = self._functions.blob(fn)
        frames: list[FrameLike] = list(fn_frames)  # the function's blob indexes from 0
        args_blob = dumps(args, frames)
        with self._lock:  # ids are taken under the lock so the outbox is in id order
            task_id = next(self._ids)
            future = TaskFuture(self._client, task_id)
            spec = p.TaskSpec(
                task_id, kind, fn_blob, args_blob, resources or {}, labels or {}, priority, retries
            )
            self._futures[task_id] = future
            future._payload = (spec, frames)
            # Alone (a caller waiting on one task at a time): no hand-off, no batch to wait for.
            alone = len(self._futures) == 1 and not self._wake_pending
            plain = kind == p.KIND_CALL and not resources and not labels
            lane = alone and plain and self.lane.lease_id != 0
            if not lane:
                self._outbox.append((spec, frames))
        if not alone:
            self._wake()
            return future
        if lane:
            if self._send_direct(future, spec, frames):
                return future
            if returned := self.lane.unreachable():
                self.send_control(p.ReturnLease(returned))
            with self._lock:  # (after the tasks submitted meanwhile, if any: ids may interleave)
                self._outbox.append((spec, frames))
        self._send_outbox(ask_lease=plain and self.lane.usable and not self.lane.lease_id)
        return future

    def cancel_unstarted(self, futures: list[TaskFuture], drop_unsent: bool = True) -> bool:
        """Cancel these futures' tasks where they have not started. Those not sent yet are
        dropped (if ``drop_unsent``); the dispatcher is asked for the others and answers each
        "cancelled", "started" or its outcome. False if it cannot be asked or its answer could
        not be awaited (from the I/O thread, or once it ended): the caller then decides."""
        ids = {future.task_id for future in futures}
        with self._lock:
            unsent = {spec.task_id for spec, _ in self._outbox} & ids if drop_unsent else set()
            if unsent:
                self._outbox = [(s, f) for s, f in self._outbox if s.task_id not in unsent]
                for task_id in unsent:
                    self._futures.pop(task_id, None)
            answerable = not self._io_done and threading.current_thread() is not self.thread
        asked = [f for f in futures if f.task_id not in unsent]
        for future in futures:
            if future.task_id in unsent:
                future._cancel_now()
        if asked:
            self.send_control(p.Cancel([f.task_id for f in asked], False))
        return answerable or not asked

    def cancel_and_await(self, futures: list[TaskFuture], timeout: float) -> None:
        """:meth:`cancel_unstarted` for many at once (one request), then wait at most
        ``timeout`` for the answers: each future is then cancelled, unless its task started
        (as an executor's ``shutdown(cancel_futures=True)`` leaves them). Where no answer can
        be awaited they are cancelled at once. Tasks not sent yet go first: as with the
        standard executors, what idle slots take at once runs (else, just after submit, none)."""
        verdicts = [threading.Event() for _ in futures]
        for future, verdict in zip(futures, verdicts, strict=True):
            future._verdict = verdict
        if not self.cancel_unstarted(futures, drop_unsent=False):
            for future in futures:
                future._cancel_now()
            return
        deadline = time.monotonic() + timeout
        for future, verdict in zip(futures, verdicts, strict=True):
            while future._state == "PENDING" and (left := deadline - time.monotonic()) > 0:
                verdict.wait(min(left, _VERDICT_POLL))

    def force_cancel(self, future: TaskFuture) -> None:
        """Ask for a running task to be stopped: on the lane, its leased slot is killed."""
        attempt_id = future._lane_attempt
        lease_id = self.lane.kill(attempt_id) if attempt_id else 0
        if lease_id:
            self.send_control(p.KillDirect(lease_id, attempt_id))
        else:
            self.send_control(p.Cancel([future.task_id], True))

    def send_control(self, message: p.Message) -> None:
        """Send ``message`` to the dispatcher (from the I/O thread, after the tasks queued)."""
        with self._lock:
            self._controls.append(message)
        self._wake()

    def status(self, timeout: float) -> p.StatusReply:
        return ask_status(self._ask_status, self._status_replies, timeout, self.address)

    def _ask_status(self) -> None:  # on the receiving socket: the answer comes back there
        with self._lock:
            self._requests.append(p.StatusRequest())
        self._wake()

    def start_closing(self) -> list[TaskFuture]:
        """Take no new tasks (the I/O thread ends once all are done); the futures outstanding."""
        with self._lock:
            self.closing = True
            return list(self._futures.values())

    def terminate(self, reason: str) -> None:
        """Close now: every unfinished future fails with ``ConnectionError(reason)``."""
        with self._lock:
            self.closing = True
            self._terminated = reason
        self._wake()
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout=5)

    def wake(self) -> None:
        """Have the I/O thread look at what is queued (and at ``closing``)."""
        self._wake()

    # ------------------------------------------------------------------ internals

    def _send_direct(self, future: TaskFuture, spec: p.TaskSpec, frames: list[FrameLike]) -> bool:
        try:
            attempt_id = self.lane.try_send(future, spec, frames, partial(_mark_direct, future))
        except Exception:
            log.exception("could not send a task to its leased slot: sending it to the dispatcher")
            return False
        return bool(attempt_id)

    def _wake(self) -> None:
        with self._lock:
            if self._wake_pending or self._io_done:
                return
            self._wake_pending = True
        os.write(self._wake_write, b"x")

    # -------------------------------------------------------------------- I/O thread

    def _io_loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        # A new connection (the dispatcher restarted) is greeted at once, not at the next
        # periodic hello: its Welcome's epoch has the unresolved tasks sent again sooner.
        monitor = self._sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        poller.register(monitor, zmq.POLLIN)
        poller.register(self._sender_monitor, zmq.POLLIN)
        try:
            while True:
                ready = self.lane.poll(poller, 100)  # (watching the lane's current socket)
                for sending, watch in enumerate((monitor, self._sender_monitor)):
                    # After a dropped connection, the sending socket's: reconnect the other.
                    if any([self._hellos.connected(sending, e) for e in _handshakes(watch, ready)]):
                        self._sock.disconnect(self.address)
                        connect_with(self._sock, self._keys, self.address)
                if self._wake_read in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_read, 4096)
                self._send_outbox()
                self._send_requests()
                if self._sock in ready:
                    self._hellos.heard()
                    try:
                        self._receive()
                    except Exception:  # the I/O thread must outlive any bad message
                        log.exception("error handling a message from the dispatcher")
                if self.lane.fd in ready:
                    try:
                        self.lane.receive()
                    except Exception:
                        log.exception("error handling a message from a leased slot")
                if self._terminated is not None:
                    self._fail_unfinished(self._terminated)
                    self._send_controls(p.ClientBye())  # after a job master's last word
                    return
                if self.closing and self._all_done():
                    self._send_controls(p.ClientBye())
                    return
                self._check_silence()
                # Even when idle: a restarted dispatcher learns this client's sending socket
                # from it, and answers on the receiving one, where we listen. While closing,
                # only until the last result (then Bye goes out instead, on the other socket).
                if (self._futures or not self.closing) and self._hellos.take_turn():
                    send(self._sock, self._hello)
                    self._drain_sender()
        finally:
            self._sock.disable_monitor()
            monitor.close(linger=0)
            self.lane.close()
            with self._send_lock:
                with self._lock:
                    self._io_done = True
                self._sender.disable_monitor()
                self._sender_monitor.close(linger=0)
                self._sender.close(linger=500)
            self._sock.close(linger=500)
            self._context.term()

    def _check_silence(self) -> None:
        """With work outstanding, a dispatcher silent for ``reconnect_timeout`` is given up on
        (the verdict: :class:`~.hellos.DispatcherHellos`): every unresolved future fails.
        Given standbys, a silent leader has the others asked who leads now."""
        self._follow_leader(self._leaders.look(self._hellos.silence()))
        given_up = self._hellos.check(self._unresolved_ids)
        if given_up is None:
            return
        waiting, reason = given_up
        self.lane.reset()
        self._fail_tasks(waiting, partial(ConnectionError, reason))
        # Nobody waits for them any more: should the dispatcher come back, it stops them
        # (queued when it does; a restarted one knows none of these ids).
        self.send_control(p.Cancel(waiting, True))

    def _follow_leader(self, leader: str) -> None:
        """Talk to the dispatcher at ``leader`` from now on (I/O thread): its Welcome's new
        epoch has the unresolved tasks sent to it (what was queued for the old one is dropped)."""
        if not leader or leader == self.address:
            return
        log.warning("the dispatcher that leads is at %s now (was %s)", leader, self.address)
        with self._send_lock:
            self._leaders.move((self._sock, self._sender), leader)
            self.address = leader
        self.lane.reset()
        self._hellos.address = leader
        self._hellos.greet_soon()

    def _unresolved_ids(self) -> list[int]:
        with self._lock:
            return [i for i, f in self._futures.items() if not f.done()]

    def _send_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, []
        for message in requests:
            send(self._sock, message)

    def _drain_sender(self) -> None:
        with self._send_lock:
            _log_refusals(self._sender)

    def _fail_unfinished(self, reason: str) -> None:
        with self._lock:
            lost = list(self._futures)
        self._fail_tasks(lost, partial(ConnectionError, reason))

    def _all_done(self) -> bool:
        with self._lock:
            return all(f.done() for f in self._futures.values())

    def _send_outbox(self, ask_lease: bool = False) -> None:
        with self._send_lock:  # taken first: what is taken from the outbox goes out in order
            with self._lock:
                if self._io_done:
                    return
                outbox, self._outbox = self._outbox, []
                controls, self._controls = self._controls, []
                self._wake_pending = False
            self._send_taken(outbox, controls, ask_lease and len(outbox) == 1)

    def _send_taken(
        self,
        outbox: list[tuple[p.TaskSpec, list[FrameLike]]],
        controls: list[p.Message],
        ask_lease: bool = False,
    ) -> None:
        for specs, frames in submit_batches(outbox, _MAX_TASKS_PER_SUBMIT):
            try:
                send(self._sender, p.Submit(specs, ask_lease), frames)
            except Exception as error:  # nothing taken from the outbox may be lost silently
                log.exception("could not send %d task(s) to the dispatcher", len(specs))
                reason = f"the task could not be sent: {error}"
                self._fail_tasks([s.task_id for s in specs], partial(TaskFailedError, reason))
        for message in controls:
            send(self._sender, message)

    def _fail_tasks(self, task_ids: list[int], error: Callable[[], BaseException]) -> None:
        """Fail these tasks' futures, each with its own ``error()`` (tracebacks attach to it)."""
        with self._lock:
            futures = [self._futures.pop(i, None) for i in task_ids]
        for future in futures:
            if future is not None:
                future._payload = None
                with contextlib.suppress(InvalidStateError):
                    future.set_exception(error())

    def _send_controls(self, last: p.Message) -> None:
        with self._send_lock:
            with self._lock:
                controls, self._controls = self._controls, []
            for message in [*controls, last]:
                send(self._sender, message)

    def _receive(self) -> None:
        for message, frames in receive_pending(self._sock, "the dispatcher"):
            match message:
                case p.Results(results=results, started=ids):
                    self._mark_started(ids)
                    self._resolve_all(results, frames)
                case p.Started(task_ids=ids):
                    self._mark_started(ids)
                case p.StatusReply():
                    self._status_replies.put(message)
                case p.Error(code=p.NOT_LEADER, message=leader):
                    self._follow_leader(leader)  # a standby answered: where the leader is
                case p.Welcome() | p.Error() if not self._hello_answered:
                    self._hello_answered = True
                    if isinstance(message, p.Welcome):
                        self._epoch = message.epoch
                        self._hellos.set_interval(message.hello_interval)
                    self._welcome.put(message)
                case p.Welcome(epoch=epoch, total_slots=slots):
                    self.total_slots = slots
                    if epoch != self._epoch or self._hellos.resend_due:
                        self._resubmit_unresolved(restarted=epoch != self._epoch)
                        self._epoch = epoch
                        self._hellos.resend_due = False
                case p.LeaseGranted(lease_id=lease_id, address=address, worker=worker):
                    self.lane.grant(lease_id, address, worker, message.token, message.server_key)
                case p.LeaseEnded() as ended:
                    for attempt, started in self.lane.ended(ended):
                        self._resubmit(attempt, started, ended.error)
                case p.Error(code=code, message=text):
                    log.error("the dispatcher refused a message: %s: %s", code, text)
                case _:
                    log.error("unexpected %s from the dispatcher", type(message).__name__)

    # ------------------------------------------------------------------ the direct lane

    def _lane_result(
        self, attempt: DirectAttempt, result: p.AttemptResult, frames: list[zmq.Frame]
    ) -> None:
        task_id = attempt.spec.task_id
        with self._lock:
            future = self._futures.pop(task_id, None)
        if future is not None:
            outcome = p.TaskResult(
                task_id, result.status, result.value, result.error, result.traceback
            )
            outcome.worker = self.lane.worker
            self._resolve(future, outcome, frames)

    def _lane_refused(self, attempt: DirectAttempt) -> None:
        self._resubmit(attempt, False, "")

    def _resubmit(self, attempt: DirectAttempt, started: bool, error: str) -> None:
        """Send a task that was out on the lane through the dispatcher instead."""
        spec = attempt.spec
        future = cast(TaskFuture, attempt.future)
        future._lane_attempt = 0
        if started:  # its slot died running it: a retry, as the dispatcher would count it
            spec.retries -= 1
            if spec.retries < 0:
                reason = f"its worker was lost and it has no retries left: {error}"
                self._fail_tasks([spec.task_id], partial(TaskFailedError, reason))
                return
        with self._lock:
            if spec.task_id not in self._futures:
                return  # failed meanwhile (the client was terminated)
            self._outbox.append((spec, attempt.frames))
        self._wake()

    # ------------------------------------------------------------------ resolving futures

    def _mark_started(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            started = [self._futures.get(i) for i in ids]
        for future in started:
            # A re-queued task is started again: it is RUNNING already.
            if future is not None and future._state == "PENDING":
                future.set_running_or_notify_cancel()
                future._wake_verdict()

    def _resolve_all(self, results: list[p.TaskResult], frames: list[zmq.Frame]) -> None:
        with self._lock:  # once per message, not per result
            futures = [self._futures.pop(result.task_id, None) for result in results]
        for future, result in zip(futures, results, strict=True):
            if future is not None:
                self._resolve(future, result, frames)

    def _resolve(self, future: TaskFuture, result: p.TaskResult, frames: list[zmq.Frame]) -> None:
        future.worker = result.worker
        future._payload = None
        try:
            if result.status == "cancelled":
                future._cancel_running()
            elif result.status == "ok":
                value = loads(result.value, frames) if result.value is not None else None
                future.set_result(value)
            else:
                future.set_exception(_exception(result, frames))
        except InvalidStateError:
            pass  # cancelled here while its result was on its way
        future._wake_verdict()

    def _resubmit_unresolved(self, restarted: bool) -> None:
        """The dispatcher restarted (a new epoch) or was out of reach (see ``hellos``): every
        unresolved task is sent to it again, under its id, from what its future kept (it
        ignores the ids it holds). At least once: a task placed before may have run already
        (its result, if it comes, resolves the future; a second one finds none)."""
        self.lane.reset()  # its slot may well be alive; the lease died with the dispatcher
        with self._lock:
            queued = {spec.task_id for spec, _ in self._outbox}
            again: list[tuple[p.TaskSpec, list[FrameLike]]] = []
            for task_id, future in list(self._futures.items()):
                if future.done():  # cancelled here: the old dispatcher was to confirm it
                    del self._futures[task_id]
                    continue
                future._lane_attempt = 0
                if future._payload is not None and task_id not in queued:
                    again.append(future._payload)
            self._outbox = sorted(again + self._outbox, key=lambda entry: entry[0].task_id)
        log.warning(
            "the dispatcher at %s %s: %d unresolved task(s) sent again",
            self.address,
            "restarted" if restarted else "is back",
            len(again),
        )
        self._wake()


def _log_refusals(sender: Socket) -> None:
    # The dispatcher answers on the sending socket only a peer it does not know, i.e. after
    # it restarted and before our next hello: refusals worth a log line, which must not pile
    # up unread either.
    for message, _ in receive_pending(sender, "the dispatcher"):
        if isinstance(message, p.Error):
            log.error("the dispatcher refused a message: %s: %s", message.code, message.message)


def _handshakes(monitor: Socket, ready: Collection[object]) -> list[str]:
    """Read every event waiting on a ready socket monitor (handshakes only): their endpoints."""
    endpoints: list[str] = []
    if monitor not in ready:
        return endpoints
    with contextlib.suppress(zmq.Again):
        while True:
            event = monitor.recv_multipart(zmq.NOBLOCK)
            endpoints.append(event[1].decode(errors="replace") if len(event) > 1 else "")
    return endpoints


def _exception(result: p.TaskResult, frames: list[zmq.Frame]) -> BaseException:
    if result.status != "error":
        return TaskFailedError(result.error or f"task {result.status}")
    try:
        exc = loads(result.value, frames) if result.value is not None else None
    except Exception as problem:
        exc = RemoteError(f"{result.error} (could not be unpickled here: {problem})")
    if not isinstance(exc, BaseException):
        exc = RemoteError(result.error)
    if result.traceback:
        exc.__cause__ = RemoteTraceback(result.traceback)
    return exc


def _mark_direct(future: TaskFuture, attempt_id: int) -> None:
    """Before its DirectRun goes (0: it did not go): it is RUNNING, and cancel() cannot stop
    it (its leased slot is idle and reserved for it: it starts at once)."""
    with future._condition:
        future._lane_attempt = attempt_id
        if attempt_id and future._state == "PENDING":
            future._state = "RUNNING"
        elif not attempt_id and future._state == "RUNNING":
            future._state = "PENDING"


def _abandon(lane: Lane, sender: Socket, sock: Socket, context: zmq.Context[Any]) -> None:
    """Close what ClientIO.__init__ opened, its I/O thread never started."""
    lane.close()
    sender.close(linger=0)
    sock.close(linger=0)
    context.term()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def _dispatcher_sockets(
    context: zmq.Context[Any], max_message_size: int, keys: Keys | None, address: str
) -> tuple[Socket, bytes, Socket, Socket]:
    """A client's two DEALERs to its dispatcher, connected: the receiving one, and the
    sending one (used by any thread holding the send lock; only a restarted dispatcher ever
    answers on it, see ``_drain_sender``) with its id and a monitor of its new connections
    (made before it connects: none missed; read by the I/O thread)."""
    sock: Socket = make_socket(
        context,
        zmq.DEALER,
        max_message_size=max_message_size,
        identity=f"client-{uuid.uuid4().hex}".encode(),
    )
    spread_reconnects(sock)  # back within ~2 s of a healed link (issue 14)
    drop_when_silent(sock, CLIENT_SILENCE_S)
    connect_with(sock, keys, address)
    sender_id = f"client-{uuid.uuid4().hex}-send".encode()
    sender: Socket = make_socket(context, zmq.DEALER, identity=sender_id)
    spread_reconnects(sender)
    drop_when_silent(sender, WORKER_SILENCE_S)  # it receives nothing large
    monitor = sender.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    connect_with(sender, keys, address)
    return sock, sender_id, sender, monitor
