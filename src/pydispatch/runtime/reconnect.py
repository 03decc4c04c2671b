"""How a worker's sockets reconnect to a dispatcher that went away: each at its own pace.

When a dispatcher restarts, every worker's connections (the worker's, its heartbeat thread's
and each slot's) break at the same moment. With libzmq's defaults they would all retry every
100 ms in step: thousands of connections arriving together overflow the listen backlog, and
the kernel's SYN retries (1 s, 3 s, ...) then make a staircase of the cluster's return. So
each socket draws its own first interval (``RECONNECT_IVL``, uniform in 100-400 ms; libzmq
adds up to one more interval at random to every attempt) and backs off, doubling, up to
``RECONNECT_IVL_MAX`` (5 s) while the dispatcher stays away.
"""

from __future__ import annotations

import random
from typing import Any, Final

import zmq

__all__ = ["RECONNECT_MAX_MS", "RECONNECT_MIN_MS", "spread_reconnects"]

RECONNECT_MIN_MS: Final = 100  # the shortest first interval a socket may draw
RECONNECT_MAX_MS: Final = 5_000  # the longest interval backing off reaches


def spread_reconnects(sock: zmq.Socket[Any]) -> None:
    """Give ``sock`` (before it connects) a random reconnect interval and a backoff."""
    sock.setsockopt(zmq.RECONNECT_IVL, random.randint(RECONNECT_MIN_MS, 4 * RECONNECT_MIN_MS))
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)
