"""How often the dispatcher asks its workers to heartbeat: a rate the dispatcher's CPU can
carry, whatever the size of the cluster (issue 21).

Every worker heartbeats every ``heartbeat_interval`` (1 s by default): 3,000 workers are 3,000
messages a second, about 6% of a core of an idle dispatcher. As Nomad's servers do with their
clients' heartbeat TTLs, the dispatcher paces the cluster as a whole: past
``max_heartbeat_rate * heartbeat_interval`` workers, each is told a longer interval,
so that all together send about ``max_heartbeat_rate`` a second. The interval never exceeds a
third of ``heartbeat_timeout``, so that a worker is declared lost after the same silence as
before, having missed three heartbeats at least (the timeout is not changed: failure
detection takes as long as configured).

A worker hears its interval in ``Registered`` (when it registers), and again in a
``Registered`` answering one of its heartbeats when the cluster has grown or shrunk enough that
its interval is off by more than a quarter (a worker takes a repeated ``Registered`` as a new
interval; nothing else changes for it).
"""

from __future__ import annotations

from typing import Final

from ..wire import protocol as p

__all__ = ["DEFAULT_MAX_HEARTBEATS", "HeartbeatPacing"]

#: Heartbeats per second a dispatcher asks of its workers together, at most, by default: about
#: 2% of a core (a heartbeat costs the dispatcher ~20 µs), and 1,000 workers at the default
#: interval of 1 s.
DEFAULT_MAX_HEARTBEATS: Final = 1000.0

_SLACK: Final = 1.25  # an interval told is kept while within this factor of the right one
_MISSED: Final = 3.0  # heartbeats a worker may miss before the timeout declares it lost


class HeartbeatPacing:
    """The interval each registered worker was told, and the one it should be told now."""

    def __init__(self, interval: float, timeout: float, max_per_second: float) -> None:
        if not max_per_second > 0:
            raise ValueError(
                f"max_heartbeat_rate (heartbeats per second) must be > 0, not {max_per_second!r}"
            )
        self._interval = interval
        self._timeout = timeout
        self._longest = max(interval, timeout / _MISSED)
        self._max_per_second = max_per_second
        self._told: dict[bytes, float] = {}

    def interval(self) -> float:
        """The interval the registered workers should heartbeat at now."""
        paced = len(self._told) / self._max_per_second
        return min(max(self._interval, paced), self._longest)

    def registered(self, worker: bytes, epoch: str) -> p.Registered:
        """``worker`` registered (again): what to answer it (the dispatcher's ``epoch``)."""
        self._told[worker] = 0.0  # counted before the interval is chosen
        told = self._told[worker] = self.interval()
        return p.Registered(told, self._timeout, epoch)

    def retell(self, worker: bytes, epoch: str) -> p.Registered | None:
        """On a heartbeat of a registered ``worker``: a ``Registered`` with a new interval, if
        the one it has is off by more than a quarter (None: it has the right one, or is not
        known)."""
        told = self._told.get(worker)
        if told is None:
            return None
        right = self.interval()
        if right / _SLACK <= told <= right * _SLACK:
            return None
        self._told[worker] = right
        return p.Registered(right, self._timeout, epoch)

    def forget(self, worker: bytes) -> None:
        self._told.pop(worker, None)
