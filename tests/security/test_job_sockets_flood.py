"""512 MiB and malformed frames at a running job's own sockets, on a cluster with keys: its
master's control socket and its slices' inboxes (real processes, real CURVE, RSS from /proc).

Strangers (garbage bytes, no CURVE, an unknown key) and a client key that is not the job's
owner never get past the handshake. The owner's key is let in at the control socket: its
frames over the socket's limit cut it off before anything is read, its malformed and
not-its-own messages are read, dropped and logged once. No process grows with what it was
sent, the master never crashes, and the job finishes with the right sums.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from _support.process_guard import children, eventually
from _support.secure_cluster import SecureCluster, listening_ports, marker_blob, raw_socket
from pydispatch.dataflow.handle import JobHandle
from pydispatch.stream import StreamEnvironment
from pydispatch.wire import data_plane as dp
from pydispatch.wire import job_plane as jp
from pydispatch.wire.transport import parse_job, send, split_envelope

MiB = 1 << 20
VOLUME = 512 * MiB

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    with SecureCluster(tmp_path_factory.mktemp("job-flood")) as cluster:
        yield cluster


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmRSS for {pid}")


def wait_for_file(path: str, value: Any) -> Any:
    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [grandchild for child in found for grandchild in descendants(child)]


def gated_job(secure: SecureCluster, gate: Path, out: Path) -> JobHandle:
    """Alice's job, with a keyed shuffle (so its slices have inboxes), held until ``gate``."""
    env = StreamEnvironment(secure.address, parallelism=2, keys=str(secure.keys), identity="alice")
    where = str(gate)
    records = env.from_collection(list(range(100))).map(lambda x: wait_for_file(where, x))
    records.map(lambda x: (x % 5, x)).key_by(0).sum(1).write_text(str(out) + "/")
    handle = env.execute("alice-flooded")
    assert isinstance(handle, JobHandle)
    return handle


def garbage(endpoint: str, volume: int = VOLUME) -> None:
    """Bytes that are no ZMTP greeting: the peer cuts each connection off; connect again."""
    host, port = endpoint[len("tcp://") :].rsplit(":", 1)
    sent, chunk = 0, b"\xff" * MiB
    while sent < volume:
        with socket.create_connection((host, int(port))) as raw, contextlib.suppress(OSError):
            while sent < volume:
                raw.sendall(chunk)
                sent += len(chunk)


def flood(sock: zmq.Socket[Any], message: Any, frame_size: int, volume: int = VOLUME) -> None:
    frame = b"x" * frame_size
    with contextlib.suppress(zmq.Again):  # nothing connected takes it (the handshake failed)
        for _ in range(volume // frame_size):
            send(sock, message, [frame])


def status_answered(sock: zmq.Socket[Any]) -> None:
    """Ask behind what ``sock`` sent (one connection: read in order); once the answer is
    here, the master has read all of it."""
    send(sock, jp.JobStatusRequest())
    assert sock.poll(300_000), "the master answers"
    _, body = split_envelope(sock.recv_multipart(copy=False), routed=False)
    assert isinstance(parse_job(body), jp.JobStatusReply)


EXPECTED = sorted(str((k, sum(x for x in range(100) if x % 5 == k))) for k in range(5))


def test_a_jobs_sockets_take_nothing_from_floods(secure: SecureCluster, tmp_path: Path) -> None:
    gate, out, marker = tmp_path / "gate", tmp_path / "out", tmp_path / "marker"
    job = gated_job(secure, gate, out)
    try:
        control_port = int(job.endpoint.rsplit(":", 1)[1])
        masters: list[int] = []
        eventually(
            lambda: bool(
                masters.extend(
                    pid
                    for pid in descendants(secure.pids()[0])
                    if control_port in listening_ports(pid)
                )
                or masters
            ),
            "the job's master listens",
        )
        master = masters[0]
        slots = [pid for worker in secure.pids()[1:] for pid in children(worker)]
        eventually(lambda: any(listening_ports(s) for s in slots), "the slices' inboxes are up")
        inboxes = [f"tcp://127.0.0.1:{port}" for s in slots for port in listening_ports(s)]
        watched = [master, *slots]
        before = {pid: rss(pid) for pid in watched}
        context: zmq.Context[Any] = zmq.Context()
        try:
            # Strangers and another client's key, at every socket of the job.
            batch = dp.BatchData(0, "pickled", pickled=marker_blob(marker))
            for endpoint in [job.endpoint, *inboxes]:
                garbage(endpoint)
                for keys in (None, secure.stranger, secure.key("bob")):
                    sock = raw_socket(context, endpoint, keys, server=job._server_key)
                    sock.setsockopt(zmq.SNDTIMEO, 2000)
                    if endpoint == job.endpoint:
                        flood(sock, jp.SliceFailed(1, 0, "forged"), 8 * MiB)
                    else:
                        flood(sock, batch, 8 * MiB)
                    sock.close(linger=0)
            # The owner, let in: frames over the control socket's limit (4 MiB) cut it off.
            alice = secure.key("alice")
            big = raw_socket(context, job.endpoint, alice, server=job._server_key)
            big.setsockopt(zmq.SNDTIMEO, 2000)
            # (A status request padded to 8 MiB: msgspec ignores trailing fields, so read, it
            # would be answered.)
            oversized = msgspec.msgpack.encode(["JobStatusRequest", "x" * (8 * MiB)])
            with contextlib.suppress(zmq.Again):
                for _ in range(VOLUME // (8 * MiB)):
                    big.send_multipart([b"", oversized], copy=False)
            assert not big.poll(2000), "a status request over the limit was read"
            big.close(linger=0)
            # Its malformed messages and slices' reports (not its to send), 2 MiB each.
            owner = raw_socket(context, job.endpoint, alice, server=job._server_key)
            junk, forged = os.urandom(64), "forged by the owner" + "x" * (2 * MiB)
            for index in range(VOLUME // (2 * MiB)):
                if index % 2:
                    owner.send_multipart([b"", junk, b"x" * (2 * MiB)])
                else:
                    send(owner, jp.SliceFailed(1, 0, forged))  # well-formed: read, refused
            status_answered(owner)
            after = {pid: rss(pid) for pid in watched}
        finally:
            context.destroy(linger=0)
        print(f"\n[memory] master and slots' RSS (MiB) {before} -> {after} after the floods")
        for pid in watched:
            assert after[pid] - before[pid] < 64, (pid, before, after)
    finally:
        gate.touch()
    job.result(timeout=120)
    assert job.status() == "FINISHED"
    assert sorted(line for p in out.iterdir() for line in p.read_text().splitlines()) == EXPECTED
    assert not marker.exists()
    log = secure.log("dispatcher")  # the job's master logs there (its launcher's stderr)
    alice_key = secure.key("alice").public
    assert log.count(f"dropped a malformed control message from key {alice_key}") == 1
    assert log.count(f"refused a message from key {alice_key}") == 1
    assert (
        log.count(f"job {job.job_id} refused a connection from key {secure.stranger.public}") == 1
    )
