"""What a finished job's slices return, gathered into the job's collected records (private;
split from ``dataflow.job_run``).

A slice pickles what its collect sinks received once, itself (:meth:`PickledCollected.of`),
and the pickle stream and its arrays' buffers travel as out-of-band buffers from then on:
slot -> dispatcher -> job master -> handle (and into the dispatcher's job store) as frames
nobody reads. Only the handle unpickles them (:meth:`CollectedSlices.gather`). Before, the
master unpickled every slice's records, concatenated them and pickled them again, twice
over (the job's result and each subtask's part): most of a large ``collect()``'s cost (see
the issue 18 note). Which attempt's results count (a restarted region's, never two) is the
master's choice, as before: it hands over the slices' parts of the final attempts only.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from ..plan import ExecutionGraph
from ..wire import transport
from ..wire.protocol import INLINE, Blob, check_blob
from .operators import Batch, concat, size
from .result import JobResult

__all__ = ["CollectedSlices", "PickledCollected", "gather_collected", "unpack_outcome"]

_Result = TypeVar("_Result", bound=JobResult)
_BLOB = msgspec.msgpack.Decoder(Blob)
_ENCODE = msgspec.msgpack.Encoder()


class PickledCollected:
    """One slice's collected records (``{operator id: batch}``), pickled in the slice.

    It pickles as its bytes, each one a :class:`pickle.PickleBuffer` (out of band under
    ``wire.transport``: a raw frame, never copied into another pickle stream), and unpickles
    as views of them: passing through a process costs no decoding of the records."""

    __slots__ = ("_blob", "_frames")

    def __init__(self, blob: bytes, frames: Sequence[Any]) -> None:
        self._blob = blob
        self._frames = list(frames)

    @classmethod
    def of(cls, collected: dict[int, Batch]) -> PickledCollected:
        frames: list[transport.FrameLike] = []
        blob = transport.dumps(collected, frames, inline_limit=0)
        return cls(_ENCODE.encode(blob), frames)

    @property
    def nbytes(self) -> int:
        return sum(memoryview(f).nbytes for f in self._frames)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        buffers = tuple(pickle.PickleBuffer(f) for f in self._frames)
        return (_rebuild, (self._blob, *buffers))

    def load(self) -> dict[int, Batch]:
        """The records (numpy columns are views of the buffers: no copy)."""
        blob = _BLOB.decode(self._blob)
        views = [memoryview(f).cast("B") for f in self._frames]
        check_blob(blob, [v.nbytes for v in views])
        if blob.frame == INLINE:  # dumps(inline_limit=0) never does this; a peer might
            raise ValueError("a slice's collected records came without their pickle stream")
        loaded: dict[int, Batch] = pickle.loads(
            views[blob.frame], buffers=[views[meta.frame] for meta in blob.buffers]
        )
        return loaded


def _rebuild(blob: bytes, *frames: Any) -> PickledCollected:
    return PickledCollected(blob, frames)


@dataclasses.dataclass(frozen=True)
class _Sink:
    plan_id: int  # the operator's id in the plan (the slices' keys)
    user_id: int  # its id in the user's job (the result's keys)
    parallelism: int
    columnar: bool


@dataclasses.dataclass(frozen=True)
class CollectedSlices:
    """A finished job's collect sinks and each slice's :class:`PickledCollected` (by slice
    index): what the master hands the handle, unread."""

    sinks: tuple[_Sink, ...]
    slices: tuple[PickledCollected, ...]

    @classmethod
    def of(cls, plan: ExecutionGraph, ids: list[int], results: dict[int, Any]) -> CollectedSlices:
        sinks = tuple(
            _Sink(op.id, ids[op.id], op.parallelism, bool(op.params.get("columnar")))
            for op in plan.job.sinks()
            if op.params.get("sink") == "collect"
        )
        needed = max((s.parallelism for s in sinks), default=0)
        return cls(sinks, tuple(results[i]["collected"] for i in range(needed)))

    def gather(self) -> tuple[dict[int, Any], dict[int, list[Batch]]]:
        """Each collect sink's records (by user operator id), and what each of its subtasks
        received (index order)."""
        loaded = [part.load() for part in self.slices]
        collected: dict[int, Any] = {}
        per_subtask: dict[int, list[Batch]] = {}
        for sink in self.sinks:
            parts: list[Batch] = [loaded[i].get(sink.plan_id, []) for i in range(sink.parallelism)]
            per_subtask[sink.user_id] = parts
            parts = [part for part in parts if size(part)]
            empty: Any = {} if sink.columnar else []
            collected[sink.user_id] = concat(parts) if parts else empty
        return collected, per_subtask


def gather_collected(
    plan: ExecutionGraph, ids: list[int], results: dict[int, Any]
) -> tuple[dict[int, Any], dict[int, list[Batch]]]:
    """Each collect sink's records (by user operator id), and what each of its subtasks
    received (index order), from the slices' results (by slice index)."""
    return CollectedSlices.of(plan, ids, results).gather()


def unpack_outcome(outcome: tuple[_Result, Any]) -> tuple[_Result, dict[int, list[Batch]]]:
    """A handle's ``(JobResult, subtask results)`` from what a master (or the job store)
    sent: ``(JobResult, CollectedSlices)``, or, kept by an earlier version, the records
    already gathered."""
    result, collected = outcome
    if not isinstance(collected, CollectedSlices):
        return result, collected
    records, per_subtask = collected.gather()
    return dataclasses.replace(result, collected=records), per_subtask
