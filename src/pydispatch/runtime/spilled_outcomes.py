"""The shared-memory directories of finished jobs' collected records, removed by the
dispatcher when their outcome is no longer kept (private).

On one host a job's slices write what its collect sinks received to files in a directory the
client made (``dataflow.slice_results``); the job's outcome only names the files. The
directory must therefore live exactly as long as the outcome may be fetched: its master hands
the outcome to the dispatcher (``protocol.JobOutcome``, whose ``JobResultReply.spilled`` names
the directory), and from then on the dispatcher removes it once its job store no longer keeps
the outcome (expired, or the job dropped from the store). A dispatcher started on a store
learns the directories of the outcomes kept there; if it has no unfinished job to run again,
every other collect directory named after its address is an orphan (an outcome that expired
while no dispatcher ran), and goes (:meth:`SpilledOutcomes.remove_orphans`; a directory that a
job's slices had not written to yet only makes them send their records as frames). Without a
store only the master serves the
outcome: the directory goes ``_GRACE`` seconds after the master (a handle that got the reply
maps the files at once; a mapping outlives the files' removal).

The reply is decoded with msgspec (typed, no pickle), and a directory is only removed if it
is one of ours in ``/dev/shm`` (``wire.shm_files.checked_spill_dir``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Final

from ..wire import job_plane as jp
from ..wire import protocol as p
from ..wire.shm_files import COLLECT_TAG, remove_spill_dir, shared_dir, spill_prefix

__all__ = ["SpilledOutcomes"]

log = logging.getLogger(__name__)

_SWEEP_EVERY: Final = 2.0  # seconds between two looks
# Seconds between two questions to the store about outcomes whose retention has not passed
# (a job dropped from the store early): not every look, for the loop's sake.
_ASK_STORE_EVERY: Final = 30.0
_GRACE: Final = 10.0  # seconds a store-less outcome's files outlive its master


class SpilledOutcomes:
    """``kept(job_id)``: whether the job store still keeps the job's outcome (None: no store);
    ``serving(job_id)``: whether the job's master still runs (and serves its outcome)."""

    def __init__(self, kept: Callable[[str], bool] | None, serving: Callable[[str], bool]) -> None:
        self._kept = kept
        self._serving = serving
        # job id -> (directory, until (wall clock), whether the store holds its outcome)
        self._dirs: dict[str, tuple[str, float, bool]] = {}
        self._next_sweep = 0.0
        self._next_store_check = 0.0

    def __len__(self) -> int:
        return len(self._dirs)

    def add(self, job_id: str, reply: bytes, keep_for: float, stored: bool) -> None:
        """A master handed over its job's outcome (``reply``: the encoded JobResultReply),
        served ``keep_for`` seconds at most; ``stored``: the job store took it."""
        directory = _spilled(reply)
        if directory:
            self._dirs[job_id] = (directory, time.time() + max(0.0, keep_for) + _GRACE, stored)

    def restore(self, job_id: str, reply: bytes) -> None:
        """An outcome a job store kept (a dispatcher starting on it)."""
        directory = _spilled(reply)
        if directory:
            self._dirs[job_id] = (directory, math.inf, True)  # (its retention: the store's)

    def remove_orphans(self, address: str) -> None:
        """Remove the collect directories named after ``address`` that no kept outcome names
        (call it at start, once the store's are restored, with no job of the store to run)."""
        shm = shared_dir()
        if shm is None:
            return
        prefix = spill_prefix(address) + COLLECT_TAG
        known = {directory for directory, _, _ in self._dirs.values()}
        for entry in os.listdir(shm):
            path = os.path.join(shm, entry)
            if entry.startswith(prefix) and path not in known and remove_spill_dir(path):
                log.info("removed %s: no kept outcome names it", path)

    def sweep(self, force: bool = False) -> None:
        """Remove the directories whose outcome is not kept any more (at most every
        ``_SWEEP_EVERY`` seconds, unless forced)."""
        now = time.monotonic()
        if not self._dirs or (now < self._next_sweep and not force):
            return
        self._next_sweep = now + _SWEEP_EVERY
        ask_store = force or now >= self._next_store_check
        if ask_store:
            self._next_store_check = now + _ASK_STORE_EVERY
        wall = time.time()
        for job_id, (directory, until, stored) in list(self._dirs.items()):
            if stored:  # the store says (its retention passed, or the job dropped)
                if wall < until - _GRACE and not ask_store:
                    continue
                if self._kept is not None and self._kept(job_id):
                    continue
            elif wall < until:
                if self._serving(job_id):
                    continue
                if until - wall > _GRACE:  # its master is gone: nobody serves the outcome now
                    self._dirs[job_id] = (directory, wall + _GRACE, stored)
                continue
            if not remove_spill_dir(directory):
                log.warning("job %s: could not remove %s (not ours?)", job_id, directory)
            del self._dirs[job_id]


def _spilled(reply: bytes) -> str:
    try:
        decoded = jp.decode_job(reply)
    except p.ProtocolError:
        return ""
    return decoded.spilled if isinstance(decoded, jp.JobResultReply) else ""
