"""A standby dispatcher's wait: it serves its address, answering whoever asks with the leader's
address, and tries to take the lead every heartbeat interval.

Clients and workers may be given every dispatcher's address (``tcp://h1:5555,tcp://h2:5555``)
or only one: a standby they reach tells them where the leader is
(``Error(NOT_LEADER, leader)``, see ``wire.transport.find_leader``), instead of leaving them
waiting on a silent address. Nothing a peer sends is decoded here (a standby acts on nothing),
and with keys only known keys get through the CURVE handshake, as at the leader.

Standbys on the leader's own host and address (a restart in place) cannot bind it: they wait
unbound. When this dispatcher takes the lead it closes the socket; the :class:`Dispatcher` binds the
same address at once, and the peers connected here reconnect to it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from ..wire import protocol as p
from ..wire.security import Keys
from ..wire.transport import make_socket, send
from .access import serve_keys
from .pg_store import Leadership

__all__ = ["wait_as_standby"]

log = logging.getLogger(__name__)


def wait_as_standby(
    leadership: Leadership,
    bind: str,
    keys: Keys | None,
    every: float,
    on_wait: Callable[[str], None],
) -> int:
    """Block until this dispatcher leads (its fencing epoch); meanwhile answer every message
    on ``bind`` with the leader's address and call ``on_wait(leader)`` after each try."""
    context: zmq.Context[Any] = zmq.Context()
    sock = make_socket(context, zmq.ROUTER)
    gate = None
    try:
        if keys is not None:
            _, gate, _ = serve_keys(context, sock, keys)
        try:
            sock.bind(bind)
        except zmq.ZMQError as error:
            if error.errno != zmq.EADDRINUSE:
                raise
            # The leader holds the address (standbys of one host share it): wait unbound;
            # the peers find whoever binds it next.
            log.info("standby: %s is taken (by the leader): not answering there", bind)
        while not (epoch := leadership.try_lead()):
            leader = leadership.leader()
            on_wait(leader)
            deadline = time.monotonic() + every
            while (left := deadline - time.monotonic()) > 0:
                if sock.poll(max(1, int(left * 1000))):
                    _answer_all(sock, leader)
        return epoch
    finally:
        sock.close(linger=0)
        if gate is not None:
            gate.stop()
        context.term()


def _answer_all(sock: zmq.Socket[Any], leader: str) -> None:
    """Every waiting message gets the leader's address (its routing frame is all we read)."""
    answer = p.Error(p.NOT_LEADER, leader)
    with contextlib.suppress(zmq.Again):
        while True:
            parts = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            with contextlib.suppress(zmq.ZMQError):  # the peer left meanwhile
                send(sock, answer, identity=parts[0], noblock=True)
