"""A worker as the scheduler's snapshot sees it: also what the wire protocol's ``StatusReply``
carries, as it is.

A module of its own, and a msgspec struct rather than a dataclass, because every process that
imports the protocol (slots, workers, clients) imports it: a struct costs microseconds to
create, a dataclass about half a millisecond, and every slot start pays for what it imports.
"""

from __future__ import annotations

import msgspec

__all__ = ["WorkerSnapshot"]


class WorkerSnapshot(msgspec.Struct, frozen=True):
    """A worker as :meth:`Scheduler.snapshot` sees it; also what a ``StatusReply`` carries
    (encoded as a map of these fields: renaming or retyping a field changes the wire format,
    and a new one needs a default)."""

    name: str
    node: str
    pid: int
    slots: int
    slots_used: int
    resources: dict[str, float]
    free_resources: dict[str, float]
    labels: dict[str, str]
    seconds_since_heartbeat: float
    draining: bool
    data_address: str = ""
