"""A client that reconnects keeps its sending socket: the dispatcher's book of clients and the
client's count of its connections, against libzmq's handover of a reconnecting identity.

The flake these pin (``test_standby.py``, 1 run in ~7 under load): a client moving from a
standby to the leader took its sending socket's first handshake with the leader for a
reconnection and connected its receiving socket afresh; the leader's ROUTER handed the
client's identity over to the new connection and delivered the hello still held by the old one
under a name libzmq made up, which then owned the client's sending socket, so the client's own
hellos were refused ("the hello names a sender identity that is taken").
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import zmq

from pydispatch.runtime.client_book import ClientBook
from pydispatch.runtime.hellos import DispatcherHellos
from pydispatch.wire import protocol as p

SENDER = b"client-0123-send"
CLIENT = b"client-0123"


LEFTOVER = b"\x00\x12\x34\x56\x78"  # libzmq's name for a connection taken over


def _book(keys: dict[bytes, str] | None = None) -> ClientBook:
    key_of = None if keys is None else (lambda identity: keys.get(identity, ""))
    return ClientBook(30.0, lambda identity: identity == b"worker-1", key_of=key_of)


def test_the_old_connections_hello_gives_the_sending_socket_back_to_the_clients_own() -> None:
    book = _book({LEFTOVER: "alice", CLIENT: "alice"})  # one key: the same client
    book.hello(LEFTOVER, SENDER, now=0.0)
    book.hello(CLIENT, SENDER, now=1.0)
    assert book.senders == {SENDER: CLIENT}
    assert CLIENT in book
    assert LEFTOVER not in book
    assert LEFTOVER not in book.seen


@pytest.mark.parametrize(
    "keys", [None, {LEFTOVER: "alice", CLIENT: "mallory"}], ids=["no keys", "another key"]
)
def test_an_unnamed_clients_sending_socket_is_not_given_to_another(
    keys: dict[bytes, str] | None,
) -> None:
    book = _book(keys)  # an unnamed socket gets such a name too: only its own key takes over
    book.hello(LEFTOVER, SENDER, now=0.0)
    with pytest.raises(p.ProtocolError, match="sender identity that is taken"):
        book.hello(CLIENT, SENDER, now=1.0)
    assert book.senders == {SENDER: LEFTOVER}


def test_a_named_clients_sending_socket_cannot_be_taken() -> None:
    book = _book()
    book.hello(CLIENT, SENDER, now=0.0)
    for other in (b"client-4567", LEFTOVER):
        with pytest.raises(p.ProtocolError, match="sender identity that is taken"):
            book.hello(other, SENDER, now=1.0)
    assert book.senders == {SENDER: CLIENT}
    with pytest.raises(p.ProtocolError, match="taken"):
        book.hello(b"client-4567", b"worker-1", now=1.0)  # a worker's identity


def test_only_a_second_handshake_with_the_same_dispatcher_is_a_reconnection() -> None:
    hellos = DispatcherHellos("tcp://127.0.0.1:2", reconnect_timeout=30.0)
    standby, leader = "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"
    assert not hellos.connected(1, standby)  # the sending socket's first, at the standby
    assert not hellos.connected(0, leader)
    assert not hellos.connected(1, leader)  # moved to the leader: its first there
    assert not hellos.resend_due
    assert not hellos.connected(0, leader)  # the receiving socket's own: nothing to redo
    assert hellos.resend_due
    assert hellos.connected(1, leader)  # the sending socket's connection dropped


def test_libzmq_delivers_a_taken_over_connections_messages_under_a_made_up_name() -> None:
    """The premise of ``client_book._taken_over``, on real sockets: what the old connection
    still held comes (if at all) under its own name or a made-up one, never another's."""
    context: zmq.Context[Any] = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_HANDOVER, 1)
    router.setsockopt(zmq.LINGER, 0)
    address = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.ROUTING_ID, CLIENT)
    try:
        dealer.connect(address)
        dealer.send_multipart([b"", b"first"])
        # Not read (a poll would take it in under the old name): left in the old connection.
        time.sleep(0.3)
        dealer.disconnect(address)
        dealer.connect(address)
        dealer.send_multipart([b"", b"second"])
        got: dict[bytes, bytes] = {}
        while b"second" not in got and router.poll(30_000):
            identity, _, body = router.recv_multipart()
            got[body] = identity
        while router.poll(300):
            identity, _, body = router.recv_multipart()
            got[body] = identity
        assert got[b"second"] == CLIENT
        if b"first" in got:
            old = got[b"first"]
            assert old == CLIENT or (len(old) == 5 and old[0] == 0)
    finally:
        dealer.close(linger=0)
        router.close(linger=0)
        context.term()
