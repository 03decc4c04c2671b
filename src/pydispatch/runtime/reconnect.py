"""How sockets find a dispatcher again: each at its own pace, soon after it is back.

When a dispatcher restarts, every worker's connections (the worker's, its heartbeat thread's
and each slot's) break at the same moment. With libzmq's defaults they would all retry every
100 ms in step: thousands of connections arriving together overflow the listen backlog, and
the kernel's SYN retries (1 s, 3 s, ...) then make a staircase of the cluster's return. So
each socket draws its own first interval (``RECONNECT_IVL``, uniform in 100-400 ms; libzmq
adds up to one more interval at random to every attempt) and backs off, doubling, up to
``RECONNECT_IVL_MAX`` while the dispatcher stays away (issue 21).

A link cut is another matter (issue 14): nothing breaks, packets just vanish. A TCP
connection with unacknowledged data then retransmits at doubling intervals, so after a cut
of 15 s its next packet leaves some 10 s after the link healed, and a connection attempt
made during the cut waits for the kernel's SYN retries (1, 3, 7, 15 s ...). Hence:

* a worker and a client ping the dispatcher (ZMTP heartbeats, :func:`drop_when_silent`) and
  drop a connection silent for :data:`WORKER_SILENCE_S` (the dispatcher's heartbeat timeout
  and two intervals with its default settings: a worker cannot know another's before it
  connects), then connect afresh. A registered worker follows a longer timeout its
  dispatcher tells in ``Registered`` (:func:`worker_silence`): silent for less, it would drop
  a connection whose messages the dispatcher still waits for (it has not removed the
  worker). libzmq copies the option into a connection when ``connect`` is called, so a
  socket whose limit changes connects again (:func:`follow_silence`), once, just after it
  registered. Their I/O threads read all the while, so dropping loses
  nothing already received; what the dropped connection had not delivered is covered: by
  then the dispatcher has removed a silent worker (the worker registers again, its slots
  replaced), and a client sends its unresolved tasks again (client_io). A client's
  receiving socket waits longer (:data:`CLIENT_SILENCE_S`): the dispatcher's answer to a
  ping queues behind a large result being sent, and a connection dropped in its middle
  would have the task run again and again; the client reconnects it when its sending socket
  had to reconnect. Slots rely on their worker: it replaces them when it registers again;
* a connection attempt gives up after ``CONNECT_TIMEOUT_MS`` and the backoff stops at
  ``RECONNECT_MAX_MS``: a peer tries a fresh connection at least every ~2 s, so it is back
  within about 2 s of the heal;
* the dispatcher lets the new connection of a peer take its identity over at once
  (``ROUTER_HANDOVER``, :func:`take_over_identities`): its side of the old one may live on
  for long. It pings nobody and drops nothing itself: after the dispatcher process was
  stopped for a while (a debugger, a VM paused), libzmq's timers would fire before the
  peers' answers waiting in its buffers are read, and it would drop every connection with
  the results in them.
"""

from __future__ import annotations

import random
from typing import Any, Final

import zmq

__all__ = [
    "CLIENT_SILENCE_S",
    "CONNECT_TIMEOUT_MS",
    "RECONNECT_MAX_MS",
    "RECONNECT_MIN_MS",
    "WORKER_SILENCE_S",
    "drop_when_silent",
    "follow_silence",
    "spread_reconnects",
    "take_over_identities",
    "worker_silence",
]

RECONNECT_MIN_MS: Final = 100  # the shortest first interval a socket may draw
RECONNECT_MAX_MS: Final = 1_000  # the longest interval backing off reaches
# A TCP connect unanswered for this long is abandoned and retried (the kernel's own SYN
# retries come after 1 s, then 3 s, 7 s ...: too late after a heal).
CONNECT_TIMEOUT_MS: Final = 1_500
WORKER_SILENCE_S: Final = 12.0  # the dispatcher's default heartbeat timeout, 2 intervals more
CLIENT_SILENCE_S: Final = 30.0  # a 512 MiB result takes 4.3 s at 1 Gb/s, 43 s at 100 Mb/s
_PING_EVERY_MS: Final = 1_000


def spread_reconnects(sock: zmq.Socket[Any]) -> None:
    """Give ``sock`` (before it connects) a random reconnect interval, a bounded backoff and
    a connect timeout."""
    sock.setsockopt(zmq.RECONNECT_IVL, random.randint(RECONNECT_MIN_MS, 4 * RECONNECT_MIN_MS))
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)
    sock.setsockopt(zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)


def take_over_identities(sock: zmq.Socket[Any]) -> None:
    """Set the dispatcher's ROUTER so that a peer connecting again under its identity takes
    it over from its old connection (which is closed), rather than being ignored."""
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)


def drop_when_silent(sock: zmq.Socket[Any], seconds: float) -> None:
    """Have ``sock`` (before it connects) ping its peer every second and drop a connection
    that answered nothing for ``seconds``: it then connects afresh, within
    about 2 s of the link's return."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, _PING_EVERY_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(seconds * 1000))


def worker_silence(heartbeat_timeout: float) -> float:
    """How long a worker's connection may stay silent before it drops it, given its
    dispatcher's ``heartbeat_timeout``: two pings longer, so that the dispatcher has removed a
    worker cut off before the worker drops the connection (registering again then covers what
    the dropped connection held). Never below :data:`WORKER_SILENCE_S`: a dispatcher that did
    not run for a while (stopped, starved) does not count that time as its workers' silence
    and removes none, so a worker dropping its connection after a pause of a few seconds
    would lose what the dispatcher had sent it (a force-cancel's Kill, with a timeout of 1 s
    and a limit of 3 s)."""
    return max(WORKER_SILENCE_S, heartbeat_timeout + 2 * _PING_EVERY_MS / 1000)


def follow_silence(sock: zmq.Socket[Any], seconds: float, address: str) -> bool:
    """Give ``sock``, connected to ``address``, a silence limit of ``seconds``: if it differs
    from the one its connection has, set it and connect again (the dispatcher's ROUTER hands
    our identity over to the new connection). Whether it connected again."""
    limit = int(seconds * 1000)
    if sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) == limit:
        return False
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, limit)
    sock.disconnect(address)
    sock.connect(address)
    return True
