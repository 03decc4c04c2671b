"""The dispatcher's gatekeeper (``runtime.access``) without sockets: roles, bound socket
identities, job-master keys, what each key may see, and bounded tables."""

from __future__ import annotations

import pytest

from pydispatch.runtime.access import ALLOWED, Access, RefusedError
from pydispatch.wire import protocol as p
from pydispatch.wire.security import Identity, PeerTable

ALICE = Identity("alice", "client", "A" * 40)
BOB = Identity("bob", "client", "B" * 40)
WORKER = Identity("w", "worker", "W" * 40)
ADMIN = Identity("root", "admin", "R" * 40)
MASTER = Identity("job:j1", "job-master", "J" * 40, job="j1")


def access(forgotten: list[bytes] | None = None) -> Access:
    peers = PeerTable()
    for identity in (ALICE, BOB, WORKER, ADMIN, MASTER):
        peers.add(identity)
    return Access(peers, forgotten.append if forgotten is not None else None)


def info(job_id: str, owner: Identity) -> p.JobInfo:
    return p.JobInfo(job_id, "n", "RUNNING", "tcp://h:1", 1, 1, owner.name, owner.public)


def test_each_role_sends_only_its_kinds() -> None:
    gate = access()
    gate.admit(ALICE, b"a", b"a", p.Submit([]))
    gate.admit(WORKER, b"w", b"w", p.Register(p.PROTOCOL_VERSION, "w", "n", 1, 1))
    with pytest.raises(RefusedError, match="a client key may not send Register"):
        gate.admit(ALICE, b"a", b"a", p.Register(p.PROTOCOL_VERSION, "w", "n", 1, 1))
    with pytest.raises(RefusedError, match="a worker key may not send Submit"):
        gate.admit(WORKER, b"w", b"w", p.Submit([]))
    assert p.SubmitJob not in ALLOWED["job-master"]
    assert p.JobUpdate not in ALLOWED["client"] | ALLOWED["admin"]


def test_the_first_refusal_of_a_key_is_answered_and_every_refused_handshake() -> None:
    gate = access()
    replies = []
    for message in (p.Cancel([1]), p.Cancel([1]), p.ClientHello(p.PROTOCOL_VERSION)):
        with pytest.raises(RefusedError) as refused:
            gate.admit(WORKER, b"w", b"w", message)
        replies.append(refused.value.reply)
    assert replies == [True, False, True]


def test_a_socket_identity_belongs_to_the_key_that_used_it_first() -> None:
    gate = access()
    gate.admit(ALICE, b"sock", b"sock", p.ClientHello(p.PROTOCOL_VERSION))
    with pytest.raises(RefusedError, match="held by another key"):
        gate.admit(BOB, b"sock", b"sock", p.Submit([]))
    # A sending socket of alice's client, used by bob: refused.
    gate.admit(BOB, b"bob-send", b"bob-send", p.Submit([]))
    with pytest.raises(RefusedError, match="another key's client"):
        gate.admit(BOB, b"bob-send2", b"sock", p.Submit([]))
    gate.admit(WORKER, b"slot1", b"slot1", p.SlotHello(p.PROTOCOL_VERSION, b"x"))
    other = Identity("w2", "worker", "V" * 40)
    gate.peers.add(other)
    with pytest.raises(RefusedError, match="names a socket of another key"):
        gate.admit(
            other, b"w2", b"w2", p.Register(p.PROTOCOL_VERSION, "w", "n", 1, 1, slot_ids=[b"slot1"])
        )
    with pytest.raises(RefusedError, match="names a socket of another key"):
        gate.admit(other, b"w2", b"w2", p.Heartbeat(b"slot1"))


def test_a_job_masters_key_speaks_for_its_job_only() -> None:
    gate = access()
    gate.admit(MASTER, b"m", b"m", p.JobUpdate(info("j1", ALICE)))
    gate.admit(MASTER, b"m", b"m", p.JobHostReport("j1", "t"))
    with pytest.raises(RefusedError, match="spoke for job 'j2'"):
        gate.admit(MASTER, b"m", b"m", p.JobUpdate(info("j2", ALICE)))
    with pytest.raises(RefusedError, match="spoke for job"):
        gate.admit(MASTER, b"m", b"m", p.JobPayloadRequest("j2", "t"))


def test_a_client_sees_its_own_jobs_an_admin_every_one() -> None:
    gate = access()
    mine, theirs = info("j1", ALICE), info("j2", BOB)
    gate.admit(ALICE, b"a", b"a", p.JobsRequest())
    assert (gate.sees(mine), gate.sees(theirs)) == (True, False)
    gate.admit(ADMIN, b"r", b"r", p.JobsRequest())
    assert (gate.sees(mine), gate.sees(theirs)) == (True, True)


def test_a_key_holds_a_bounded_number_of_socket_identities() -> None:
    forgotten: list[bytes] = []
    gate = access(forgotten)
    for n in range(1100):
        gate.admit(ALICE, b"c%d" % n, b"c%d" % n, p.ClientHello(p.PROTOCOL_VERSION))
    assert forgotten == [b"c%d" % n for n in range(76)]  # the oldest, told to the dispatcher
    assert gate.key_of(b"c0") == ""
    assert gate.key_of(b"c1099") == ALICE.public
