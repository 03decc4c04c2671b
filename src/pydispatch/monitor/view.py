"""What the monitor sees of a dispatcher: an immutable picture made in the dispatcher's loop.

The HTTP thread never reads the dispatcher's live state: it asks the loop for a
:class:`DispatcherView` (see :mod:`.exchange`), which the loop builds from its scheduler's
snapshot, its counters (copies) and its job table, and hands over whole. msgspec structs: they
are built in microseconds and encode straight to the JSON API's answers.
"""

from __future__ import annotations

import msgspec

from ..scheduling.snapshots import WorkerSnapshot
from ..wire.protocol import JobInfo
from .recorder import Recorder

__all__ = ["ClientTasks", "DispatcherView", "SolverView", "TaskCounts", "WorkerView"]


class WorkerView(msgspec.Struct, frozen=True):
    """A worker as the scheduler has it, with what its last heartbeat said of its processes
    (the worker process and its slot processes: CPU seconds used, resident memory)."""

    worker: WorkerSnapshot
    cpu_seconds: float = 0.0
    rss_bytes: int = 0


class TaskCounts(msgspec.Struct, frozen=True):
    """The task counters, named as ``pydispatch status --json`` names them (plus submitted)."""

    submitted: int
    queued: int
    running: int
    finished: int
    failed: int
    cancelled: int
    retried: int
    discarded_late_results: int
    protocol_errors: int


class ClientTasks(msgspec.Struct, frozen=True):
    """The tasks of the clients under one label (see :mod:`.client_labels`) and of one
    priority: counters since the dispatcher started, and those live now."""

    client: str
    priority: int
    submitted: int = 0
    finished: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    queued: int = 0
    running: int = 0


class SolverView(msgspec.Struct, frozen=True):
    rounds: int
    solves: int
    solve_seconds: float
    placed_by_solver: int
    last_gap: float


class DispatcherView(msgspec.Struct, frozen=True):
    """One consistent picture of a dispatcher, taken between two rounds of its loop
    (``recorder`` is a copy: the loop goes on counting in its own)."""

    endpoint: str
    epoch: str
    uptime: float
    tasks: TaskCounts
    workers: list[WorkerView]
    jobs: list[JobInfo]
    solver: SolverView
    recorder: Recorder
    clients: list[ClientTasks] = []  # by label and priority, sorted
