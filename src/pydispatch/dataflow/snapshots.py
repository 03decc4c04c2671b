"""A subtask's snapshot: what it is made of, and which parts a restored subtask takes
(private).

A snapshot (cloudpickled, stored as bytes by the job master, unpickled only by a slice of the
same job) holds, per operator of the subtask's chain: the keyed state by key group
(``SubtaskRunner.snapshot_state``), the source's position (``dataflow.positions``), a collect
sink's batches so far, and a transactional sink's pre-committed transactions
(``dataflow.file_sink``).

Restoring at the same parallelism, each subtask takes its own snapshot back. At another
parallelism (a savepoint restored with ``--parallelism N``), a subtask takes, per operator:
every old subtask's keyed state (``restore_state`` keeps the key groups of its range), the
collected batches and transactions of the old subtasks ``j`` with ``j % parallelism == index``,
and the source positions of every old subtask when its source is read by split (a split
source, a monitored directory); a count-positioned source's old splits are dealt out
(``dataflow.positions.CountedSplits``: files and parallel factories; a collection or arrays
cannot change parallelism).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from ..plan import ExecutionGraph, _sources
from .operators import Batch
from .positions import IN_MEMORY, RESCALABLE_COUNTED, CountedSplits, RowRanges

__all__ = ["RestorePart", "Snapshot", "describe", "dump_snapshot", "load_snapshot", "restore_part"]


@dataclass
class Snapshot:
    ops: tuple[int, ...]
    index: int
    parallelism: int
    checkpoint: int
    position: Any = None  # the chain's source, if it has one
    keyed: dict[int, Any] = field(default_factory=dict)
    collected: dict[int, list[Batch]] = field(default_factory=dict)
    transactions: dict[int, list[Any]] = field(default_factory=dict)


@dataclass
class RestorePart:
    """What a restored subtask starts from."""

    checkpoint: int
    position: Any = None
    keyed: dict[int, list[Any]] = field(default_factory=dict)
    collected: dict[int, list[Batch]] = field(default_factory=dict)
    transactions: dict[int, list[Any]] = field(default_factory=dict)


def dump_snapshot(snapshot: Snapshot) -> bytes:
    return bytes(cloudpickle.dumps(snapshot))


def load_snapshot(data: bytes) -> Snapshot:
    snapshot = cloudpickle.loads(data)
    if not isinstance(snapshot, Snapshot):
        raise TypeError(f"not a subtask snapshot: {type(snapshot).__name__}")
    return snapshot


def describe(plan: ExecutionGraph) -> dict[int, Any]:
    """Each subtask of ``plan`` (global id) as checkpoint metadata: its operators, index and
    parallelism (what a restore at another parallelism matches by)."""
    out: dict[int, Any] = {}
    for chain in plan.chains:
        for index in range(chain.parallelism):
            out[plan.subtask(chain.id, index)] = [list(chain.operators), index, chain.parallelism]
    return out


_SPLIT_SOURCES = ("split", "monitor")


def restore_part(
    plan: ExecutionGraph, chain: int, index: int, olds: list[Snapshot], checkpoint: int
) -> RestorePart:
    """Subtask ``index`` of chain ``chain``'s share of the old snapshots (see the module
    docstring): its own when one matches exactly, else gathered by operator."""
    ops = tuple(plan.chains[chain].operators)
    parallelism = plan.chains[chain].parallelism
    part = RestorePart(checkpoint)
    for op_id in ops:
        op = plan.job.operator(op_id)
        holders = [s for s in olds if op_id in s.ops]
        if op.kind == "source" and holders:
            if all(s.parallelism == parallelism for s in holders):
                part.position = next((s.position for s in holders if s.index == index), None)
            elif op.params["source"] in _SPLIT_SOURCES:
                merged: dict[Any, Any] = {}
                for s in holders:
                    merged.update(s.position or {})
                part.position = merged
            elif op.params["source"] in RESCALABLE_COUNTED:
                olds_at = [(s.index, s.parallelism, s.position) for s in holders]
                part.position = CountedSplits.rescaled(olds_at, index, parallelism)
            elif op.params["source"] in IN_MEMORY:
                olds_at = [(s.index, s.parallelism, s.position) for s in holders]
                _check_all_old_subtasks(op.name, olds_at)
                rows = _sources.total_rows(op.params)
                part.position = RowRanges.rescaled(olds_at, rows, index, parallelism)
            else:
                raise ValueError(
                    f"the checkpoint's source {op.name!r} ran at parallelism "
                    f"{holders[0].parallelism}: it restores at that parallelism only"
                )
        keyed = [s.keyed[op_id] for s in holders if op_id in s.keyed]
        if keyed:
            part.keyed[op_id] = keyed
        for s in holders:
            if s.index % parallelism != index:
                continue
            if op_id in s.collected:
                part.collected.setdefault(op_id, []).extend(s.collected[op_id])
            if op_id in s.transactions:
                part.transactions.setdefault(op_id, []).extend(s.transactions[op_id])
    return part


def _check_all_old_subtasks(name: str, olds: list[tuple[int, int, Any]]) -> None:
    """Every old subtask of the source must be there: the records of a missing one would be
    lost (its position is what says how far its split was read)."""
    parallelism = olds[0][1]
    indices = sorted(i for i, _, _ in olds)
    if indices != list(range(parallelism)):
        raise ValueError(
            f"the checkpoint holds subtasks {indices} of source {name!r}, which ran at "
            f"parallelism {parallelism}: it cannot be restored"
        )
