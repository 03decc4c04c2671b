"""A worker's silence limit follows its dispatcher's heartbeat timeout (issue 14; see
``runtime.reconnect``). The link cut that shows why: tests/multihost/test_silence_across_a_cut."""

from __future__ import annotations

from typing import Any

import pytest
import zmq

from _support.workers import close_unstarted
from pydispatch.runtime.reconnect import WORKER_SILENCE_S, follow_silence, worker_silence
from pydispatch.runtime.worker import Worker, WorkerOptions
from pydispatch.wire import protocol as p


def test_the_limit_is_the_timeout_and_two_pings_never_below_the_default() -> None:
    assert worker_silence(10.0) == WORKER_SILENCE_S == 12.0  # the default timeout's
    assert worker_silence(1.0) == WORKER_SILENCE_S  # a pause of the dispatcher stays safe
    assert worker_silence(40.0) == 42.0


def test_a_socket_given_another_limit_connects_again_and_keeps_its_identity() -> None:
    context: zmq.Context[Any] = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_HANDOVER, 1)
    address = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.ROUTING_ID, b"w")
    dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, 12_000)
    try:
        dealer.connect(address)
        assert not follow_silence(dealer, 12.0, address)  # the same: nothing to do
        assert follow_silence(dealer, 42.0, address)
        assert dealer.getsockopt(zmq.HEARTBEAT_TIMEOUT) == 42_000
        dealer.send(b"after")
        assert router.poll(10_000)
        assert router.recv_multipart() == [b"w", b"after"]
        router.send_multipart([b"w", b"back"])  # the new connection is the identity's now
        assert dealer.poll(10_000)
        assert dealer.recv() == b"back"
    finally:
        context.destroy(linger=0)


@pytest.mark.parametrize(
    ("timeout", "limit_ms"), [(40.0, 42_000), (3.0, 12_000), (float("nan"), 12_000)]
)
def test_a_worker_takes_the_limit_from_registered(timeout: float, limit_ms: int) -> None:
    worker = Worker("tcp://127.0.0.1:1", WorkerOptions(data_bind=""))
    try:
        worker._handle(p.Registered(1.0, timeout, "epoch"))
        assert worker._sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) == limit_ms
        assert worker._silence * 1000 == limit_ms  # what its heartbeat thread follows
    finally:
        close_unstarted(worker)
