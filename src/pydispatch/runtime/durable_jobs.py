"""The dispatcher's durable dataflow jobs: the glue between its job masters and a job store.

A job is written to the store (``job_store``) when it is accepted, before anything answers its
submitter; every state its master announces is written too. A dispatcher started on a store
lists every job kept there and restarts a master for each one not ended (the job runs again
from its sources; its submitter's handle finds the new master through the dispatcher).

Why here and not in ``job_masters``: that module starts and reaps processes; this one decides
what outlives the dispatcher. The dispatcher owns one :class:`DurableJobs` when it has a store.
"""

from __future__ import annotations

import logging
import time
from typing import Final

import msgspec
import zmq

from ..wire import protocol as p
from ..wire.security import Identity, PeerTable
from ..wire.transport import FrameLike
from .job_masters import JobHosts
from .job_store import ENDED_STATES, JobRecord, JobStore

__all__ = ["RESUMING", "DurableJobs", "Resumable"]

log = logging.getLogger(__name__)

# How a job whose master a restarted dispatcher is starting again is listed until that master
# announces it (no endpoint yet: a handle waits for one, see dataflow.handle).
RESUMING = "RESTARTING"
_FINISHING: Final = "FINISHING"  # finished, its outcome not written yet (see update)

Resumable = tuple[JobRecord, p.Blob, list[FrameLike]]


class DurableJobs:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._states: dict[str, str] = {}  # what the store says, to write changes only
        # FINISHED jobs whose outcome and state are written (oldest first; the last 10,000:
        # a master's late report of an older one only writes FINISHING over FINISHED, and
        # that job then runs again after a restart, at worst).
        self._kept: dict[str, None] = {}

    def keep(
        self, job_id: str, message: p.SubmitJob, submitter: bytes, payload: p.Blob,
        frames: list[FrameLike], owner: Identity | None = None,
    ) -> None:  # fmt: skip
        """Write an accepted job (raises if the store cannot: the job is then refused). With
        keys its owner is the submitting key (kept by its public key), else the peer."""
        who = _KEY_OWNER + owner.public.encode() if owner is not None else submitter
        record = JobRecord(
            job_id, message.name, who, message.priority, "ACCEPTED", 1, "", time.time()
        )
        header = msgspec.msgpack.encode(payload)
        self.store.add(record, (header, [_bytes(frame) for frame in frames]))
        self._states[job_id] = record.state

    def update(self, job: p.JobInfo) -> None:
        """A master announced its job (or its exit was noticed): write what changed.

        FINISHED is written with the job's outcome (:meth:`keep_outcome`), not before: a
        dispatcher killed between the two would otherwise leave the job FINISHED with its
        result lost. Until then it is kept as FINISHING, with its payload: a dispatcher that
        starts on the store runs it again (at least once, never lost)."""
        state = _FINISHING if job.state == "FINISHED" else job.state
        if job.job_id in self._kept or self._states.get(job.job_id) == state:
            return
        try:
            self.store.update(job.job_id, state, job.endpoint)
        except Exception:  # the job goes on; a restart may run it again, never lose it
            log.exception("job %s: could not write its state %s", job.job_id, state)
            return
        self._states[job.job_id] = state
        if state in ENDED_STATES:
            self._states.pop(job.job_id)

    def keep_outcome(
        self, job_id: str, reply: bytes, frames: list[FrameLike], keep_for: float
    ) -> bool:
        """A finished job's outcome, as its master would answer a handle (see JobOutcome);
        whether the store took it."""
        until = time.time() + max(0.0, keep_for)
        try:
            self.store.keep_outcome(job_id, (reply, [_bytes(f) for f in frames]), until)
            self.store.update(job_id, "FINISHED", "")  # now: see update
        except Exception:  # the store says FINISHING: a restart runs the job again
            log.exception("job %s: could not keep its outcome", job_id)
            return False
        self._kept[job_id] = None
        if len(self._kept) > 10_000:
            del self._kept[next(iter(self._kept))]
        self._states.pop(job_id, None)
        return True

    def kept(self, job_id: str) -> bool:
        """Whether the store still keeps the job's outcome (not expired, the job not dropped)."""
        try:
            return self.store.outcome(job_id) is not None
        except Exception:  # the store is out of reach: say kept (files stay, nothing lost)
            log.exception("job %s: could not read its kept outcome", job_id)
            return True

    def kept_replies(self) -> list[tuple[str, bytes]]:
        """Each FINISHED job's kept outcome header (an encoded JobResultReply)."""
        replies = []
        for record in self.store.records():
            if record.state == "FINISHED" and (kept := self.store.outcome(record.job_id)):
                replies.append((record.job_id, kept[0]))
        return replies

    def outcome(self, job_id: str) -> tuple[bytes, list[FrameLike]]:
        """The kept outcome (``(b"", [])``: none, or expired)."""
        kept = self.store.outcome(job_id)
        if kept is None:
            return b"", []
        header, frames = kept
        own: list[FrameLike] = list(frames)
        return header, own

    def resume(
        self, jobs: dict[str, p.JobInfo], hosts: JobHosts, peers: PeerTable | None = None
    ) -> None:
        """List every kept job in ``jobs``; have ``hosts`` start the unfinished ones again.
        With keys (``peers``), each keeps its owner: the key that submitted it, if still known."""
        listed, resumable = self.restore()
        owners = {r.job_id: r.owner for r in self.store.records()} if peers is not None else {}
        for job in listed:
            owner = _owner(owners.get(job.job_id, b""), peers)
            if owner is not None:
                job = msgspec.structs.replace(job, owner=owner.name, owner_key=owner.public)
            jobs[job.job_id] = job
        for record, blob, frames in resumable:
            owner = _owner(record.owner, peers)
            hosts.resume(record.job_id, record.name, record.priority, blob, frames, owner)

    def restore(self) -> tuple[list[p.JobInfo], list[Resumable]]:
        """The jobs to list, and those to start again (their attempts counted)."""
        listed: list[p.JobInfo] = []
        resumable: list[Resumable] = []
        for record in self.store.records():
            if record.state in ENDED_STATES:
                listed.append(p.JobInfo(record.job_id, record.name, record.state, "", 0, 0))
                continue
            kept = self.store.payload(record.job_id)
            if kept is None:
                log.error("job %s: the store kept no payload: it cannot run again", record.job_id)
                self.store.update(record.job_id, "FAILED", "")
                listed.append(p.JobInfo(record.job_id, record.name, "FAILED", "", 0, 0))
                continue
            header, frames = kept
            blob = msgspec.msgpack.decode(header, type=p.Blob)
            self.store.started(record.job_id)
            record.attempts += 1
            self._states[record.job_id] = record.state
            listed.append(p.JobInfo(record.job_id, record.name, RESUMING, "", 0, 0))
            own: list[FrameLike] = list(frames)
            resumable.append((record, blob, own))
        if resumable:
            log.warning("starting %d unfinished job(s) again from the store", len(resumable))
        return listed, resumable


# A job kept with keys names its owner by public key (a socket identity means nothing later).
_KEY_OWNER: Final = b"key:"


def _owner(kept: bytes, peers: PeerTable | None) -> Identity | None:
    if peers is None or not kept.startswith(_KEY_OWNER):
        return None
    return peers.get(kept[len(_KEY_OWNER) :].decode())


def _bytes(frame: FrameLike) -> bytes:
    if isinstance(frame, zmq.Frame):
        return frame.bytes
    return frame if isinstance(frame, bytes) else bytes(frame)
