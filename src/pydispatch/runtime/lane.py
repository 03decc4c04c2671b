"""The client's end of a lease: lone plain tasks sent straight to one slot (see ``leases``).

One DEALER socket, connected to the leased slot's direct endpoint. Whoever holds :attr:`Lane.lock`
may use it, and must read everything waiting on it before letting go (``_drain``): the socket's
file descriptor (``ZMQ_FD``) signals only messages that arrive after the last look, and both the
client's I/O thread and a caller waiting in ``result()`` watch that descriptor. The waiting
caller receives its result itself, so a round trip costs no thread hand-off; the I/O thread
serves everyone else (callbacks, ``as_completed``, asyncio).

Outcomes are taken off the socket under the lock and delivered (futures resolved, so their
done-callbacks run) after it is released: a callback may submit, or wait for a task whose
answer the I/O thread must read. Whoever delivers an outcome while a caller waits writes to a
wake-up pipe that waiter also polls: the outcome may have left the socket just before the
waiter looked.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

import zmq

from ..wire import protocol as p
from ..wire.security import Keys, connect_curve
from ..wire.transport import FrameLike, Socket, make_socket, receive_pending, send

__all__ = ["DirectAttempt", "Lane"]

log = logging.getLogger(__name__)

_LOOK_EVERY: Final = 0.05  # a waiter looks at its future this often even without a wake-up
_CONNECT_WITHIN: Final = 2.0  # seconds for a lease's slot to be connected, at most
# With keys, a connection the slot's ZAP handler refused is never tried again by libzmq (a
# handshake refusal ends its session). The lease is granted to us as the slot is told, so our
# first handshake can come before the slot has read its LeaseOpen (it may be running the task
# that got us the lease): connect again, at most this often, while no DirectRun can go out.
_HANDSHAKE_AGAIN_AFTER: Final = 0.2


@dataclass(slots=True)
class DirectAttempt:
    future: Future[Any]
    spec: p.TaskSpec  # untouched: sent through the dispatcher instead if the lane fails
    frames: list[FrameLike]
    lease_id: int
    kill_asked: bool = False


_Taken = tuple[DirectAttempt, p.DirectDone, list[zmq.Frame]]

# Called without the lane's lock: an attempt's outcome, and an attempt the slot refused.
Resolver = Callable[[DirectAttempt, p.AttemptResult, list[zmq.Frame]], None]
Refusal = Callable[[DirectAttempt], None]


class Lane:
    def __init__(
        self,
        context: zmq.Context[Any],
        max_message_size: int,
        on_result: Resolver,
        on_refused: Refusal,
        keys: Keys | None = None,
    ) -> None:
        self._keys = keys  # with keys, a slot's direct endpoint is a CURVE server
        self._context = context
        self._max_message_size = max_message_size
        self._sock: Socket = self._new_socket()
        # The socket's descriptor: it changes when a lease on another slot replaces the socket
        # (see grant); the client's I/O thread and waiters watch the current one.
        self.fd = int(self._sock.getsockopt(zmq.FD))
        self._io_watched = -1  # the descriptor the I/O thread's poller watches (see poll)
        self.lock = threading.Lock()
        self.lease_id = 0  # the open lease (0: none)
        self._token = b""  # its capability, carried by every DirectRun
        self.worker = ""  # the leased slot's worker, by name
        # Since when no DirectRun could go out (no connection), across leases; None after one
        # went out. Too long, and this client stops asking for leases (see unreachable).
        self._unreached_since: float | None = None
        self.usable = True
        self._address = ""
        self._connected_at = 0.0  # when _address was last connected to
        self._numbers = itertools.count(1)
        self.attempts: dict[int, DirectAttempt] = {}
        self._on_result = on_result
        self._on_refused = on_refused
        self._closed = False
        # Written when a future is resolved while a caller waits in wait(): that caller may
        # have looked just before, and the descriptor will not signal again for it.
        self._waiters = 0
        self._local = threading.local()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        # Closed only when the lane is collected: a waiter may still be polling them when the
        # socket closes, and their numbers must not be reused meanwhile.
        weakref.finalize(self, _close_fds, self._wake_read, self._wake_write)

    # ------------------------------------------------------------- the client's I/O thread

    def grant(
        self, lease_id: int, address: str, worker: str, token: bytes = b"", server_key: str = ""
    ) -> None:
        with self.lock:
            if self._closed:
                return
            if address != self._address:
                # Attempts still out under an older lease get their answers only while we stay
                # connected there: a second endpoint would take every other DirectRun (a
                # DEALER alternates), which that slot then refuses. Rare; nothing is lost.
                if self._address and not self.attempts:
                    # A new socket, not disconnect(): with ZMQ_IMMEDIATE libzmq leaves the old
                    # connection's pipe writable until its session has gone, and the next
                    # DirectRun could go into it and be lost (no error, no answer: its caller
                    # would wait forever). Nothing is out on the old socket to wait for.
                    self._sock.close(linger=0)
                    self._sock = self._new_socket()
                    self.fd = int(self._sock.getsockopt(zmq.FD))
                if self._keys is not None:  # (read by libzmq at connect)
                    keys = self._keys
                    connect_curve(self._sock, keys.public, keys.secret, server_key)
                self._sock.connect(address)
                self._address = address
                self._connected_at = time.monotonic()
            self.lease_id = lease_id
            self._token = token
            self.worker = worker
            self._numbers = itertools.count(1)  # attempt numbers are per lease (32 bits)
            taken = self._drain()
        self._deliver(taken)

    def ended(self, message: p.LeaseEnded) -> list[tuple[DirectAttempt, bool]]:
        """The dispatcher ended a lease. Returns the attempts to send through the dispatcher,
        each with whether it had started (its slot is gone); the running one, if it failed or
        was force-cancelled, is resolved here."""
        out: list[tuple[DirectAttempt, bool]] = []
        with self.lock:
            taken = self._drain()  # what the slot answered before it went counts
            if message.lease_id == self.lease_id:
                self.lease_id = 0
            # "ok": closed, slot alive: what it took, it answers. Settled: it answered all it
            # took (drained above), so what is still out here never reached it.
            if message.status != "ok" or message.settled:
                for attempt_id, attempt in list(self.attempts.items()):
                    if attempt.lease_id != message.lease_id:
                        continue
                    del self.attempts[attempt_id]
                    running = attempt_id == message.running
                    if running and (message.status == "failed" or attempt.kill_asked):
                        status: p.Status = "cancelled" if attempt.kill_asked else "failed"
                        ended = p.DirectDone(
                            p.AttemptResult(attempt_id, status, None, message.error)
                        )
                        taken.append((attempt, ended, []))
                    else:
                        out.append((attempt, running))
        self._deliver(taken)
        if out:
            self._wake_waiters()  # a waiter for one of them waits on its future instead
        return out

    def reset(self) -> None:
        """The dispatcher restarted (its slots were replaced): forget the lease and what was
        out on it (the client fails those tasks with the others the restart lost)."""
        with self.lock:
            self.lease_id = 0
            self.attempts.clear()

    def receive(self) -> None:
        """The descriptor signalled."""
        with self.lock:
            taken = self._drain()
        self._deliver(taken)

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self._sock.close(linger=0)
            self._wake_waiters()  # they see it closed

    # ---------------------------------------------------------------- application threads

    def try_send(
        self,
        future: Future[Any],
        spec: p.TaskSpec,
        frames: list[FrameLike],
        mark: Callable[[int], None],
    ) -> int:
        """Send the task to the leased slot; its direct attempt id, or 0 if there is no lease
        or no connection to its slot yet (or any more).

        Not before the connection is made: queued meanwhile, the task could reach the slot after
        the dispatcher's LeaseClose caused by what the client sent next (two hops, but over a
        connection made already), and be refused: it would run after work submitted later.
        ``mark`` is called with the attempt id before the send (and with 0 if it fails), so
        that whatever resolves the attempt finds the future marked."""
        with self.lock:
            if not self.lease_id or self._closed:
                return 0
            attempt_id = -(self.lease_id << 32 | next(self._numbers))
            self.attempts[attempt_id] = DirectAttempt(future, spec, frames, self.lease_id)
            run = p.RunSpec(attempt_id, spec.kind, spec.fn, spec.args, spec.priority)
            mark(attempt_id)
            try:
                message = p.DirectRun(self.lease_id, run, self._token)
                send(self._sock, message, frames, noblock=True)
            except zmq.Again:  # not connected (yet, or any more)
                del self.attempts[attempt_id]
                mark(0)
                if self._unreached_since is None:
                    self._unreached_since = time.monotonic()
                self._handshake_again()
                return 0
            except Exception:
                del self.attempts[attempt_id]
                mark(0)
                raise
            self._unreached_since = None
            taken = self._drain()
        self._deliver(taken)
        return attempt_id

    def _handshake_again(self) -> None:
        """With keys: connect to the leased slot again if the last try is old enough (its ZAP
        handler may have refused it before it knew of the lease; see _HANDSHAKE_AGAIN_AFTER)."""
        if self._keys is None or not self._address:
            return
        now = time.monotonic()
        if now - self._connected_at < _HANDSHAKE_AGAIN_AFTER:
            return
        with contextlib.suppress(zmq.ZMQError):  # ENOENT: libzmq forgot it already
            self._sock.disconnect(self._address)
        self._sock.connect(self._address)
        self._connected_at = now

    def unreachable(self) -> int:
        """If no leased slot could be reached for _CONNECT_WITHIN seconds, give leases up for
        good (their endpoints are not reachable from here, e.g. bound to another host's
        loopback) and return the lease to hand back (0: none, or not given up)."""
        with self.lock:
            since = self._unreached_since
            if since is None or time.monotonic() - since < _CONNECT_WITHIN:
                return 0
            lease_id, self.lease_id, self.usable = self.lease_id, 0, False
        log.warning(
            "the leased slot at %s cannot be reached: tasks go through the dispatcher",
            self._address,
        )
        return lease_id

    def kill(self, attempt_id: int) -> int:
        """Mark a direct attempt force-cancelled; its lease id (0: it is not out any more)."""
        with self.lock:
            attempt = self.attempts.get(attempt_id)
            if attempt is None:
                return 0
            attempt.kill_asked = True
            return attempt.lease_id

    def wait(self, future: Future[Any], attempt_id: int, timeout: float | None) -> None:
        """Receive until ``future`` is done, it leaves the lane, or ``timeout`` passes."""
        end = None if timeout is None else time.monotonic() + timeout
        poller = self._poller()
        with self.lock:
            self._waiters += 1
        try:
            # No look before the first wait: whoever drained last (try_send, the I/O thread)
            # left the descriptor to signal what comes next, or resolved the future and, as
            # we are counted as waiting, wrote to the wake-up pipe.
            while not future.done() and attempt_id in self.attempts:
                left = _LOOK_EVERY if end is None else min(_LOOK_EVERY, end - time.monotonic())
                if left <= 0:
                    return
                for fd, _ in poller.poll(left * 1000):
                    if fd == self._wake_read:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_read, 4096)
                with self.lock:
                    if self._closed:
                        return
                    taken = self._drain()
                self._deliver(taken, wake=False)  # (we are the waiter)
        finally:
            with self.lock:
                self._waiters -= 1

    def poll(self, poller: zmq.Poller, timeout_ms: int) -> dict[Any, int]:
        """``poller.poll`` for the client's I/O thread, which watches this lane's socket among
        its others: the socket is replaced when a lease moves to another slot (see grant)."""
        if self._io_watched != self.fd:
            if self._io_watched >= 0:
                poller.unregister(self._io_watched)
            poller.register(self.fd, zmq.POLLIN)
            self._io_watched = self.fd
        return dict(poller.poll(timeout_ms))

    def _poller(self) -> select.poll:
        # One per thread: a poll object refuses concurrent use.
        poller: select.poll | None = getattr(self._local, "poller", None)
        if poller is None:
            poller = self._local.poller = select.poll()
            poller.register(self._wake_read, select.POLLIN)
            self._local.fd = None
        if self._local.fd != self.fd:  # the socket was replaced (see grant)
            if self._local.fd is not None:
                poller.unregister(self._local.fd)
            poller.register(self.fd, select.POLLIN)
            self._local.fd = self.fd
        return poller

    def _new_socket(self) -> Socket:
        # No routing identity of our own: the slot's ROUTER names each connection itself. A
        # fixed one would be refused there as a duplicate when we come back to a slot that has
        # not yet seen our last connection to it go (it was busy running tasks), and what we
        # sent over the refused connection would be dropped without a word.
        sock = make_socket(self._context, zmq.DEALER, max_message_size=self._max_message_size)
        # Nothing is queued for a connection not made yet: a task sent before the lease's slot
        # is connected goes through the dispatcher instead (see try_send).
        sock.setsockopt(zmq.IMMEDIATE, 1)
        return sock

    # ----------------------------------------------------------------------- internals

    def _drain(self) -> list[_Taken]:
        """Everything waiting on the socket (the lock is held)."""
        taken: list[_Taken] = []
        if self._closed:
            return taken
        for message, frames in receive_pending(self._sock, "a leased slot"):
            if not isinstance(message, p.DirectDone):
                log.error("unexpected %s from a leased slot", type(message).__name__)
                continue
            attempt = self.attempts.pop(message.result.attempt_id, None)
            if attempt is None:
                continue  # failed over already (its lease ended): the dispatcher's run counts
            if message.refused and attempt.lease_id == self.lease_id:
                self.lease_id = 0
            taken.append((attempt, message, frames))
        return taken

    def _deliver(self, taken: list[_Taken], wake: bool = True) -> None:
        """Resolve what was taken off the socket (the lock is not held)."""
        for attempt, message, frames in taken:
            if message.refused:
                self._on_refused(attempt)
            else:
                self._on_result(attempt, message.result, frames)
        if taken and wake:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        if self._waiters:  # (read without the lock: a waiter counts itself before it looks)
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_write, b"x")


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)
