"""A leased slot's ZAP handler may refuse the lane's first handshake: the slot hears of a
lease when it next reads its socket, and the lane connects as soon as it is granted. libzmq
never tries a refused handshake again (the refusal ends its session), so the lane connects
again itself while no DirectRun can go out. Real sockets and real CURVE: a ROUTER serving
CURVE behind pyzmq's ZAP authenticator, which refuses the lane's key until told otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
import zmq
import zmq.utils.monitor

from _support.process_guard import eventually
from pydispatch.runtime.lane import Lane
from pydispatch.wire import protocol as p
from pydispatch.wire.security import Gate, Keys, serve_curve
from pydispatch.wire.transport import DEFAULT_MAX_MESSAGE_SIZE, parse, split_envelope


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def test_a_lane_refused_at_its_first_handshake_connects_again(context: zmq.Context[Any]) -> None:
    slot_public, slot_secret = (k.decode() for k in zmq.curve_keypair())
    client_public, client_secret = (k.decode() for k in zmq.curve_keypair())
    leased: set[str] = set()  # the keys the "slot" knows a lease of
    gate = Gate(context, leased.__contains__, "slot")
    slot = context.socket(zmq.ROUTER)
    serve_curve(slot, slot_public, slot_secret)
    port = slot.bind_to_random_port("tcp://127.0.0.1")
    keys = Keys("carol", "client", client_public, client_secret, "unused")
    lane = Lane(context, DEFAULT_MAX_MESSAGE_SIZE, lambda *a: None, lambda *a: None, keys)
    # The lane's socket's own events: the refusal is seen there, before the slot learns more.
    monitor = lane._sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    try:
        lane.grant(7, f"tcp://127.0.0.1:{port}", "w", b"t" * 16, slot_public)
        spec = p.TaskSpec(1, p.KIND_CALL, p.Blob(p.INLINE, (), b""), p.Blob(p.INLINE, (), b""))

        def sent() -> int:
            return lane.try_send(Future(), spec, [], lambda attempt: None)

        # Refused (the slot does not know the lease yet): nothing can go out.
        assert monitor.poll(30_000), "the slot's ZAP handler refused the first handshake"
        event = zmq.utils.monitor.recv_monitor_message(monitor)
        assert event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        assert sent() == 0
        leased.add(client_public)  # the slot has read its LeaseOpen
        eventually(lambda: sent() < 0, "a DirectRun goes out once the slot knows the lease")
        assert slot.poll(30_000)
        _, body = split_envelope(slot.recv_multipart(copy=False), routed=True)
        message, _ = parse(body)
        assert isinstance(message, p.DirectRun)
        assert message.lease_id == 7
        assert lane.usable
    finally:
        monitor.close(linger=0)
        lane.close()
        gate.stop()
        slot.close(linger=0)
