"""The shared-memory directories of finished jobs' collected records, removed by the
dispatcher when their outcome is no longer kept (private).

On one host a job's slices write what its collect sinks received to files in a directory the
client made (``dataflow.slice_results``); the job's outcome only names the files. The
directory must therefore live exactly as long as the outcome may be fetched: its master hands
the outcome to the dispatcher (``protocol.JobOutcome``, whose ``JobResultReply.spilled`` names
the directory), and from then on the dispatcher removes it once the outcome's retention has
passed or its job store no longer keeps it (expired, or the job dropped from the store). A
dispatcher started on a store learns the directories of the outcomes kept there.

The reply is decoded with msgspec (typed, no pickle), and a directory is only removed if it
is one of ours in ``/dev/shm`` (``wire.shm_files.checked_spill_dir``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Final

from ..wire import job_plane as jp
from ..wire import protocol as p
from ..wire.shm_files import remove_spill_dir

__all__ = ["SpilledOutcomes"]

log = logging.getLogger(__name__)

_SWEEP_EVERY: Final = 2.0  # seconds between two looks (each asks the store about every one)


class SpilledOutcomes:
    """``kept(job_id)``: whether the job store still keeps the job's outcome (None: no store;
    then the outcome's retention alone decides)."""

    def __init__(self, kept: Callable[[str], bool] | None) -> None:
        self._kept = kept
        # job id -> (directory, until (wall clock), whether the store holds its outcome)
        self._dirs: dict[str, tuple[str, float, bool]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._dirs)

    def add(self, job_id: str, reply: bytes, keep_for: float, stored: bool) -> None:
        """A master handed over its job's outcome (``reply``: the encoded JobResultReply),
        kept ``keep_for`` seconds; ``stored``: the job store took it too."""
        directory = _spilled(reply)
        if directory:
            until = math.inf if stored else time.time() + max(0.0, keep_for)
            self._dirs[job_id] = (directory, until, stored)

    def restore(self, job_id: str, reply: bytes) -> None:
        """An outcome a job store kept (a dispatcher starting on it)."""
        directory = _spilled(reply)
        if directory:
            self._dirs[job_id] = (directory, math.inf, True)

    def sweep(self, force: bool = False) -> None:
        """Remove the directories whose outcome is not kept any more (at most every
        ``_SWEEP_EVERY`` seconds, unless forced)."""
        now = time.monotonic()
        if not self._dirs or (now < self._next_sweep and not force):
            return
        self._next_sweep = now + _SWEEP_EVERY
        wall = time.time()
        for job_id, (directory, until, stored) in list(self._dirs.items()):
            if wall < until and not (stored and self._kept is not None and not self._kept(job_id)):
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
