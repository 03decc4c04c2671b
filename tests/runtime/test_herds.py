"""A herd of workers: the dispatcher's listen backlog holds it, and workers reconnect to a
restarted dispatcher each at its own random pace (issue 21)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from typing import Any

import pytest
import zmq

from _support.workers import close_unstarted
from pydispatch.runtime.dispatcher import LISTEN_BACKLOG, Dispatcher
from pydispatch.runtime.reconnect import RECONNECT_MAX_MS, RECONNECT_MIN_MS, spread_reconnects
from pydispatch.runtime.worker import Worker, WorkerOptions


def _somaxconn() -> int:
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the backlog")
def test_the_dispatcher_listens_with_a_backlog_for_herds() -> None:
    dispatcher = Dispatcher("tcp://127.0.0.1:*", job_masters=False)
    serving = threading.Thread(target=dispatcher.serve_forever)
    serving.start()
    try:
        port = dispatcher.endpoint.rsplit(":", 1)[1]
        listing = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        # A listening socket's Send-Q is its backlog, as the kernel capped it (somaxconn).
        assert int(listing[2]) == min(LISTEN_BACKLOG, _somaxconn())
        assert int(listing[2]) > 100  # more than zmq's default, whatever the kernel
    finally:
        dispatcher.stop()
        serving.join(10)


def test_reconnect_intervals_are_drawn_at_random_with_a_backoff() -> None:
    context: zmq.Context[Any] = zmq.Context()
    try:
        sockets = [context.socket(zmq.DEALER) for _ in range(64)]
        for sock in sockets:
            spread_reconnects(sock)
        intervals = [sock.getsockopt(zmq.RECONNECT_IVL) for sock in sockets]
        assert all(RECONNECT_MIN_MS <= ivl <= 4 * RECONNECT_MIN_MS for ivl in intervals)
        assert len(set(intervals)) > 8  # not in step
        assert {sock.getsockopt(zmq.RECONNECT_IVL_MAX) for sock in sockets} == {RECONNECT_MAX_MS}
    finally:
        context.destroy(linger=0)


def test_a_workers_sockets_reconnect_at_their_own_pace() -> None:
    worker = Worker("tcp://127.0.0.1:1", WorkerOptions(data_bind=""))
    try:
        sock = worker._sock
        assert RECONNECT_MIN_MS <= sock.getsockopt(zmq.RECONNECT_IVL) <= 4 * RECONNECT_MIN_MS
        assert sock.getsockopt(zmq.RECONNECT_IVL_MAX) == RECONNECT_MAX_MS
    finally:
        close_unstarted(worker)
