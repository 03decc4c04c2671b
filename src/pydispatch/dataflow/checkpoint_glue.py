"""The job master's checkpoint glue: performs the coordinator's instructions (private).

``dataflow.job_run.JobRun`` owns one :class:`CheckpointGlue` when the job checkpoints
(``env.enable_checkpointing``): it feeds it ticks, the slices' acknowledgements, failures and
savepoint requests; the glue triggers checkpoints at the slices, writes completed ones to
``dataflow.checkpoint_storage`` (``<storage>/<job id>/chk-<n>``), tells the slices (their
sinks commit), and says what each deployment starts from: the latest readable checkpoint (a
corrupt one is skipped for the previous, with a log line), else the savepoint the job was
submitted with. A restarted dispatcher starts a new master for an unfinished job under the
same id: it finds the job's checkpoints there and resumes from the latest. When the job ends,
its checkpoints are removed or kept by the coordinator's rule (``dataflow.checkpoints``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..runtime.job_store import default_state_dir
from ..wire import job_plane as jp
from . import checkpoints as ck
from . import lifecycle as jm
from .checkpoint_storage import CheckpointStorage, StoredCheckpoint, read_checkpoint
from .job_metrics import checkpoint_figures
from .snapshots import describe

__all__ = ["CheckpointGlue"]

log = logging.getLogger(__name__)

#: Sends a job-plane message to slice ``index`` (of its current attempt).
SendToSlice = Callable[[int, jp.JobMessage], None]
#: Answers a savepoint's requester (its identity on the control socket).
Reply = Callable[[bytes, jp.JobMessage], object]


class CheckpointGlue:
    def __init__(
        self,
        config: ck.CheckpointConfig,
        plan: Any,
        job_id: str,
        send: SendToSlice,
        reply: Reply,
        stop: Callable[[], object],
        from_savepoint: str = "",
    ) -> None:
        self.plan = plan
        self.job_id = job_id
        self._send = send
        self._reply = reply
        self._stop = stop  # cancels the job (a savepoint's --stop)
        self._subtasks = describe(plan)
        root = config.storage or os.path.join(default_state_dir(), "checkpoints")
        self.storage = CheckpointStorage(root, job_id)
        # A resumed job (same id) goes on from its own checkpoints, else from the savepoint.
        self._savepoint = from_savepoint
        self.coordinator = ck.CheckpointCoordinator(
            config, len(self._subtasks), next_id=self.storage.highest() + 1
        )
        self._requests: dict[str, tuple[bytes, bool]] = {}  # savepoint path -> requester
        self.last_size = 0
        self.restored_from = ""
        self._ended: set[int] = set()  # slices whose subtasks all ended (this attempt)

    # -- events ---------------------------------------------------------------------------

    def running(self, now: float) -> None:
        """Every slice of the job runs and is connected."""
        self.coordinator.running(now)

    def failed(self, now: float) -> None:
        self._ended.clear()
        self._perform(self.coordinator.reset(now))

    def slice_ended(self, index: int) -> None:
        """Slice ``index``'s subtasks have all ended and wait for their final checkpoint:
        once every slice's have, it is triggered without waiting for the interval."""
        self._ended.add(index)
        if len(self._ended) == self.plan.n_slots:
            self.coordinator.finishing()

    def tick(self, now: float, state: str = jm.RUNNING) -> None:
        """Time passes; the job's ``state``: once it is final, savepoints asked for are
        refused and the job's checkpoints removed or kept (once)."""
        if state not in jm.TERMINAL:
            self._perform(self.coordinator.tick(now))
            return
        self._perform(self.coordinator.ended(state, now))
        for path, (identity, _) in list(self._requests.items()):
            self._answer(identity, jp.SavepointReply(path, "the job has ended"), False)
        self._requests.clear()

    def on_message(
        self,
        identity: bytes,
        message: jp.CheckpointAck | jp.CheckpointDeclined | jp.SavepointRequest,
        attempt_of: Callable[[int], int],
    ) -> None:
        """A control message about checkpoints (a stale attempt's ack is dropped)."""
        now = time.monotonic()
        if isinstance(message, jp.SavepointRequest):
            self.savepoint(identity, message.path, message.stop)
        elif not 0 <= message.index < self.plan.n_slots:
            log.error("job %s dropped a checkpoint message of slice %d", self.job_id, message.index)
        elif message.attempt != attempt_of(message.index):
            return
        elif isinstance(message, jp.CheckpointAck):
            self.acknowledged(message, now)
        else:
            self.declined(message, now)

    def acknowledged(self, message: jp.CheckpointAck, now: float) -> None:
        try:
            out = self.coordinator.acknowledged(
                message.checkpoint, message.subtask, message.snapshot, now
            )
        except ValueError as error:
            log.error("job %s dropped a checkpoint ack: %s", self.job_id, error)
            return
        self._perform(out, now)

    def declined(self, message: jp.CheckpointDeclined, now: float) -> None:
        self._perform(self.coordinator.declined(message.checkpoint, message.reason, now))

    def savepoint(self, identity: bytes, path: str, stop: bool) -> None:
        if not path:
            self._answer(identity, jp.SavepointReply(path, "a savepoint needs a path"), False)
            return
        self._requests[path] = (identity, stop)
        self.coordinator.request_savepoint(path)

    def _answer(self, identity: bytes, reply: jp.SavepointReply, stop: bool) -> None:
        self._reply(identity, reply)
        if stop and not reply.error:
            self._stop()

    # -- deployments ----------------------------------------------------------------------

    def deploy_args(self, slices: tuple[int, ...]) -> dict[str, Any]:
        """``run_slice``'s ``checkpoint`` argument for ``slices``: the next checkpoint's number
        and, when there is one, the checkpoint to restore (only their own snapshots when the
        plan is the same; every snapshot when the parallelism changed)."""
        args: dict[str, Any] = {"next": self.coordinator.next_id}
        stored = self._restore_point()
        if stored is None:
            return args
        args["restored"] = stored.checkpoint
        self.coordinator.next_id = max(self.coordinator.next_id, stored.checkpoint + 1)
        args["next"] = self.coordinator.next_id
        if stored.subtasks == self._subtasks:
            mine = {
                self.plan.subtask(chain.id, i)
                for chain in self.plan.chains
                for i in slices
                if i < chain.parallelism
            }
            args["snapshots"] = {g: b for g, b in stored.snapshots.items() if g in mine}
        else:
            args["snapshots"] = stored.snapshots
        return args

    def _restore_point(self) -> StoredCheckpoint | None:
        stored = self.storage.latest()
        if stored is None and self._savepoint:
            stored = read_checkpoint(self._savepoint)  # (corrupt: the submission fails)
            self.restored_from = self._savepoint
        elif stored is not None:
            self.restored_from = stored.path
        return stored

    def check_savepoint(self) -> None:
        """Raise now (at submission) if the job's savepoint cannot be read."""
        if self._savepoint and not self.storage.completed():
            read_checkpoint(self._savepoint)

    # -- instructions ---------------------------------------------------------------------

    def _perform(self, instructions: list[ck.CheckpointInstruction], now: float = 0.0) -> None:
        for ins in instructions:
            if isinstance(ins, ck.Trigger):
                for index in range(self.plan.n_slots):
                    self._send(index, jp.TriggerCheckpoint(0, ins.checkpoint))
            elif isinstance(ins, ck.Complete):
                self._complete(ins)
            elif isinstance(ins, ck.Discard):
                self._discard(ins.outcome)
            else:
                log.warning(
                    "job %s: checkpoint %d aborted: %s", self.job_id, ins.checkpoint, ins.reason
                )
                if ins.savepoint:
                    identity, _ = self._requests.pop(ins.savepoint, (b"", False))
                    reply = jp.SavepointReply(ins.savepoint, f"aborted: {ins.reason}")
                    self._answer(identity, reply, False)

    def _complete(self, ins: ck.Complete) -> None:
        try:
            self.last_size = self.storage.write(ins.checkpoint, ins.snapshots, self._subtasks)
            if ins.savepoint:
                self.storage.write_savepoint(
                    ins.savepoint, ins.checkpoint, ins.snapshots, self._subtasks
                )
        except OSError as error:
            log.error("job %s: checkpoint %d not stored: %s", self.job_id, ins.checkpoint, error)
            self.coordinator.aborted += 1
            if ins.savepoint:
                identity, _ = self._requests.pop(ins.savepoint, (b"", False))
                self._answer(identity, jp.SavepointReply(ins.savepoint, str(error)), False)
            return
        for old in self.coordinator.stored(ins.checkpoint):
            self.storage.remove(old)
        for index in range(self.plan.n_slots):
            self._send(index, jp.CheckpointComplete(ins.checkpoint))
        log.info(
            "job %s: checkpoint %d complete in %.3f s, %d bytes",
            self.job_id,
            ins.checkpoint,
            ins.duration,
            self.last_size,
        )
        if ins.savepoint:
            identity, stop = self._requests.pop(ins.savepoint, (b"", False))
            self._answer(identity, jp.SavepointReply(ins.savepoint), stop)

    def _discard(self, outcome: str) -> None:
        try:
            removed = self.storage.discard_all()
        except OSError as error:  # (the job's outcome stands; the files stay)
            log.error("job %s: its checkpoints not removed: %s", self.job_id, error)
            return
        log.info("job %s %s: %d checkpoints removed", self.job_id, outcome, removed)

    def figures(self) -> dict[str, Any]:
        """The job's checkpoint figures (``metrics()["checkpoints"]``)."""
        c = self.coordinator
        latest = c.completed[-1] if c.completed else 0
        return checkpoint_figures(
            c.count, c.aborted, latest, c.last_duration, self.last_size, self.restored_from
        )
