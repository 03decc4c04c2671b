"""The dataflow job plane: what a job master's control socket, its slices and the job's handles
say to each other (one tagged union, :data:`JobMessage`).

The job master's control ROUTER (``dataflow.job_run``), its slices (``dataflow.slice``) and the
job's handles (``dataflow.handle``) speak only these, decoded with :func:`decode_job`: a peer
that can connect there cannot make the master unpickle anything (requests to the master are one
header frame; only the master's :class:`JobResultReply` carries frames, to the handle that
asked). The protocol version travels on :class:`SliceReady`, a slice's first report.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec

from .protocol import Blob, Error, Header, decode_with

__all__ = [
    "CheckpointAck",
    "CheckpointComplete",
    "CheckpointDeclined",
    "JobCancel",
    "JobCancelled",
    "JobMessage",
    "JobResultReply",
    "JobResultRequest",
    "JobStatusReply",
    "JobStatusRequest",
    "MasterAck",
    "MasterAlive",
    "Peers",
    "SavepointReply",
    "SavepointRequest",
    "SliceFailed",
    "SliceMetrics",
    "SliceReady",
    "SubtaskFigures",
    "TriggerCheckpoint",
    "decode_job",
]


class SubtaskFigures(msgspec.Struct, array_like=True):
    """One subtask's metrics as a running slice reports them (keys: operator ids)."""

    records_in: dict[int, int]
    records_out: dict[int, int]
    bytes_out: int
    batches_out: int
    busy: float
    backpressured: float
    max_in_flight: int
    # Later additions, defaulted: a report without them (an older slice) still decodes.
    operator_bytes_in: dict[int, int] = msgspec.field(default_factory=dict)
    operator_bytes_out: dict[int, int] = msgspec.field(default_factory=dict)
    # Time windows in streaming mode: (watermark, newest mark of any input channel).
    watermarks: dict[int, tuple[float, float]] = msgspec.field(default_factory=dict)


class SliceReady(Header):
    """Slice -> master: up, its subtasks' data endpoints (by global subtask id)."""

    version: int
    attempt: int
    index: int
    endpoints: dict[int, str]
    pid: int


class SliceMetrics(Header):
    """Slice -> master, every half second while running (answered with :class:`MasterAlive`).
    ``ended``: every subtask of the slice has ended, and it waits for a checkpoint holding
    their final states (its sinks commit then; the master triggers it without waiting for the
    interval once every slice has ended). Defaulted: a report without it still decodes."""

    attempt: int
    index: int
    figures: dict[int, SubtaskFigures]
    ended: bool = False


class SliceFailed(Header):
    """Slice -> master: a subtask raised (answered with :class:`MasterAck`)."""

    attempt: int
    index: int
    error: str


class Peers(Header):
    """Master -> slices, once every slice of the attempt is ready: every data endpoint."""

    peers: dict[int, str]


class MasterAlive(Header):
    """Master -> slice: the answer to a metrics report (a slice ends if it hears none)."""


class MasterAck(Header):
    """Master -> slice: the failure was received (the master kills the attempt's slots)."""


class JobCancel(Header):
    """``pydispatch cancel`` -> master: cancel the job (answered with :class:`JobCancelled`)."""


class JobCancelled(Header):
    cancelled: bool  # False: the job had ended already


class JobStatusRequest(Header):
    """A job's handle -> master: state and figures (answered with :class:`JobStatusReply`)."""


class JobStatusReply(Header):
    """``metrics``: plain data only (numbers, strings, lists, dicts), as ``metrics()`` gives."""

    job_id: str
    name: str
    state: str
    metrics: dict[str, Any]


class JobResultRequest(Header):
    """A job's handle -> master: the outcome, once the job has ended. The master answers
    with :class:`JobResultReply` as soon as it has one, or with :class:`JobStatusReply`
    after ``wait`` seconds (a long poll: no polling loop while a job runs for hours)."""

    wait: float = 0.0


class JobResultReply(Header):
    """The job's outcome: ``state`` FINISHED (``result``: the pickled user records and
    figures, in frames after the header), FAILED (``error``) or CANCELED."""

    job_id: str
    name: str
    state: str
    metrics: dict[str, Any]
    error: str = ""
    result: Blob | None = None
    # The job's directory in the host's shared memory whose files hold its collected records
    # (dataflow.slice_results.MappedCollected): kept as long as this outcome ("": none).
    spilled: str = ""


class TriggerCheckpoint(Header):
    """Master -> slice: its source subtasks start checkpoint ``checkpoint`` (record their
    positions, send a barrier down every channel)."""

    attempt: int
    checkpoint: int


class CheckpointAck(Header):
    """Slice -> master: subtask ``subtask`` took its snapshot of ``checkpoint`` (the master
    stores the bytes as they are; only a slice of this job unpickles them, when restored)."""

    attempt: int
    index: int
    checkpoint: int
    subtask: int
    snapshot: bytes


class CheckpointDeclined(Header):
    """Slice -> master: a subtask could not snapshot ``checkpoint`` (it is aborted)."""

    attempt: int
    index: int
    checkpoint: int
    reason: str


class CheckpointComplete(Header):
    """Master -> slice: ``checkpoint`` is stored; sinks commit what it covers."""

    checkpoint: int


class SavepointRequest(Header):
    """A job's handle -> master: take a savepoint into ``path`` (``stop``: then cancel the
    job); answered with :class:`SavepointReply` once it is written or has failed."""

    path: str
    stop: bool = False


class SavepointReply(Header):
    path: str
    error: str = ""


JobMessage = (
    SliceReady
    | SliceMetrics
    | SliceFailed
    | Peers
    | MasterAlive
    | MasterAck
    | JobCancel
    | JobCancelled
    | JobStatusRequest
    | JobStatusReply
    | JobResultRequest
    | JobResultReply
    | TriggerCheckpoint
    | CheckpointAck
    | CheckpointDeclined
    | CheckpointComplete
    | SavepointRequest
    | SavepointReply
    | Error
)

_decoder = msgspec.msgpack.Decoder(JobMessage)


def decode_job(data: bytes | memoryview) -> JobMessage:
    """Decode a job plane header (:data:`JobMessage`); raises ``ProtocolError``."""
    return cast(JobMessage, decode_with(_decoder, data))
