"""When a client says hello to the dispatcher, and what the dispatcher's silence calls for.

A client says hello every few seconds while it has work outstanding (a restarted dispatcher
learns its sending socket from it and answers with its new epoch), and the dispatcher answers
every hello. So an unanswered hello starts a silence: one of a few seconds is logged, and one
of ``reconnect_timeout`` seconds means the dispatcher is gone for this client's purposes (its
unresolved futures must fail rather than wait forever). Split from
:class:`~pydispatch.runtime.client_io.ClientIO` because these clocks and the verdict are their
own concern; the I/O thread sends the hellos and fails the futures.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import zmq

from ..wire import protocol as p
from ..wire.security import Keys, connect_with
from ..wire.transport import find_leader, split_addresses

__all__ = ["HELLO_EVERY", "DispatcherHellos", "Leaders", "ask_status"]

log = logging.getLogger(__name__)

HELLO_EVERY: Final = 2.0  # seconds between liveness hellos (until the dispatcher says)


class DispatcherHellos:
    """The hello clock and the silence since the first unanswered hello (I/O thread only)."""

    def __init__(self, address: str, reconnect_timeout: float) -> None:
        self.address = address
        self.reconnect_timeout = reconnect_timeout
        self.every = HELLO_EVERY
        self._last = time.monotonic()
        # Since when a hello is unanswered (None: the dispatcher spoke since the last one),
        # and whether the silence has been logged.
        self._unanswered_since: float | None = None
        self._logged = False
        # The dispatcher spoke again after a silence it may have taken for this client's end
        # (it drops the queued tasks of a client silent for its client timeout), or a socket
        # connected again (a dropped connection may have taken tasks or results with it, see
        # reconnect): the client sends its unresolved tasks again at the next Welcome.
        self.resend_due = False
        # Handshakes of the receiving and the sending socket, by endpoint: only a second one
        # with the same dispatcher is a reconnection (moving from a standby to the leader
        # makes a first one there).
        self._connections: tuple[Counter[str], Counter[str]] = (Counter(), Counter())

    def set_interval(self, hello_interval: float) -> None:
        """The dispatcher's Welcome says how often it wants hellos (never less often than
        :data:`HELLO_EVERY`: the client notices a restart by them)."""
        self.every = min(HELLO_EVERY, max(0.01, hello_interval))

    def greet_soon(self) -> None:
        """A new connection (the dispatcher restarted): the next hello goes at once."""
        self._last = 0.0

    def connected(self, sending: int, endpoint: str) -> bool:
        """The receiving (0) or sending (1) socket made a connection to ``endpoint``: a hello
        goes at once. Whether it was the sending socket connecting again to the same
        dispatcher (its silent connection dropped: the receiving one, cut off as well, is to
        connect afresh too)."""
        self.greet_soon()
        handshakes = self._connections[sending]
        handshakes[endpoint] += 1
        again = handshakes[endpoint] > 1
        self.resend_due |= again
        return again and sending == 1

    def heard(self) -> None:
        """The dispatcher spoke: it is not silent."""
        since = self._unanswered_since
        if since is not None and time.monotonic() - since >= self._long_silence():
            self.resend_due = True
        self._unanswered_since = None

    def silence(self) -> float:
        """Seconds since the first hello the dispatcher has not answered (0: none)."""
        since = self._unanswered_since
        return 0.0 if since is None else time.monotonic() - since

    def _long_silence(self) -> float:
        return min(2.0, self.reconnect_timeout / 2)

    def take_turn(self) -> bool:
        """Whether a hello is due now; if so it counts as sent (the silence starts with it)."""
        now = time.monotonic()
        if now - self._last <= self.every:
            return False
        self._last = now
        if self._unanswered_since is None:
            self._unanswered_since = now
        return True

    def check(self, waiting: Callable[[], list[int]]) -> tuple[list[int], str] | None:
        """Judge the silence: a short one is fine, a longer one is logged (with the tasks
        ``waiting()`` returns, the unresolved ones), and one of ``reconnect_timeout`` gives
        up on the dispatcher. Returns the task ids to fail and why, or None; after giving up,
        the tasks submitted from then on get a ``reconnect_timeout`` of their own."""
        since = self._unanswered_since
        silence = 0.0 if since is None else time.monotonic() - since
        if silence < self._long_silence():
            if self._logged:
                self._logged = False
                log.warning("the dispatcher at %s answers again", self.address)
            return None
        unresolved = waiting()  # only now: it takes the client's lock
        if not unresolved:
            return None
        if silence >= self.reconnect_timeout:
            reason = (
                f"the dispatcher at {self.address} did not answer for {silence:.1f} s "
                f"(reconnect_timeout={self.reconnect_timeout:g} s): the task's outcome is unknown"
            )
            log.error("%s; %d unresolved future(s) failed", reason, len(unresolved))
            self._unanswered_since = time.monotonic()
            self._logged = False
            return unresolved, reason
        if not self._logged:
            self._logged = True
            log.warning(
                "the dispatcher at %s has not answered for %.1f s (%d task(s) outstanding); "
                "their futures fail after %g s without an answer (reconnect_timeout)",
                self.address,
                silence,
                len(unresolved),
                self.reconnect_timeout,
            )
        return None


# Given standbys, a leader silent this long (seconds) has the others asked who leads: a hello
# goes every 2 s at most, so that is one unanswered hello and a little.
LOOK_FOR_LEADER_AFTER: Final = 2.5


class Leaders:
    """The dispatchers a client was given (``tcp://h1:5555,tcp://h2:5555``: a leader and its
    standbys) and which one it talks to (I/O thread, once started)."""

    def __init__(self, address: str, keys: Keys | None, timeout: float) -> None:
        self.addresses = split_addresses(address)
        self.keys = keys
        # The only one, or the one that leads (else the first: the client's wait for a
        # Welcome then says nobody answered there).
        self.current = self.addresses[0]
        if len(self.addresses) > 1:
            with contextlib.suppress(TimeoutError):
                self.current = find_leader(self.addresses, keys, timeout)
        self._looked_at = time.monotonic()

    def look(self, silence: float) -> str:
        """After a silence of the one we talk to, who leads now ("": no other, or nobody
        answered); asked at most every LOOK_FOR_LEADER_AFTER seconds."""
        now = time.monotonic()
        if len(self.addresses) < 2 or min(silence, now - self._looked_at) < LOOK_FOR_LEADER_AFTER:
            return ""
        self._looked_at = now
        try:
            return find_leader(self.addresses, self.keys, 2.0)
        except TimeoutError:
            return ""

    def move(self, sockets: tuple[zmq.Socket[Any], ...], leader: str) -> None:
        """Reconnect ``sockets`` from the current address to ``leader``'s."""
        for sock in sockets:
            with contextlib.suppress(zmq.ZMQError):  # (never connected there)
                sock.disconnect(self.current)
            connect_with(sock, self.keys, leader)
        self.current = leader
        if leader not in self.addresses:  # named by a standby
            self.addresses.append(leader)


def ask_status(
    ask: Callable[[], None], replies: queue.Queue[p.StatusReply], timeout: float, address: str
) -> p.StatusReply:
    """The dispatcher's status, asked again every second (a request is lost while the client
    moves to a new leader); TimeoutError when none comes within ``timeout`` seconds."""
    while not replies.empty():  # late answers to an earlier call
        replies.get_nowait()
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        ask()
        with contextlib.suppress(queue.Empty):
            return replies.get(timeout=min(left, 1.0))
    raise TimeoutError(f"the dispatcher at {address} gave no status in {timeout:g} s")
