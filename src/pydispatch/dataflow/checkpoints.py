"""The checkpoint coordinator of a job master, as a pure state machine (private).

Carbone et al.'s asynchronous barrier snapshots, as Flink's ``CheckpointCoordinator`` runs
them: every ``interval`` seconds (and at least ``min_pause`` after the previous checkpoint
ended) the master triggers checkpoint ``n`` at every source subtask; sources record their
positions and send a barrier down every channel; an operator with several inputs aligns them
(it holds the channels whose barrier came until every channel's has) and then snapshots its
state; every subtask acknowledges ``n`` with its snapshot. Checkpoint ``n`` completes when every
subtask has acknowledged it: the glue (``dataflow.checkpoint_glue``) writes it to checkpoint
storage and tells the slices, whose two-phase sinks commit what ``n`` covers. A checkpoint not
complete within ``timeout`` is aborted (its partial snapshots dropped) and the next one is
triggered as usual; at most one checkpoint is pending at a time.

When the job ends its checkpoints go as Flink's externalized checkpoints do: a job that
FINISHED has no use for them (removed); a CANCELED job's are removed too unless the
configuration says ``retain_on_cancellation`` (Flink's
``ExternalizedCheckpointRetention.RETAIN_ON_CANCELLATION``), so that it can be started again
from its latest checkpoint; a FAILED job keeps them (what failed may be fixed and the job
resumed; a master stopped with its dispatcher ends FAILED and the next one resumes from them).
Savepoints are the user's: never removed.

Events in (``tick``, ``acknowledged``, ``declined``, ``reset``, ``stored``, ``ended``),
instructions out (:class:`Trigger`, :class:`Complete`, :class:`Abort`, :class:`Discard`); no
sockets and no clock: ``now`` is passed in (``tests/dataflow/test_checkpoints.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .lifecycle import CANCELED, FAILED, FINISHED

__all__ = [
    "Abort",
    "CheckpointConfig",
    "CheckpointCoordinator",
    "CheckpointInstruction",
    "Complete",
    "Discard",
    "Trigger",
]


@dataclass(frozen=True)
class CheckpointConfig:
    """``env.enable_checkpointing(interval, ...)``'s settings (Flink's names)."""

    interval: float
    timeout: float = 600.0
    min_pause: float = 0.0
    retained: int = 1
    storage: str = ""  # a directory or an fsspec URL; "" = under the state directory
    retain_on_cancellation: bool = False  # keep a cancelled job's checkpoints

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"checkpoint interval must be > 0 seconds: {self.interval}")
        if not self.timeout > 0:
            raise ValueError(f"checkpoint timeout must be > 0 seconds: {self.timeout}")
        if not self.min_pause >= 0:
            raise ValueError(f"checkpoint min_pause must be >= 0 seconds: {self.min_pause}")
        if self.retained < 1:
            raise ValueError(f"retained checkpoints must be >= 1: {self.retained}")


@dataclass(frozen=True)
class Trigger:
    """Start checkpoint ``checkpoint`` at every source subtask (``savepoint``: a path to
    write it to besides the checkpoint storage)."""

    checkpoint: int
    savepoint: str = ""


@dataclass(frozen=True)
class Complete:
    """Every subtask acknowledged: write ``snapshots`` (subtask id -> bytes), then call
    :meth:`CheckpointCoordinator.stored` and tell the slices."""

    checkpoint: int
    snapshots: dict[int, bytes]
    duration: float
    savepoint: str = ""


@dataclass(frozen=True)
class Abort:
    checkpoint: int
    reason: str
    savepoint: str = ""


@dataclass(frozen=True)
class Discard:
    """The job ended ``outcome``: remove all its checkpoints from storage (including those
    of an earlier master of the same job); savepoints stay."""

    outcome: str


CheckpointInstruction = Trigger | Complete | Abort | Discard


@dataclass
class _Pending:
    checkpoint: int
    started: float
    savepoint: str
    acks: dict[int, bytes] = field(default_factory=dict)


class CheckpointCoordinator:
    """Checkpoints of one job whose subtasks are ``subtasks`` (global subtask ids).

    ``next_id``: the first checkpoint's number (a job restored from checkpoint ``n``
    continues at ``n + 1``, so sinks' file names never repeat)."""

    def __init__(self, config: CheckpointConfig, subtasks: int, next_id: int = 1) -> None:
        if subtasks < 1:
            raise ValueError("a job has at least one subtask")
        self.config = config
        self.subtasks = subtasks
        self.next_id = next_id
        self.pending: _Pending | None = None
        self.completed: list[int] = []  # ids retained, oldest first
        self.count = 0  # checkpoints completed so far
        self.aborted = 0
        self.last_duration = 0.0
        self._last_end: float | None = None  # when the previous checkpoint ended
        self._started_at: float | None = None  # when the job (its latest attempt) ran
        self._savepoints: list[str] = []  # requested, not triggered yet
        self._previous_start = 0.0
        self.ended_as = ""  # the job's final state, once it ended
        self._final = False  # every subtask has ended: their final checkpoint goes now

    def running(self, now: float) -> None:
        """The job's subtasks all run (again): checkpoints may be triggered from now on."""
        if self._started_at is None and not self.ended_as:
            self._started_at = now

    def reset(self, now: float) -> list[CheckpointInstruction]:
        """A region failed: the pending checkpoint cannot complete (its subtasks' snapshots
        are gone); none is triggered until :meth:`running` is called again."""
        self._started_at = None
        return self._abort(now, "a subtask failed")

    def request_savepoint(self, path: str) -> None:
        """A savepoint to ``path``: triggered at the next tick (before any periodic one)."""
        self._savepoints.append(path)

    def finishing(self) -> None:
        """Every subtask has ended and waits for a checkpoint holding its final state (its
        sinks commit then): the next one goes as soon as ``min_pause`` allows, not one
        interval after the previous start (the job's end is not held back by the interval)."""
        self._final = True

    def tick(self, now: float) -> list[CheckpointInstruction]:
        out: list[CheckpointInstruction] = []
        pending = self.pending
        if pending is not None and now - pending.started > self.config.timeout:
            out += self._abort(now, f"not complete within {self.config.timeout:g} s")
        if self.pending is not None or self._started_at is None:
            return out
        if self._savepoints:
            return [*out, self._trigger(now, self._savepoints.pop(0))]
        if self._final:
            due = now if self._last_end is None else self._last_end + self.config.min_pause
        elif self._last_end is None:
            due = self._started_at + self.config.interval
        else:  # one interval after the previous start, and min_pause after its end
            due = max(
                self._previous_start + self.config.interval, self._last_end + self.config.min_pause
            )
        if now >= due:
            out.append(self._trigger(now, ""))
        return out

    def _trigger(self, now: float, savepoint: str) -> Trigger:
        checkpoint = self.next_id
        self.next_id += 1
        self.pending = _Pending(checkpoint, now, savepoint)
        self._previous_start = now
        self._final = False
        return Trigger(checkpoint, savepoint)

    def acknowledged(
        self, checkpoint: int, subtask: int, snapshot: bytes, now: float
    ) -> list[CheckpointInstruction]:
        """Subtask ``subtask``'s snapshot for ``checkpoint`` (a late ack of an aborted or
        completed checkpoint is dropped)."""
        pending = self.pending
        if pending is None or pending.checkpoint != checkpoint:
            return []
        if not 0 <= subtask < self.subtasks:
            raise ValueError(f"no subtask {subtask} in this job")
        pending.acks[subtask] = snapshot
        if len(pending.acks) < self.subtasks:
            return []
        self.pending = None
        self._final = False  # (asked again while subtasks still wait for a later one)
        self._last_end = now
        self.last_duration = now - pending.started
        return [Complete(checkpoint, dict(pending.acks), self.last_duration, pending.savepoint)]

    def declined(self, checkpoint: int, reason: str, now: float) -> list[CheckpointInstruction]:
        """A subtask could not snapshot (or the storage could not write) ``checkpoint``."""
        if self.pending is None or self.pending.checkpoint != checkpoint:
            return []
        return self._abort(now, reason)

    def stored(self, checkpoint: int) -> list[int]:
        """``checkpoint`` is in storage: the ids of older ones beyond ``retained`` to remove."""
        self.completed.append(checkpoint)
        self.count += 1
        extra = len(self.completed) - self.config.retained
        if extra <= 0:
            return []
        dropped, self.completed = self.completed[:extra], self.completed[extra:]
        return dropped

    def ended(self, outcome: str, now: float) -> list[CheckpointInstruction]:
        """The job ended FINISHED, CANCELED or FAILED: the pending checkpoint is aborted and,
        by Flink's rule (see the module docstring), its checkpoints discarded or kept; nothing
        is triggered any more. Only the first call counts."""
        if outcome not in (FINISHED, CANCELED, FAILED):
            raise ValueError(f"not a final state of a job: {outcome!r}")
        if self.ended_as:
            return []
        self.ended_as = outcome
        self._started_at = None
        out = self._abort(now, f"the job ended {outcome}")
        retained = outcome == FAILED or (outcome == CANCELED and self.config.retain_on_cancellation)
        return out if retained else [*out, Discard(outcome)]

    def _abort(self, now: float, reason: str) -> list[CheckpointInstruction]:
        pending = self.pending
        if pending is None:
            return []
        self.pending = None
        self.aborted += 1
        self._last_end = now
        return [Abort(pending.checkpoint, reason, pending.savepoint)]
