"""Embedded clusters for the tests: one factory, one set of fast settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from pydispatch.runtime.cluster import LocalCluster

__all__ = ["FAST", "job_masters_of", "make_cluster"]

#: Heartbeats every 0.1 s, a worker lost after 1 s: tests of failover see it at once.
FAST: Final[dict[str, Any]] = {"heartbeat_interval": 0.1, "heartbeat_timeout": 1.0}


def make_cluster(workers: int = 2, slots: int = 1, **options: Any) -> LocalCluster:
    """A :class:`LocalCluster` with :data:`FAST` heartbeats unless ``options`` say otherwise;
    use it as a context manager (it ends every process it started)."""
    return LocalCluster(workers=workers, slots=slots, **{**FAST, **options})


def job_masters_of(cluster: LocalCluster) -> list[int]:
    """The job-master processes (``pydispatch-job``) in the cluster dispatcher's group."""
    group = cluster._owned.dispatcher.pid  # type: ignore[union-attr]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            if comm == "pydispatch-job" and os.getpgid(int(entry)) == group:
                found.append(int(entry))
        except (OSError, ProcessLookupError):
            continue
    return found
