"""A subtask's side of checkpoints: barrier alignment and its sinks' transactions (private).

:class:`Aligner`: an operator with several input channels takes checkpoint ``n``'s snapshot
once the barrier ``n`` came on every channel; a channel whose barrier came is held (its
messages wait, unprocessed and uncredited, so its producer stops after its credits) until
then: the snapshot holds exactly what every producer sent before its barrier (Flink's aligned
checkpoints). A channel that ended counts as aligned.

:class:`SinkTransactions`: the transactional sinks of one subtask (``dataflow.file_sink``): a
transaction open per sink, begun lazily; pre-committed at each barrier, committed when the
master says the checkpoint is complete, or at the end of input. A sink whose pre-commit
finishes in the background (``TwoPhaseFileSink.durable``) hands the slice the futures its
acknowledgement waits for (:meth:`SinkTransactions.take_durability`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from concurrent.futures import Future
from typing import Any

from .file_sink import TransactionalSink

__all__ = ["Aligner", "SinkTransactions"]


class Aligner:
    """Barrier alignment over ``channels`` input channels (any hashable names)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.ended: set[Hashable] = set()
        self.checkpoint: int | None = None  # the checkpoint being aligned
        self.blocked: set[Hashable] = set()
        self.held: deque[tuple[Hashable, Any]] = deque()

    def holds(self, channel: Hashable) -> bool:
        """Whether a message of ``channel`` must wait (its barrier came; others' have not)."""
        return channel in self.blocked

    def hold(self, channel: Hashable, message: Any) -> None:
        self.held.append((channel, message))

    def barrier(self, channel: Hashable, checkpoint: int) -> int | None:
        """A barrier arrived; the checkpoint to snapshot now, if every channel has its."""
        if self.checkpoint is None or checkpoint > self.checkpoint:
            # A newer checkpoint (an older one was aborted half way): align that one.
            self.checkpoint = checkpoint
            self.blocked = set()
        elif checkpoint < self.checkpoint:
            return None  # a late barrier of an abandoned checkpoint
        self.blocked.add(channel)
        return self._aligned()

    def end(self, channel: Hashable) -> int | None:
        """A channel ended; the checkpoint to snapshot now, if that completes an alignment."""
        self.ended.add(channel)
        return self._aligned() if self.checkpoint is not None else None

    def _aligned(self) -> int | None:
        if len(self.blocked | self.ended) < self.channels:
            return None
        checkpoint = self.checkpoint
        self.checkpoint = None
        self.blocked = set()
        return checkpoint

    def release(self) -> deque[tuple[Hashable, Any]]:
        """The held messages, to be processed now in their order (some may be held again)."""
        held, self.held = self.held, deque()
        return held


class SinkTransactions:
    """Subtask ``index``'s transactional sinks (``sinks``: operator id -> sink); ``next_id``:
    the number the first transaction is named by (the next checkpoint's, at least)."""

    def __init__(
        self, sinks: dict[int, TransactionalSink], index: int, parallelism: int, next_id: int
    ) -> None:
        self.sinks = sinks
        self.index = index
        self.parallelism = parallelism
        self.next_id = next_id
        self.open: dict[int, Any] = {}
        self.pending: list[tuple[int, int, Any]] = []  # (checkpoint, op id, transaction)
        self._durability: list[Future[None]] = []  # pre-commits still under way

    def write(self, op_id: int, records: list[Any]) -> None:
        transaction = self.open.get(op_id)
        if transaction is None:
            sink = self.sinks[op_id]
            transaction = self.open[op_id] = sink.begin(self.index, self.parallelism, self.next_id)
        self.sinks[op_id].write(transaction, records)

    def pre_commit(self, checkpoint: int) -> dict[int, list[Any]]:
        """At ``checkpoint``'s barrier; every transaction still to commit, per sink."""
        for op_id, transaction in self.open.items():
            sink = self.sinks[op_id]
            sink.pre_commit(transaction)
            self.pending.append((checkpoint, op_id, transaction))
            durable = getattr(sink, "durable", None)  # (the file sink's; not the interface's)
            if durable is not None and (syncing := durable(transaction)) is not None:
                self._durability.append(syncing)
        self.open = {}
        self.next_id = max(self.next_id, checkpoint + 1)
        out: dict[int, list[Any]] = {}
        for _, op_id, transaction in self.pending:
            out.setdefault(op_id, []).append(transaction)
        return out

    def take_durability(self) -> list[Future[None]]:
        """What the latest pre-commits still do in the background: the checkpoint's
        acknowledgement waits for these (a failed one declines it)."""
        taken, self._durability = self._durability, []
        return taken

    def commit(self, checkpoint: int) -> None:
        """``checkpoint`` is complete: commit what it covers (older pending ones too: an
        aborted checkpoint's transactions are covered by the next complete one)."""
        keep = []
        for entry in self.pending:
            if entry[0] <= checkpoint:
                self.sinks[entry[1]].commit(entry[2])
            else:
                keep.append(entry)
        self.pending = keep

    def recover(self, transactions: dict[int, list[Any]]) -> None:
        for op_id, sink in self.sinks.items():
            sink.recover(self.index, self.parallelism, transactions.get(op_id, []))

    def finish(self) -> None:
        """End of input: everything written is final."""
        for op_id, transaction in self.open.items():
            self.sinks[op_id].pre_commit(transaction)
            self.sinks[op_id].commit(transaction)
        self.open = {}
        self.commit(self.next_id + (1 << 62))
