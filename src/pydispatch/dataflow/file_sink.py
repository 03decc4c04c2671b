"""Exactly-once sinks: two-phase commit tied to checkpoints (private; the interface is public
as ``pydispatch.stream.TransactionalSink``).

Flink's ``TwoPhaseCommitSinkFunction``: a sink subtask writes into a transaction; at a
checkpoint's barrier it pre-commits it (flushes it durably, still invisible) and opens the
next; the pre-committed transactions travel in the subtask's snapshot, and they are
committed (made visible) once the checkpoint is complete. After a failure the job restores
the latest completed checkpoint: the sink commits the transactions that checkpoint holds (a
commit must be idempotent: it may have happened already) and aborts what was written after it
(it will be written again by the replay). Nothing is visible twice, nothing is lost.

:class:`TwoPhaseFileSink` is ``write_text(directory)`` when checkpointing is on: transaction
``n`` of subtask ``i`` is the hidden file ``.part-<i>-<n>.inprogress``, committed by renaming it
to ``part-<i>-<n>`` (zero-padded ``n``: the directory's listing is the output's order).
Its pre-commit closes the file at once and leaves the fsync to a thread of its own (Flink's
asynchronous part of a snapshot): the subtask goes on with the next transaction while the
disk catches up, the slice sends the checkpoint's acknowledgement only once the file is
durable (:meth:`TwoPhaseFileSink.durable`), and a commit waits for it too.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

__all__ = ["TransactionalSink", "TwoPhaseFileSink", "committed_lines"]


class TransactionalSink:
    """A sink with transactions (override the five methods); pass one to
    ``DataStream.sink_to(sink)``. Each subtask gets its own copy (the instance is pickled).

    - ``begin(subtask, parallelism, checkpoint)``: a new transaction (any picklable value) for
      the records after checkpoint ``checkpoint - 1``'s barrier;
    - ``write(transaction, records)``: add a batch of records to it;
    - ``pre_commit(transaction)``: at the barrier: make it durable, not visible yet;
    - ``commit(transaction)``: the checkpoint is complete: make it visible; idempotent (a
      restored job commits its checkpoint's transactions again);
    - ``abort(transaction)``: drop it (the job is cancelled);
    - ``recover(subtask, parallelism, transactions)``: on restore, before anything is written:
      ``transactions`` are the pre-committed ones of the restored checkpoint that fall to this
      subtask; the default commits them. Override it to also drop what earlier runs wrote
      after that checkpoint (the file sink removes their in-progress files).
    Without checkpointing the job's end commits everything once, like a checkpoint would;
    with it, what a subtask writes last is committed by the first checkpoint completed after
    its end (its slice waits for it)."""

    def begin(self, subtask: int, parallelism: int, checkpoint: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not override begin()")

    def write(self, transaction: Any, records: list[Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not override write()")

    def pre_commit(self, transaction: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not override pre_commit()")

    def commit(self, transaction: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not override commit()")

    def abort(self, transaction: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not override abort()")

    def recover(self, subtask: int, parallelism: int, transactions: Sequence[Any]) -> None:
        for transaction in transactions:
            self.commit(transaction)


_PART = re.compile(r"^\.part-(\d+)-(\d+)\.inprogress$")


class TwoPhaseFileSink(TransactionalSink):
    """Text lines into ``directory``, one file per subtask and checkpoint (see the module
    docstring); a transaction is ``(temporary path, final path)``."""

    def __init__(self, directory: str, encoding: str = "utf-8") -> None:
        self.directory = directory
        self.encoding = encoding
        self._open: dict[str, IO[str]] = {}
        self._syncing: dict[str, Future[None]] = {}  # temporary path -> its fsync
        # One thread, started at the first pre-commit (starting one per pre-commit waits for
        # it to run: a millisecond on a busy machine); it ends with the sink (collected).
        self._syncer: ThreadPoolExecutor | None = None

    def begin(self, subtask: int, parallelism: int, checkpoint: int) -> Any:
        os.makedirs(self.directory, exist_ok=True)
        temp = os.path.join(self.directory, f".part-{subtask}-{checkpoint:09d}.inprogress")
        final = os.path.join(self.directory, f"part-{subtask}-{checkpoint:09d}")
        self._open[temp] = open(temp, "w", encoding=self.encoding)  # noqa: SIM115
        return (temp, final)

    def write(self, transaction: Any, records: list[Any]) -> None:
        self._open[transaction[0]].writelines(f"{r}\n" for r in records)

    def pre_commit(self, transaction: Any) -> None:
        handle = self._open.pop(transaction[0], None)
        if handle is not None:
            handle.flush()  # (to the OS: the fsync's thread touches no Python buffer)
            if self._syncer is None:
                self._syncer = ThreadPoolExecutor(1, thread_name_prefix="pre-commit fsync")
            self._syncing[transaction[0]] = self._syncer.submit(_sync_and_close, handle)

    def durable(self, transaction: Any) -> Future[None] | None:
        """The pre-committed ``transaction``'s fsync under way (None: none is); its
        checkpoint is acknowledged once it is done."""
        return self._syncing.get(transaction[0])

    def _wait_durable(self, transaction: Any) -> None:
        syncing = self._syncing.pop(transaction[0], None)
        if syncing is not None:
            syncing.result()  # (an fsync's OSError is this commit's)

    def commit(self, transaction: Any) -> None:
        self._wait_durable(transaction)  # never visible before it is durable
        temp, final = transaction
        with contextlib.suppress(FileNotFoundError):  # committed already: idempotent
            os.replace(temp, final)

    def abort(self, transaction: Any) -> None:
        handle = self._open.pop(transaction[0], None)
        if handle is not None:
            handle.close()
        with contextlib.suppress(OSError):
            self._wait_durable(transaction)
        with contextlib.suppress(FileNotFoundError):
            os.remove(transaction[0])

    def recover(self, subtask: int, parallelism: int, transactions: Sequence[Any]) -> None:
        """Commit the restored checkpoint's files, remove every other in-progress file of
        the subtasks that fall to this one (``old index % parallelism == subtask``)."""
        keep = {t[0] for t in transactions}
        for transaction in transactions:
            self.commit(transaction)
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.directory):
                match = _PART.match(name)
                if match and int(match[1]) % parallelism == subtask:
                    path = os.path.join(self.directory, name)
                    if path not in keep:
                        with contextlib.suppress(FileNotFoundError):
                            os.remove(path)


def _sync_and_close(handle: IO[str]) -> None:
    try:
        os.fsync(handle.fileno())
    finally:
        handle.close()


def committed_lines(directory: str) -> list[str]:
    """Every committed line of a two-phase file sink's directory, file by file."""
    out: list[str] = []
    for name in sorted(os.listdir(directory)):
        if name.startswith("part-"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                out.extend(line.rstrip("\n") for line in f)
    return out
