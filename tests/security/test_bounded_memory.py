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
from pydispatch.wire.transport import dumps, parse, send, split_envelope

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


def test_a_lease_holder_cannot_grow_its_slot(secure: SecureCluster) -> None:
    """512 MiB of DirectRuns without the lease's token, by the key that holds the lease (the
    only key the slot's direct endpoint lets in): read, refused, not kept."""
    import secrets

    from _support.process_guard import children
    from _support.secure_cluster import listening_ports

    with Client(secure.address, keys=str(secure.keys), identity="alice") as alice:
        for _ in range(500):
            future = alice.submit(abs, -3)
            assert future.result(timeout=30) == 3
            if future._lane_attempt < 0:
                break
        lane = alice._lane
        assert lane.lease_id, "no lease was granted"
        port = int(lane._address.rsplit(":", 1)[1])
        (slot,) = [
            pid
            for worker in secure.pids()[1:]
            for pid in children(worker)
            if port in listening_ports(pid)
        ]
        before = rss(slot)
        context: zmq.Context[Any] = zmq.Context()
        try:
            sock = raw_socket(context, lane._address, secure.key("alice"))
            sock.setsockopt(zmq.CURVE_SERVERKEY, secure.key("worker").public.encode())
            sock.disconnect(lane._address)
            sock.connect(lane._address)  # (the server key is read at connect)
            spec = p.RunSpec(-(lane.lease_id << 32 | 7), p.KIND_CALL, p.Blob(0), p.Blob(0))
            flood(sock, p.DirectRun(lane.lease_id, spec, secrets.token_bytes(16)))
            # Behind the flood on the same connection (read in order), one with the token:
            # once it is answered, the slot has read the whole flood.
            frames: list[Any] = []
            fn, args = dumps(abs, frames), dumps(((-5,), {}), frames)
            good = p.RunSpec(-(lane.lease_id << 32 | 99_999), p.KIND_CALL, fn, args)
            send(sock, p.DirectRun(lane.lease_id, good, lane._token), frames)
            assert sock.poll(300_000), "the slot answers"
            _, body = split_envelope(sock.recv_multipart(copy=False), routed=False)
            done, _ = parse(body)
            assert isinstance(done, p.DirectDone)
            assert (done.refused, done.result.status) == (False, "ok")
            after = rss(slot)
            assert alice.submit(abs, -4).result(timeout=60) == 4
        finally:
            context.destroy(linger=0)
    print(f"\n[memory] leased slot RSS {before} MiB -> {after} MiB after 512 MiB of bad DirectRuns")
    assert after - before < 64
