"""512 MiB sent at the dispatcher of a cluster with keys, by strangers and by hostile peers with
keys: its memory does not grow with what they send (real processes, RSS from /proc).

A stranger's bytes never get past the handshake (garbage, no key, an unknown key). A peer with
a key gets its messages read and refused, or answered into a bounded queue (``PEER_QUEUE``):
nothing of them is kept.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from _support.process_guard import eventually
from _support.secure_cluster import SecureCluster, raw_socket
from pydispatch import Client
from pydispatch.wire import protocol as p
from pydispatch.wire.transport import send

MiB = 1 << 20
VOLUME = 512 * MiB

pytestmark = pytest.mark.slow


def rss(pid: int) -> int:
    """Resident memory of ``pid``, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    with SecureCluster(tmp_path_factory.mktemp("memory"), workers=1) as cluster:
        yield cluster


def settled(secure: SecureCluster) -> int:
    """The dispatcher's RSS once it has handled everything sent so far (a client's round trip
    queues behind it)."""
    with Client(secure.address, keys=str(secure.keys), identity="bob") as client:
        assert client.submit(abs, -1).result(timeout=60) == 1
    return rss(secure.pids()[0])


def flood(sock: zmq.Socket[Any], message: p.Message, volume: int = VOLUME) -> None:
    frame = b"x" * (8 * MiB)
    for _ in range(volume // len(frame)):
        send(sock, message, [frame])


def test_strangers_bytes_never_reach_the_dispatcher(secure: SecureCluster) -> None:
    dispatcher = secure.pids()[0]
    before = settled(secure)
    host, port = secure.address[len("tcp://") :].rsplit(":", 1)
    sent, chunk = 0, b"\xff" * MiB
    while sent < VOLUME:  # garbage instead of a ZMTP greeting: cut off, connect again
        with socket.create_connection((host, int(port))) as raw:
            try:
                while sent < VOLUME:
                    raw.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
    context: zmq.Context[Any] = zmq.Context()
    try:
        for keys in (None, secure.stranger):  # no CURVE; CURVE with an unknown key
            sock = raw_socket(context, secure.address, keys)
            sock.setsockopt(zmq.SNDTIMEO, 2000)
            # zmq.Again: nothing is connected to take it (the handshake failed).
            with contextlib.suppress(zmq.Again):
                flood(sock, p.StatusRequest())
    finally:
        context.destroy(linger=0)
    after = settled(secure)
    print(f"\n[memory] dispatcher RSS {before} MiB -> {after} MiB after strangers' floods")
    assert after - before < 32
    assert rss(dispatcher) < 256


def drained(sock: zmq.Socket[Any], marker: p.Message, answers: int) -> None:
    """Send ``marker`` behind what ``sock`` sent (one connection: handled in order) and read
    ``answers`` replies: once the last is here, the dispatcher has handled the flood."""
    send(sock, marker)
    for _ in range(answers):
        assert sock.poll(120_000), "the dispatcher answers"
        sock.recv_multipart()


def test_hostile_keys_cannot_grow_the_dispatcher(secure: SecureCluster) -> None:
    dispatcher = secure.pids()[0]
    context: zmq.Context[Any] = zmq.Context()
    figures = [settled(secure)]
    try:
        worker = raw_socket(context, secure.address, secure.key("worker"))
        hello = p.SlotHello(p.PROTOCOL_VERSION, b"w")  # answered: a marker behind the flood
        flood(worker, p.Submit([]))  # refused by role (one answer), 64 x 8 MiB
        drained(worker, hello, 2)
        figures.append(rss(dispatcher))
        alice = raw_socket(context, secure.address, secure.key("alice"))
        flood(alice, p.StatusRequest())  # allowed: read, answered, its frames dropped
        drained(alice, p.StatusRequest(), VOLUME // (8 * MiB) + 1)
        figures.append(rss(dispatcher))
        flood(worker, p.Submit([]))  # a second and a third burst
        drained(worker, hello, 1)
        flood(worker, p.Submit([]))
        drained(worker, hello, 1)
        figures.append(rss(dispatcher))
        lazy = raw_socket(context, secure.address, secure.key("alice"))
        lazy.setsockopt(zmq.RCVHWM, 1)  # and never reads
        for _ in range(50_000):  # answers it never reads: the dispatcher's queue is bounded
            send(lazy, p.StatusRequest())
        eventually(lambda: "it does not read" in secure.log("dispatcher"), "the drop logged")
        drained(worker, hello, 1)
        figures.append(rss(dispatcher))
    finally:
        context.destroy(linger=0)
    print(
        f"\n[memory] dispatcher RSS (MiB): at rest, then after each 512 MiB flood by a peer "
        f"with keys (worker, client, 2 x worker), then after 50,000 unread answers: {figures}"
    )
    # 2 GiB and 50,000 unread answers later, the dispatcher holds nothing of them. (Before a
    # refusal stopped holding its own exception, each refused burst stayed in a reference cycle
    # until the next full collection: 32 -> 545 -> 1571 MiB.)
    assert max(figures) - figures[0] < 128
    assert secure.log("dispatcher").count("it does not read") == 1
