"""The dispatcher's dataflow jobs: their listing, their store, their masters' messages.

Kept apart from ``dispatcher`` (which owns the socket and the loop and hands these handlers
the messages of the job kinds): the table of jobs as their masters announce them (bounded,
whatever masters say), the durable store they outlive the dispatcher in (``durable_jobs``),
and the supervisor of their master processes (``job_masters``). With keys, a client sees and
fetches its own jobs only (an admin every one): ``access`` decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import zmq

from ..wire import protocol as p
from ..wire.security import PeerTable
from ..wire.transport import FrameLike
from .access import Access, JobKeys
from .durable_jobs import RESUMING, DurableJobs
from .job_masters import JobHosts
from .job_store import JobStore
from .spilled_outcomes import SpilledOutcomes

__all__ = ["JobDesk"]

_JOB_ENDED: Final = frozenset({"FINISHED", "FAILED", "CANCELED"})
_KEEP_ENDED_JOBS: Final = 100  # ended dataflow jobs listed by `pydispatch jobs`
_MAX_JOBS: Final = 10_000  # dataflow jobs listed, at most (the oldest change goes first)

Frames = list[zmq.Frame]
Send = Callable[[bytes, p.Message, list[FrameLike]], Any]
Handler = Callable[[bytes, Any, Frames, float], None]


class JobDesk:
    def __init__(
        self,
        endpoint: str,
        send: Send,
        access: Access | None,
        job_keys: JobKeys | None,
        job_masters: bool,
        job_store: JobStore | None,
        peers: PeerTable | None,
    ) -> None:
        self._send = send
        self._access = access
        self._jobs: dict[str, p.JobInfo] = {}  # as their masters announce them, oldest first
        # Accepted jobs outlive the dispatcher in the store, if there is one (durable_jobs).
        self._durable = DurableJobs(job_store) if job_store is not None else None
        # Submitted jobs' master processes (spawned, tracked, reaped there).
        self.hosts = JobHosts(
            endpoint,
            send,
            self._jobs,
            self.update,
            enabled=job_masters,
            job_keys=job_keys,
            keep=self._durable.keep if self._durable is not None else None,
        )
        if self._durable is not None:  # list every kept job, start the unfinished again
            self._durable.resume(self._jobs, self.hosts, peers)
        # Kept outcomes' shared-memory files: removed when the outcome is no longer kept.
        kept = self._durable.kept if self._durable is not None else None
        self._spilled = SpilledOutcomes(kept, self._serving)
        if self._durable is not None and endpoint.startswith("ipc://"):  # (none elsewhere)
            for job_id, reply in self._durable.kept_replies():
                self._spilled.restore(job_id, reply)
            if all(job.state != RESUMING for job in self._jobs.values()):
                self._spilled.remove_orphans(endpoint)

    def handlers(self) -> dict[type[Any], Handler]:
        return {
            p.JobUpdate: self._on_job_update,
            p.JobsRequest: self._on_jobs_request,
            p.SubmitJob: self._on_submit_job,
            p.JobPayloadRequest: self._on_job_payload_request,
            p.JobHostReport: self._on_job_host_report,
            p.JobOutcome: self._on_job_outcome,
            p.JobOutcomeRequest: self._on_job_outcome_request,
        }

    def _serving(self, job_id: str) -> bool:
        job = self._jobs.get(job_id)
        return job is not None and bool(job.endpoint)

    def sweep(self) -> None:
        """Remove the shared-memory files of outcomes no longer kept (every tick)."""
        self._spilled.sweep()

    def listed(self) -> list[p.JobInfo]:
        return list(self._jobs.values())

    def close(self) -> None:
        self.hosts.close()
        if self._durable is not None:
            self._durable.store.close()

    def update(self, job: p.JobInfo) -> None:
        if self._durable is not None:
            self._durable.update(job)
        self._jobs.pop(job.job_id, None)  # re-inserted last: the dict stays in update order
        self._jobs[job.job_id] = job
        ended = [i for i, j in self._jobs.items() if j.state in _JOB_ENDED]
        for job_id in ended[: max(0, len(ended) - _KEEP_ENDED_JOBS)]:
            del self._jobs[job_id]
        while len(self._jobs) > _MAX_JOBS:  # bounded, whatever masters announce
            del self._jobs[next(iter(self._jobs))]

    # ------------------------------------------------------------------------ handlers

    def _on_job_update(self, peer: bytes, m: p.JobUpdate, frames: Frames, now: float) -> None:
        if not self.hosts.current(m.job.job_id, m.token):
            return  # a master of a previous dispatcher's (this one started its own again)
        self.update(self.hosts.seen(m.job))

    def _on_jobs_request(self, peer: bytes, m: p.JobsRequest, frames: Frames, now: float) -> None:
        jobs = list(self._jobs.values())
        if self._access is not None:  # a client sees its own jobs (an admin every one)
            jobs = [job for job in jobs if self._access.sees(job)]
        self._send(peer, p.JobsReply(jobs), [])

    def _on_submit_job(self, peer: bytes, m: p.SubmitJob, frames: Frames, now: float) -> None:
        owner = self._access.current if self._access is not None else None
        self.hosts.submit(peer, m, frames, owner)

    def _on_job_payload_request(
        self, peer: bytes, m: p.JobPayloadRequest, frames: Frames, now: float
    ) -> None:
        self.hosts.payload(peer, m)

    def _on_job_host_report(
        self, peer: bytes, m: p.JobHostReport, frames: Frames, now: float
    ) -> None:
        self.hosts.report(m)

    def _on_job_outcome(self, peer: bytes, m: p.JobOutcome, frames: Frames, now: float) -> None:
        self.hosts.check(m.job_id, m.token)  # only its own master may say it
        stored = False
        if self._durable is not None:
            stored = self._durable.keep_outcome(m.job_id, m.reply, list(frames), m.keep_for)
        self._spilled.add(m.job_id, m.reply, m.keep_for, stored)
        self._send(peer, p.JobOutcomeReply(), [])

    def _on_job_outcome_request(
        self, peer: bytes, m: p.JobOutcomeRequest, frames: Frames, now: float
    ) -> None:
        job = self._jobs.get(m.job_id)
        if self._access is not None and (job is None or not self._access.sees(job)):
            self._send(peer, p.JobOutcomeReply(), [])  # as for no such job: nothing to tell
            return
        reply, kept = self._durable.outcome(m.job_id) if self._durable else (b"", [])
        self._send(peer, p.JobOutcomeReply(reply), kept)
