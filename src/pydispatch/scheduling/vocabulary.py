"""The scheduler's vocabulary: the instructions it returns, the inputs it takes, the snapshots
it gives (a worker's from ``snapshots``). Plain frozen dataclasses, re-exported by
:mod:`pydispatch.scheduling.scheduler`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .snapshots import WorkerSnapshot

__all__ = [
    "AskToReregister",
    "AttemptOutcome",
    "Counters",
    "ForgetWorker",
    "Instruction",
    "KillAttempts",
    "NewTask",
    "NotifyStarted",
    "Outcome",
    "ReleaseWorker",
    "Resolve",
    "RunAttempts",
    "Snapshot",
    "WorkerSnapshot",
]

Outcome = Literal["ok", "error", "failed", "cancelled", "lost"]


# ----------------------------------------------------------------------------- instructions


@dataclass(frozen=True, slots=True)
class RunAttempts:
    """Send these attempts ``(attempt id, task payload)`` to ``slot``, a slot of ``worker``."""

    worker: bytes
    slot: bytes
    attempts: list[tuple[int, object]]


@dataclass(frozen=True, slots=True)
class KillAttempts:
    """Cancel attempts placed on ``slot``: tell it (to skip those not started) and, with
    ``force``, ``worker`` too (to kill the slot process if it runs one of them)."""

    worker: bytes
    slot: bytes
    attempt_ids: list[int]
    force: bool = True


@dataclass(frozen=True, slots=True)
class NotifyStarted:
    client: bytes
    task_ids: list[int]


@dataclass(frozen=True, slots=True)
class Resolve:
    """The task's final outcome, to be delivered to its client."""

    client: bytes
    task_id: int
    status: Outcome
    value: object = None
    error: str = ""
    traceback: str = ""
    worker: str = ""
    priority: int = 0  # the task's (its client's metrics count by it)


@dataclass(frozen=True, slots=True)
class ReleaseWorker:
    """A draining worker has nothing left to run: tell it it may exit."""

    worker: bytes


@dataclass(frozen=True, slots=True)
class ForgetWorker:
    """A worker was removed (silent past the timeout, deregistered, or replaced)."""

    worker: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class AskToReregister:
    """An unknown worker spoke: it must register again before it gets work."""

    worker: bytes


Instruction = (
    RunAttempts
    | KillAttempts
    | NotifyStarted
    | Resolve
    | ReleaseWorker
    | ForgetWorker
    | AskToReregister
)


# ------------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class NewTask:
    task_id: int
    payload: object
    resources: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    retries: int = 3


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    attempt_id: int
    status: Outcome
    value: object = None
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0  # how long it ran (0: not measured)
    # Its task (client identity, task id), as the slot echoes it: an attempt this scheduler
    # does not know (placed by a dispatcher before a restart) still resolves its task.
    owner: bytes = b""
    task_id: int = -1


# ------------------------------------------------------------------------------ snapshots


@dataclass(slots=True)
class Counters:
    finished: int = 0  # ok or user error
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    discarded_late_results: int = 0
    adopted_results: int = 0  # outcomes of attempts placed before a restart, delivered


@dataclass(frozen=True, slots=True)
class Snapshot:
    workers: list[WorkerSnapshot]
    queued: int
    running: int
    counters: Counters
    #: Live tasks by (client, priority): [queued, running or being cancelled] (only when
    #: asked for: it walks every live task).
    by_client: dict[tuple[bytes, int], list[int]] = field(default_factory=dict)
