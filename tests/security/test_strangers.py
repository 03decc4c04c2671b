"""A stranger, and peers with the wrong kind of key, against a cluster with keys: real processes
(``pydispatch dispatcher|worker --keys``), real CURVE, raw pyzmq sockets and harmless payloads
that would create a marker file if anything unpickled them.

In every case: the marker is never written, the victims' work is right and complete, and the
refusal is logged once per key however often the peer tries.
"""

from __future__ import annotations

import os
import pickle
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from _support.process_guard import children, eventually
from _support.secure_cluster import (
    SecureCluster,
    listening_ports,
    marker_blob,
    raw_socket,
    send_all,
)
from pydispatch import Client
from pydispatch.dataflow.handle import JobHandle, fetch_jobs
from pydispatch.stream import StreamEnvironment
from pydispatch.wire import data_plane as dp
from pydispatch.wire import job_plane as jp
from pydispatch.wire import protocol as p
from pydispatch.wire.transport import send


def square(x: int) -> int:
    return x * x


def wait_for_file(path: str, value: Any) -> Any:
    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def victim_work_is_right(secure: SecureCluster, identity: str = "alice") -> None:
    with Client(secure.address, keys=str(secure.keys), identity=identity) as client:
        assert list(client.map(square, range(200))) == [x * x for x in range(200)]
        assert client.submit(square, 7).result(timeout=30) == 49


def silent(sock: zmq.Socket[Any], seconds: float = 1.0) -> bool:
    """Whether nothing comes back within ``seconds`` (an absence can only be watched for)."""
    return not sock.poll(int(seconds * 1000))


def submit_marker(marker: Path) -> list[p.Message]:
    spec = p.TaskSpec(1, p.KIND_CALL, marker_blob(marker), marker_blob(marker))
    return [p.ClientHello(p.PROTOCOL_VERSION, "x"), p.Submit([spec]), p.StatusRequest()]


def test_without_keys_a_stranger_reaches_nothing(
    secure: SecureCluster, context: zmq.Context[Any], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    sock = raw_socket(context, secure.address, None)
    send_all(sock, submit_marker(marker) * 5)
    assert silent(sock)
    victim_work_is_right(secure)
    assert not marker.exists()


def test_a_wrong_key_is_refused_and_logged_once(
    secure: SecureCluster, context: zmq.Context[Any], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    sock = raw_socket(context, secure.address, secure.stranger)
    send_all(sock, submit_marker(marker) * 5)
    line = f"dispatcher refused a connection from key {secure.stranger.public}"
    eventually(lambda: line in secure.log("dispatcher"), "the refusal logged")
    assert silent(sock, 2.0)  # libzmq retries the handshake every 0.1 s meanwhile
    victim_work_is_right(secure)
    assert not marker.exists()
    assert secure.log("dispatcher").count(line) == 1


def test_a_client_key_cannot_pose_as_a_worker(
    secure: SecureCluster, context: zmq.Context[Any]
) -> None:
    alice = secure.key("alice")
    sock = raw_socket(context, secure.address, alice)
    forged = [
        p.SlotHello(p.PROTOCOL_VERSION, b"w", "tcp://127.0.0.1:1"),
        p.Register(p.PROTOCOL_VERSION, "fake", "zone-x", 1, 4, labels={"zone": "a"}),
        p.Heartbeat(b"w"),
        p.Done([p.AttemptResult(1, "ok")]),
    ]
    send_all(sock, forged * 10)
    answers = []
    while sock.poll(2000):
        answers.append(p.decode(sock.recv_multipart()[1]))
    # Each refused request (SlotHello, Register) is answered; the rest are not.
    assert len(answers) == 20
    assert all(isinstance(a, p.Error) and a.code == "forbidden" for a in answers)
    assert "a client key may not send SlotHello" in answers[0].message
    names = {w.name for w in secure_status(secure).workers}
    assert names == {"worker-0", "worker-1"}
    victim_work_is_right(secure, "bob")
    assert secure.log("dispatcher").count("refused alice (client)") == 1


def secure_status(secure: SecureCluster) -> p.StatusReply:
    from pydispatch.runtime.client import fetch_status

    return fetch_status(secure.address, 10.0, secure.key("admin"))


def test_a_worker_key_cannot_submit(
    secure: SecureCluster, context: zmq.Context[Any], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    sock = raw_socket(context, secure.address, secure.key("worker"))
    send_all(sock, submit_marker(marker) * 5)
    answers = []
    while sock.poll(2000):
        answers.append(p.decode(sock.recv_multipart()[1]))
    # Each refused request (a hello, a status request) is answered, each refused Submit not.
    assert len(answers) == 10
    assert all(isinstance(a, p.Error) and a.code == "forbidden" for a in answers)
    assert "a worker key may not send ClientHello" in answers[0].message
    with pytest.raises(ConnectionError, match="refused this client"):
        Client(secure.address, keys=str(secure.keys), identity="worker", connect_timeout=20)
    victim_work_is_right(secure)
    assert not marker.exists()
    assert secure.log("dispatcher").count("refused worker (worker)") == 1


# ------------------------------------------------------------------ jobs: owners, masters


def gated_job(secure: SecureCluster, identity: str, gate: Path, out: Path) -> JobHandle:
    """A job of ``identity``'s, with a keyed shuffle (so its slices have inboxes), that holds
    its records until ``gate`` exists."""
    env = StreamEnvironment(secure.address, parallelism=2, keys=str(secure.keys), identity=identity)
    where = str(gate)
    records = env.from_collection(list(range(100))).map(lambda x: wait_for_file(where, x))
    records.map(lambda x: (x % 5, x)).key_by(0).sum(1).write_text(str(out) + "/")
    handle = env.execute(f"{identity}-job")
    assert isinstance(handle, JobHandle)
    return handle


def sums(out: Path) -> list[str]:
    return sorted(line for part in out.iterdir() for line in part.read_text().splitlines())


EXPECTED = sorted(str((k, sum(x for x in range(100) if x % 5 == k))) for k in range(5))


def test_jobs_belong_to_their_submitter_and_no_other_key_reaches_them(
    secure: SecureCluster, context: zmq.Context[Any], tmp_path: Path
) -> None:
    gate, out, marker = tmp_path / "gate", tmp_path / "out", tmp_path / "marker"
    job = gated_job(secure, "alice", gate, out)
    try:  # a failure here must not leave the gated slices holding both slots
        bob = secure.key("bob")
        assert job.job_id not in [j.job_id for j in fetch_jobs(secure.address, keys=bob)]
        with pytest.raises(LookupError):
            JobHandle.attach(secure.address, job.job_id, keys=str(secure.keys), identity="bob")
        # Bob's key (and a stranger's) at the job's master: its control socket refuses them.
        for keys in (bob, secure.stranger):
            sock = raw_socket(context, job.endpoint, keys, server=job._server_key)
            send_all(sock, [jp.JobCancel(), jp.SliceFailed(1, 0, "forged"), jp.JobResultRequest()])
            assert silent(sock)
        # A JobUpdate pointing its listing elsewhere, from a client key: refused by role.
        forged = p.JobInfo(job.job_id, "alice-job", "RUNNING", "tcp://127.0.0.1:9", 1, 2)
        sock = raw_socket(context, secure.address, bob)
        send_all(sock, [p.JobUpdate(forged)])
        assert sock.poll(10_000)
        assert "a client key may not send JobUpdate" in p.decode(sock.recv_multipart()[1]).message
        # Injected batches at every port the job's slots listen on (inboxes, direct endpoints).
        workers = secure.pids()[1:]
        slots = [child for worker in workers for child in children(worker)]
        eventually(lambda: any(listening_ports(s) for s in slots), "the slices' inboxes are up")
        batch = dp.BatchData(0, "pickled", pickled=marker_blob(marker))
        for port in {port for s in slots for port in listening_ports(s)}:
            for keys in (None, bob, secure.stranger):
                sock = raw_socket(context, f"tcp://127.0.0.1:{port}", keys, server=job._server_key)
                send(sock, batch, noblock=True)
        # Alice's own key, as owner, may not report for a slice either.
        sock = raw_socket(context, job.endpoint, secure.key("alice"), server=job._server_key)
        send_all(sock, [jp.SliceFailed(1, 0, "forged by the owner")])
    finally:
        gate.touch()
    job.result(timeout=120)
    assert job.status() == "FINISHED"
    assert sums(out) == EXPECTED
    assert not marker.exists()
    listed = {j.job_id: j for j in fetch_jobs(secure.address, keys=secure.key("admin"))}
    assert listed[job.job_id].owner == "alice"
    assert listed[job.job_id].endpoint != "tcp://127.0.0.1:9"
    log = secure.log("dispatcher")
    assert log.count(f"job {job.job_id} refused a connection from key {bob.public}") == 1
    assert log.count(f"refused a message from key {secure.key('alice').public}") == 1


def test_an_admin_sees_and_cancels_any_job(secure: SecureCluster, tmp_path: Path) -> None:
    gate, out = tmp_path / "gate", tmp_path / "out"
    job = gated_job(secure, "bob", gate, out)
    try:
        admin = JobHandle.attach(
            secure.address, job.job_id, keys=str(secure.keys), identity="admin"
        )
        assert admin.status() in ("CREATED", "RUNNING")
        assert admin.cancel()
        eventually(lambda: job.status() == "CANCELED", "the owner sees it cancelled")
    finally:
        gate.touch()


# ------------------------------------------------------------------------- the direct lane


def test_a_lease_cannot_be_guessed_or_stolen(
    secure: SecureCluster, context: zmq.Context[Any], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    with Client(secure.address, keys=str(secure.keys), identity="alice") as alice:
        for _ in range(500):
            future = alice.submit(square, 3)
            assert future.result(timeout=30) == 9
            if future._lane_attempt < 0:
                break
        lane = alice._lane
        assert lane.lease_id, "no lease was granted"
        lease_id, address, token = lane.lease_id, lane._address, lane._token
        worker = secure.key("worker").public  # the slot serves with its worker's key
        spec = p.RunSpec(
            -(lease_id << 32 | 999), p.KIND_CALL, marker_blob(marker), marker_blob(marker)
        )
        # Stolen: the right lease and token, another key (refused at the handshake).
        thief = raw_socket(context, address, secure.key("bob"), server=worker)
        send(thief, p.DirectRun(lease_id, spec, token), noblock=True)
        # Guessed: the lease holder's own key (a second connection), a guessed token.
        guesser = raw_socket(context, address, secure.key("alice"), server=worker)
        for _ in range(5):
            send(guesser, p.DirectRun(lease_id, spec, secrets.token_bytes(16)), noblock=True)
        assert silent(thief)
        assert silent(guesser)
        assert [alice.submit(square, i).result(timeout=30) for i in range(20)] == [
            i * i for i in range(20)
        ]
    assert not marker.exists()
    logs = secure.log("worker-0") + secure.log("worker-1")
    # Once per slot process (an earlier test of this module knocked at every slot's ports).
    refusals = logs.count(f"slot refused a connection from key {secure.key('bob').public}")
    assert 1 <= refusals <= 2
    assert logs.count("without its token") == 1


def test_lease_tokens_are_128_random_bits() -> None:
    from pydispatch.scheduling.leases import Leases

    book = Leases()
    book.slot_endpoint(b"s", "tcp://x:1")
    lease = book.grant(b"c", b"s", b"w")
    assert lease is not None
    assert len(lease.token) == 16
    book.slot_endpoint(b"t", "tcp://x:2")
    other = book.grant(b"d", b"t", b"w")
    assert other is not None
    assert other.token != lease.token


def test_nothing_unpickles_a_marker_by_mistake(tmp_path: Path) -> None:
    """The marker works: what the tests above show unread would have been seen."""
    marker = tmp_path / "marker"
    pickle.loads(marker_blob(marker).data)
    assert marker.exists()


def test_the_command_line_speaks_with_keys(secure: SecureCluster, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pydispatch.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    keys = str(secure.keys)
    status = cli("status", secure.address, "--keys", keys, "--identity", "admin", "--json")
    assert status.returncode == 0, status.stderr
    assert len(json.loads(status.stdout)["workers"]) == 2
    plain = cli("status", secure.address, "--timeout", "1")
    assert plain.returncode == 1
    assert "no dispatcher answered" in plain.stderr
    refused = cli("jobs", secure.address, "--keys", keys, "--identity", "worker")
    assert refused.returncode == 1
    assert "a worker key may not send JobsRequest" in refused.stderr
    # A host with only its own secret key and the dispatcher's public one.
    remote = tmp_path / "remote"
    remote.mkdir()
    for name in ("bob.key_secret", "dispatcher.key"):
        (remote / name).write_bytes((secure.keys / name).read_bytes())
    jobs = cli("jobs", secure.address, "--keys", str(remote), "--json")
    assert jobs.returncode == 0, jobs.stderr
    assert all(job["owner"] == "bob" for job in json.loads(jobs.stdout))
