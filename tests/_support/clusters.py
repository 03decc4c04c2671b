"""Embedded clusters for the tests: one factory, one set of fast settings."""

from __future__ import annotations

from typing import Any, Final

from pydispatch.runtime.cluster import LocalCluster

__all__ = ["FAST", "make_cluster"]

#: Heartbeats every 0.1 s, a worker lost after 1 s: tests of failover see it at once.
FAST: Final[dict[str, Any]] = {"heartbeat_interval": 0.1, "heartbeat_timeout": 1.0}


def make_cluster(workers: int = 2, slots: int = 1, **options: Any) -> LocalCluster:
    """A :class:`LocalCluster` with :data:`FAST` heartbeats unless ``options`` say otherwise;
    use it as a context manager (it ends every process it started)."""
    return LocalCluster(workers=workers, slots=slots, **{**FAST, **options})
