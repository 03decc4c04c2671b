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

On one host the records do not even pass through the master and the dispatcher: a job
submitted to an ``ipc://`` dispatcher carries a private directory in ``/dev/shm`` (made by
the client, :func:`with_collect_dir`); a slice writes its pickle's frames to a file there and
returns a :class:`MappedCollected` (a path, offsets and sizes); the handle maps the file and
unpickles from it (numpy columns are views of the mapping). A slice that cannot see the
directory (another host) or write to it returns its frames as before. The directory lives as
long as the job's outcome is kept: the dispatcher removes it when the outcome's retention
ends or the job is dropped (``runtime.spilled_outcomes``), the master when nobody took the
outcome (``JobRun.close``), the cluster when it closes (``wire.shm_files``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import mmap
import os
import pickle
import stat
import tempfile
import uuid
from collections.abc import Sequence
from typing import Any, Final, TypeVar

import msgspec

from ..plan import ExecutionGraph
from ..plan._job_graph import JobGraph
from ..wire import shm_files, transport
from ..wire.protocol import INLINE, Blob, check_blob
from .operators import Batch, concat, size
from .result import JobResult

__all__ = [
    "SPILL_COLLECTED_BYTES",
    "CollectedSlices",
    "MappedCollected",
    "PickledCollected",
    "collect_dir",
    "gather_collected",
    "unpack_outcome",
    "with_collect_dir",
]

log = logging.getLogger(__name__)

#: A slice's collected records at least this large go to the client through a file.
SPILL_COLLECTED_BYTES: Final = 256 << 10
_ALIGN: Final = 64  # each frame's offset in a file: numpy columns mapped aligned

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
    def of(
        cls, collected: dict[int, Batch], directory: str = ""
    ) -> PickledCollected | MappedCollected:
        """The records pickled; written to a file in ``directory`` (the job's, see
        :func:`collect_dir`) when it is given, large enough, visible and writable here."""
        frames: list[transport.FrameLike] = []
        blob = transport.dumps(collected, frames, inline_limit=0)
        pickled = cls(_ENCODE.encode(blob), frames)
        if directory and pickled.nbytes >= SPILL_COLLECTED_BYTES:
            return MappedCollected.write(pickled._blob, pickled._frames, directory) or pickled
        return pickled

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


class MappedCollected:
    """One slice's collected records in a file of the job's shared-memory directory: the
    frames of its pickle at ``spans`` (offset, size). It pickles as that description (a few
    hundred bytes through the master and the dispatcher, whatever the records' size); only
    :meth:`load` reads the file."""

    __slots__ = ("blob", "path", "spans")

    def __init__(self, path: str, blob: bytes, spans: Sequence[tuple[int, int]]) -> None:
        self.path = path
        self.blob = blob
        self.spans = tuple((int(o), int(n)) for o, n in spans)

    def __reduce__(self) -> tuple[Any, ...]:
        return (MappedCollected, (self.path, self.blob, self.spans))

    @property
    def nbytes(self) -> int:
        return sum(n for _, n in self.spans)

    @classmethod
    def write(cls, blob: bytes, frames: Sequence[Any], directory: str) -> MappedCollected | None:
        """The frames written to a new file in ``directory``; None (the caller sends them)
        where the directory is not ours here (another host) or the write fails."""
        try:
            shm_files.checked_spill_dir(directory)
        except (OSError, ValueError):
            return None  # another host, or not ours: the frames travel as before
        path = os.path.join(directory, f"slice-{os.getpid()}-{uuid.uuid4().hex}")
        spans: list[tuple[int, int]] = []
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            with open(os.open(path, flags, 0o600), "wb") as file:
                offset = 0
                for frame in frames:
                    view = memoryview(frame).cast("B")
                    spans.append((offset, view.nbytes))
                    file.write(view)
                    offset += view.nbytes
                    padding = -offset % _ALIGN
                    file.write(bytes(padding))
                    offset += padding
        except OSError as error:  # shared memory full: the frames travel as before
            log.warning("cannot write collected records to %s (%s); sending them", path, error)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        return cls(path, blob, spans)

    def load(self) -> dict[int, Batch]:
        """The records, unpickled from a private mapping of the file (numpy columns are
        views of it: no copy until written). FileNotFoundError names the file once it is
        gone; ValueError for a path outside the cluster's directory or a short file."""
        directory, name = os.path.split(self.path)
        if name in ("", ".", ".."):
            raise ValueError(f"{self.path!r} names no file")
        shm_files.checked_spill_dir(directory)
        end = max((o + n for o, n in self.spans), default=0)
        # Not a link, and no wait on a FIFO: only a regular file is read (checked below).
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"the job's collected records in {self.path} are gone (the outcome's "
                "retention passed, or the cluster that ran the job closed)"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"{self.path!r} is not a regular file")
            if info.st_size < end:
                raise ValueError(f"{self.path} is shorter than the records written to it")
            mapped = mmap.mmap(fd, end, access=mmap.ACCESS_COPY) if end else b""
        finally:
            os.close(fd)
        whole = memoryview(mapped)
        views = [whole[o : o + n] for o, n in self.spans]
        blob = _BLOB.decode(self.blob)
        check_blob(blob, [v.nbytes for v in views])
        if blob.frame == INLINE:
            raise ValueError("a slice's collected records came without their pickle stream")
        loaded: dict[int, Batch] = pickle.loads(
            views[blob.frame], buffers=[views[meta.frame] for meta in blob.buffers]
        )
        return loaded


def with_collect_dir(job: JobGraph, address: str) -> tuple[JobGraph, str | None]:
    """The job with a new private directory in shared memory named on each collect sink
    (its slices write their records there), and that directory (None: no collect sink, or
    no shared memory here)."""
    sinks = [op for op in job.sinks() if op.params.get("sink") == "collect"]
    shm = shm_files.shared_dir()
    if not sinks or shm is None:
        return job, None
    prefix = shm_files.spill_prefix(address) + shm_files.COLLECT_TAG
    directory = tempfile.mkdtemp(prefix=prefix, dir=shm)  # 0700
    for op in sinks:
        job = job.replace(op.id, params=dict(op.params, spill_dir=directory))
    return job, directory


def collect_dir(job: JobGraph) -> str:
    """The directory :func:`with_collect_dir` named on the job's collect sinks ("": none)."""
    for op in job.sinks():
        if op.params.get("sink") == "collect" and op.params.get("spill_dir"):
            return str(op.params["spill_dir"])
    return ""


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
    slices: tuple[PickledCollected | MappedCollected, ...]

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
