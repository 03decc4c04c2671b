"""The wire protocol: every message kind the dispatcher, workers and clients exchange.

Each message on the wire is ``[identity..., b"", header, *frames]`` (see ``transport``). The
header is one of the tagged msgspec structs below, encoded with msgpack. Python objects
(functions, arguments, results, exceptions) are never inlined in the header: they are pickled
into frames that follow it and the header points at them with a :class:`Blob`; numpy buffers
inside those objects travel out of band as their own raw frames, described by
:class:`BufferMeta` (dtype format, shape and size), so that a 1 MB array is never copied into a
pickle stream.

Structs are ``array_like`` (encoded as msgpack arrays, not maps): headers are small and fast to
encode, which matters when thousands of tasks per second go through the dispatcher.

The protocol version travels on the two handshakes (:class:`ClientHello` and
:class:`Register`); a peer speaking another version gets an :class:`Error` reply and nothing
else.
"""

from __future__ import annotations

from typing import Final, Literal, cast

import msgspec

PROTOCOL_VERSION: Final = 1

# Outcome of a task or attempt, as reported to clients and by workers.
#   ok        - the function returned; ``value`` holds the result
#   error     - the function raised; ``value`` holds the pickled exception (if picklable)
#   failed    - the system could not run it (impossible demand, retries exhausted, slot died)
#   cancelled - cancelled before or while running
#   lost      - (workers only) the attempt was abandoned by a draining worker; re-queue it
Status = Literal["ok", "error", "failed", "cancelled", "lost"]

# Task kinds: a single call ``fn(*args, **kwargs)``, or a chunk of a map: ``[fn(*a) for a in
# args]`` (``[fn(a) for a in args]`` for KIND_MAP1) computed in one attempt so that small
# items are not paid for one message each.
INLINE: Final = -1  # Blob.frame value: the pickle stream is in Blob.data

KIND_CALL: Final = 0
KIND_CHUNK: Final = 1
KIND_MAP1: Final = 2  # a chunk of a one-iterable map: items, not 1-tuples (cheaper to pickle)
KINDS: Final = (KIND_CALL, KIND_CHUNK, KIND_MAP1)


class ProtocolError(Exception):
    """A message could not be decoded or does not follow the protocol."""


class _Header(msgspec.Struct, array_like=True, tag=True):
    """Base of every message header; the tag (class name) selects the kind on decoding."""


class BufferMeta(msgspec.Struct, array_like=True):
    """One out-of-band buffer (a numpy array's memory) carried as a raw frame."""

    frame: int
    nbytes: int
    format: str  # struct/buffer-protocol format of the items, e.g. "d" or "<f8"
    shape: tuple[int, ...]


class Blob(msgspec.Struct, array_like=True):
    """A pickled object: where its pickle stream is, and its out-of-band buffers.

    A small pickle stream travels inline in the header (``frame == INLINE``, bytes in
    ``data``): a no-op task then costs one frame per message instead of one per task, and
    frames are what a zmq message pays for. Large streams and every buffer get frames.
    """

    frame: int
    buffers: tuple[BufferMeta, ...] = ()
    data: bytes = b""


# ---------------------------------------------------------------- handshakes and errors


class ClientHello(_Header):
    version: int
    name: str = ""


class Welcome(_Header):
    """Reply to :class:`ClientHello` (clients repeat it; a new ``epoch`` = a restart)."""

    version: int
    total_slots: int
    epoch: str = ""


class Register(_Header):
    """A worker process announces itself (again, after a blip or a dispatcher restart)."""

    version: int
    name: str
    node: str
    pid: int
    slots: int
    resources: dict[str, float] = {}
    labels: dict[str, str] = {}
    data_address: str = ""


class Registered(_Header):
    """Reply to :class:`Register`: the heartbeat settings the worker must follow."""

    heartbeat_interval: float
    heartbeat_timeout: float


class Error(_Header):
    """Something the peer sent was refused; ``code`` is machine-readable."""

    code: str
    message: str


# ------------------------------------------------------------------- client <-> dispatcher


class TaskSpec(msgspec.Struct, array_like=True):
    task_id: int  # unique per client
    kind: int
    fn: Blob
    args: Blob  # pickled ``(args, kwargs)`` for KIND_CALL, list of arg tuples for KIND_CHUNK
    resources: dict[str, float] = {}
    labels: dict[str, str] = {}
    priority: int = 0
    retries: int = 3


class Submit(_Header):
    tasks: list[TaskSpec]


class Started(_Header):
    """These tasks have been placed on a worker (futures move to RUNNING)."""

    task_ids: list[int]


class TaskResult(msgspec.Struct, array_like=True):
    task_id: int
    status: Status
    value: Blob | None = None
    error: str = ""
    traceback: str = ""
    worker: str = ""


class Results(_Header):
    results: list[TaskResult]


class Cancel(_Header):
    task_ids: list[int]
    force: bool = False


class ClientBye(_Header):
    """The client shuts down: its queued tasks are dropped."""


class StatusRequest(_Header):
    pass


class WorkerStatus(msgspec.Struct):
    name: str
    node: str
    pid: int
    slots: int
    slots_used: int
    resources: dict[str, float]
    free_resources: dict[str, float]
    labels: dict[str, str]
    seconds_since_heartbeat: float
    draining: bool
    data_address: str = ""


class StatusReply(_Header):
    workers: list[WorkerStatus]
    queued: int
    running: int
    finished: int
    failed: int
    cancelled: int
    retried: int
    discarded_late_results: int
    protocol_errors: int


# ------------------------------------------------------------------- dispatcher <-> worker


class Heartbeat(_Header):
    """Sent by the worker's heartbeat thread on its own socket, so it names its worker."""

    worker: bytes


class Reregister(_Header):
    """The dispatcher does not know this worker (removed, or restarted): register again."""


class RunSpec(msgspec.Struct, array_like=True):
    attempt_id: int
    kind: int
    fn: Blob
    args: Blob
    priority: int = 0  # the worker runs what it holds highest priority first


class Run(_Header):
    attempts: list[RunSpec]


class Kill(_Header):
    """Force-cancel: stop these running attempts now (the worker kills their slot process)."""

    attempt_ids: list[int]


class AttemptResult(msgspec.Struct, array_like=True):
    attempt_id: int
    status: Status
    value: Blob | None = None
    error: str = ""
    traceback: str = ""


class Done(_Header):
    results: list[AttemptResult]


class Drain(_Header):
    """The worker is draining (SIGTERM): place nothing new on it."""


class Goodbye(_Header):
    """Worker -> dispatcher: deregister me. Dispatcher -> worker: drained, you may exit."""


# ------------------------------------------------------------------- dataflow jobs


class JobInfo(msgspec.Struct, array_like=True):
    """A dataflow job as its job master announces it (``pydispatch jobs`` lists these)."""

    job_id: str
    name: str
    state: str  # CREATED, RUNNING, RESTARTING, FINISHED, FAILED, CANCELED
    endpoint: str  # the job master's control socket: where a cancel request goes
    attempt: int
    slices: int


class JobUpdate(_Header):
    """Client -> dispatcher: a job master announces its job and each change of state."""

    job: JobInfo


class JobsRequest(_Header):
    """Anyone -> dispatcher: which dataflow jobs do you know of?"""


class JobsReply(_Header):
    jobs: list[JobInfo]


Message = (
    ClientHello
    | Welcome
    | Register
    | Registered
    | Error
    | Submit
    | Started
    | Results
    | Cancel
    | ClientBye
    | StatusRequest
    | StatusReply
    | Heartbeat
    | Reregister
    | Run
    | Kill
    | Done
    | Drain
    | Goodbye
    | JobUpdate
    | JobsRequest
    | JobsReply
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes | memoryview) -> Message:
    """Decode one header; any malformed input raises :class:`ProtocolError`, never crashes."""
    try:
        return cast(Message, _decoder.decode(data))
    # msgspec raises UnicodeDecodeError (a ValueError) for invalid UTF-8 in a tag or string.
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError) as error:
        raise ProtocolError(f"malformed header: {error}") from None


def check_blob(blob: Blob, frame_sizes: list[int]) -> None:
    """Raise :class:`ProtocolError` if ``blob`` points outside the frames or sizes disagree."""
    if blob.frame != INLINE and not 0 <= blob.frame < len(frame_sizes):
        raise ProtocolError(f"blob refers to frame {blob.frame} of {len(frame_sizes)}")
    for buffer in blob.buffers:
        if not 0 <= buffer.frame < len(frame_sizes):
            raise ProtocolError(f"buffer refers to frame {buffer.frame} of {len(frame_sizes)}")
        if frame_sizes[buffer.frame] != buffer.nbytes:
            raise ProtocolError(
                f"buffer frame {buffer.frame} holds {frame_sizes[buffer.frame]} bytes, "
                f"header says {buffer.nbytes} (truncated message?)"
            )
