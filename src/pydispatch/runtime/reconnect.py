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

* the dispatcher pings every peer (ZMTP heartbeats, :func:`watch_peers`) and drops a
  connection silent for ``heartbeat_timeout`` plus two intervals. By then its scheduler has
  removed a silent worker and re-queued what it ran, so what the dropped connection still
  held is not missed; a client sends its unresolved tasks again when it is back (client_io).
  Each ping also asks the peer to drop its side as late (``HEARTBEAT_TTL``), but libzmq arms
  that timer only when a ping was the last thing received, so
* a worker and a client ping the dispatcher themselves (:func:`drop_when_silent`) and drop a
  connection silent for :data:`WORKER_SILENCE_S` (the dispatcher's with its default
  settings: a worker cannot know another's before it connects). A worker's own socket and
  its heartbeat socket carry nothing a dispatcher that has not removed it yet would miss;
  its slots' sockets rely on the dispatcher's side (their results must not be dropped
  before their worker is removed). A client's receiving socket waits longer
  (:data:`CLIENT_SILENCE_S`): the dispatcher's answer to a ping queues behind a large result
  being sent, and a connection dropped in its middle would send the task again and again;
* a connection attempt gives up after ``CONNECT_TIMEOUT_MS`` and the backoff stops at
  ``RECONNECT_MAX_MS``: a peer tries a fresh connection at least every ~2 s, so it is back
  within about 2 s of the heal;
* ``ROUTER_HANDOVER``: the new connection of a peer takes over its identity at once, even
  if the dispatcher's side of the old one has not timed out yet.
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
    "connection_timeout",
    "drop_when_silent",
    "spread_reconnects",
    "watch_peers",
]

RECONNECT_MIN_MS: Final = 100  # the shortest first interval a socket may draw
RECONNECT_MAX_MS: Final = 1_000  # the longest interval backing off reaches
# A TCP connect unanswered for this long is abandoned and retried (the kernel's own SYN
# retries come after 1 s, then 3 s, 7 s ...: too late after a heal).
CONNECT_TIMEOUT_MS: Final = 1_500
WORKER_SILENCE_S: Final = 12.0  # the dispatcher's default heartbeat timeout, 2 intervals more
CLIENT_SILENCE_S: Final = 30.0  # a 512 MiB result takes 4.3 s at 1 Gb/s, 43 s at 100 Mb/s
_PING_EVERY_MS: Final = 1_000
_TTL_MAX_S: Final = 6_553.0  # ZMTP carries the TTL in deciseconds, on 16 bits


def spread_reconnects(sock: zmq.Socket[Any]) -> None:
    """Give ``sock`` (before it connects) a random reconnect interval, a bounded backoff and
    a connect timeout."""
    sock.setsockopt(zmq.RECONNECT_IVL, random.randint(RECONNECT_MIN_MS, 4 * RECONNECT_MIN_MS))
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)
    sock.setsockopt(zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)


def connection_timeout(heartbeat_interval: float, heartbeat_timeout: float) -> float:
    """Seconds of silence after which a connection to the dispatcher is dropped: later than
    the scheduler's verdict on a silent worker (its next tick included)."""
    return min(heartbeat_timeout + 2 * heartbeat_interval, _TTL_MAX_S)


def watch_peers(sock: zmq.Socket[Any], heartbeat_interval: float, heartbeat_timeout: float) -> None:
    """Set the dispatcher's ROUTER (before it binds) to ping its peers and drop silent
    connections on both sides, and to let a reconnecting peer take its identity over."""
    timeout_ms = int(connection_timeout(heartbeat_interval, heartbeat_timeout) * 1000)
    sock.setsockopt(zmq.HEARTBEAT_IVL, max(100, int(heartbeat_interval * 1000)))
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, timeout_ms)
    sock.setsockopt(zmq.HEARTBEAT_TTL, timeout_ms)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)


def drop_when_silent(sock: zmq.Socket[Any], seconds: float) -> None:
    """Have ``sock`` (before it connects) ping its peer every second and drop a connection
    that answered nothing for ``seconds``: it then connects afresh, within
    about 2 s of the link's return."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, _PING_EVERY_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(seconds * 1000))
