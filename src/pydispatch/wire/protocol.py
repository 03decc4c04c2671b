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

The protocol version travels on the three handshakes (:class:`ClientHello`,
:class:`Register` and a slot's :class:`SlotHello`); a peer speaking another version gets an
:class:`Error` reply and nothing else.

Tasks do not pass through the worker process: each of its slot processes has its own socket
to the dispatcher, which sends it :class:`Run` and gets :class:`Done` back directly. The worker
registers its slots' identities, heartbeats, and supervises them: it kills a slot to
force-cancel an attempt and reports a slot that died or was killed (:class:`SlotLost`) and its
replacement (:class:`SlotReady`).

Dataflow jobs are submitted to the dispatcher (:class:`SubmitJob`, the job pickled into a frame
the dispatcher never unpickles), which starts a job-master process per job; that process fetches
the job (:class:`JobPayloadRequest`) and reports back (:class:`JobHostReport`) before the
submitter hears :class:`JobAccepted` or an :class:`Error` naming the reason.

Dataflow jobs have two planes of their own, each a separate tagged union in a module of its own
so that a socket decodes only what may arrive there: ``job_plane.JobMessage`` on a job master's
control socket (slices, ``pydispatch cancel``; the version travels on ``SliceReady``) and
``data_plane.DataMessage`` between subtasks (batches with numeric columns as raw frames). This
module holds what every plane shares (the header base, blobs, errors, the codec) and the
control plane, :data:`Message`: clients, the dispatcher, workers and slots.
"""

from __future__ import annotations

from typing import Any, Final, Literal, cast

import msgspec

from ..scheduling.snapshots import WorkerSnapshot

__all__ = [
    "INLINE",
    "KINDS",
    "KIND_CALL",
    "KIND_CHUNK",
    "KIND_MAP1",
    "NOT_LEADER",
    "PROTOCOL_VERSION",
    "AdminReply",
    "AttemptResult",
    "Blob",
    "BufferMeta",
    "Cancel",
    "CancelTasksOf",
    "ClientBye",
    "ClientHello",
    "DirectDone",
    "DirectRun",
    "Done",
    "Drain",
    "DrainWorker",
    "Error",
    "Goodbye",
    "Header",
    "Heartbeat",
    "JobAccepted",
    "JobHostReport",
    "JobInfo",
    "JobOutcome",
    "JobOutcomeReply",
    "JobOutcomeRequest",
    "JobPayload",
    "JobPayloadRequest",
    "JobUpdate",
    "JobsReply",
    "JobsRequest",
    "Kill",
    "KillDirect",
    "LeaseClose",
    "LeaseClosed",
    "LeaseEnded",
    "LeaseGranted",
    "LeaseOpen",
    "Message",
    "ProtocolError",
    "Register",
    "Registered",
    "ReplaceSlot",
    "Reregister",
    "Results",
    "ReturnLease",
    "Run",
    "RunSpec",
    "SlotHello",
    "SlotLost",
    "SlotReady",
    "SlotWelcome",
    "Started",
    "Status",
    "StatusReply",
    "StatusRequest",
    "Submit",
    "SubmitJob",
    "TaskResult",
    "TaskSpec",
    "Welcome",
    "WorkerSnapshot",
    "check_blob",
    "decode",
    "decode_with",
    "encode",
]

PROTOCOL_VERSION: Final = 10
# 2: slots talk to the dispatcher directly; 3: ClientHello.sender; 4: leases (the direct lane);
# 5: keys (lease tokens and slots' keys, jobs' owners and keys), slots report started attempts,
#    attempts carry their task's owner and id (results survive a dispatcher restart),
#    Registered/Reregister carry the dispatcher's epoch; 6: checkpoints (data-plane Barrier,
#    job-plane TriggerCheckpoint/CheckpointAck/CheckpointDeclined/CheckpointComplete, savepoints);
#    7: an admin's DrainWorker and CancelTasksOf (answered by AdminReply); 8: a slice returns
#    its collected records pickled by itself, and JobResultReply.result carries them so, unread
#    by the master (dataflow.slice_results); 9: Done.sync and Kill.sync, a slot's barrier before
#    it starts what was queued behind a task it reported started (see Done.sync); 10: on one
#    host a slice's collected records may come as a file in shared memory (JobResultReply.spilled,
#    dataflow.slice_results.MappedCollected)

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


class Header(msgspec.Struct, array_like=True, tag=True):
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


class ClientHello(Header):
    """A client's first word, repeated as a liveness signal while it has tasks outstanding.

    ``sender``: the identity of the client's second socket, which its application threads
    send on directly (without a hand-off to its I/O thread, which receives on the socket this
    hello comes from). The dispatcher treats messages from ``sender`` as the client's own and
    answers on the hello's socket.
    """

    version: int
    name: str = ""
    sender: bytes = b""


class Welcome(Header):
    """Reply to :class:`ClientHello` (clients repeat it; a new ``epoch`` = a restart)."""

    version: int
    total_slots: int
    epoch: str = ""
    # How often a client with tasks outstanding must say hello again: one silent for several
    # of these has its queued tasks dropped (it is presumed dead; if not, it sends them again).
    hello_interval: float = 2.0


class Register(Header):
    """A worker process announces itself (again, after a blip or a dispatcher restart)."""

    version: int
    name: str
    node: str
    pid: int
    slots: int
    resources: dict[str, float] = {}
    labels: dict[str, str] = {}
    data_address: str = ""
    # The zmq identities of its slot processes, each connected to the dispatcher already
    # (see SlotHello): the dispatcher sends tasks to them, not to the worker.
    slot_ids: list[bytes] = []


class Registered(Header):
    """Reply to :class:`Register`: the heartbeat settings the worker must follow."""

    heartbeat_interval: float
    heartbeat_timeout: float
    epoch: str = ""  # the dispatcher's incarnation (see Reregister)


class Error(Header):
    """Something the peer sent was refused; ``code`` is machine-readable."""

    code: str
    message: str


# A standby dispatcher's answer to anything: the leader's address is the ``message`` ("": none
# known yet). An Error, not a message type of its own: peers of earlier versions log it as a
# refusal instead of failing to decode it.
NOT_LEADER: Final = "not_leader"


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


class Submit(Header):
    tasks: list[TaskSpec]
    # The client asks for a lease on the slot its first task is placed on (see LeaseGranted):
    # it does so for a lone task without resources or labels, when it holds no lease.
    lease: bool = False


class Started(Header):
    """These tasks have started running in their slots (futures move to RUNNING)."""

    task_ids: list[int]


class TaskResult(msgspec.Struct, array_like=True):
    task_id: int
    status: Status
    value: Blob | None = None
    error: str = ""
    traceback: str = ""
    worker: str = ""


class Results(Header):
    results: list[TaskResult]
    started: list[int] = []  # task ids that started running since the last message (see Started)


class Cancel(Header):
    task_ids: list[int]
    force: bool = False


# ----------------------------------------------------- leases: the direct client <-> slot lane
# A lease lets a client send a lone plain task straight to one slot and get its result straight
# back (two hops instead of four). The dispatcher grants it, tells the slot first (LeaseOpen),
# and ends it when the slot, its worker or the client goes, or the worker drains; the client
# then sends its tasks through the dispatcher again. A direct attempt's id is negative
# (``-(lease_id << 32 | n)``): unique per dispatcher, never an attempt id of the dispatcher's.


class LeaseGranted(Header):
    """Dispatcher -> client: ``address`` is the slot's direct endpoint, open to this lease."""

    lease_id: int
    address: str
    worker: str = ""  # the slot's worker, by name
    # The capability: 128 random bits every DirectRun must carry (the slot knows it from
    # LeaseOpen); and, with keys, the slot's public key (its direct endpoint is a CURVE server).
    token: bytes = b""
    server_key: str = ""


class LeaseEnded(Header):
    """Dispatcher -> client: the lease is over. If its slot is gone, ``running`` (0: none) was
    the direct attempt it was running, ending ``status`` (as for SlotLost) with ``error``; the
    other direct attempts sent to it did not start. A lease ended with its slot alive
    (``status`` "ok") keeps running what the slot accepted and sends the results as usual.
    ``settled``: sent after that, once the slot said LeaseClosed: it answered every direct
    attempt it took under the lease and refuses any other, so one still out was lost on the
    way (the client sends it through the dispatcher). A trailing field: older peers ignore it."""

    lease_id: int
    running: int = 0
    status: Status = "ok"
    error: str = ""
    settled: bool = False


class KillDirect(Header):
    """Client -> dispatcher: force-cancel a direct attempt: its slot skips it if it has not
    started, and its worker kills the slot if it is running it (see Kill)."""

    lease_id: int
    attempt_id: int


class ReturnLease(Header):
    """Client -> dispatcher: this lease is of no use here (its slot's endpoint cannot be
    reached from the client): close it."""

    lease_id: int


class LeaseOpen(Header):
    """Dispatcher -> slot: accept DirectRun under this lease, with this token, and (with keys)
    from this client key only."""

    lease_id: int
    token: bytes = b""
    client_key: str = ""


class LeaseClose(Header):
    """Dispatcher -> slot: refuse DirectRun under this lease from now on."""

    lease_id: int


class LeaseClosed(Header):
    """Slot -> dispatcher: every direct attempt it took under this closed lease is done."""

    lease_id: int


class DirectRun(Header):
    """Client -> slot, on the slot's direct endpoint."""

    lease_id: int
    attempt: RunSpec
    token: bytes = b""  # the lease's (see LeaseGranted)


class DirectDone(Header):
    """Slot -> client, on the direct endpoint: a direct attempt's outcome. ``refused``: the
    lease is not open there (the client sends the task through the dispatcher instead)."""

    result: AttemptResult
    refused: bool = False


class ClientBye(Header):
    """The client shuts down: its queued tasks are dropped."""


class StatusRequest(Header):
    pass


class StatusReply(Header):
    # The scheduler's own snapshot type (a frozen dataclass): msgspec encodes each as a map of
    # its fields, in their order, so the wire stays the same as when this was a struct here.
    workers: list[WorkerSnapshot]
    queued: int
    running: int
    finished: int
    failed: int
    cancelled: int
    retried: int
    discarded_late_results: int
    protocol_errors: int


# ------------------------------------------------------------------- dispatcher <-> worker


class Heartbeat(Header):
    """Sent by the worker's heartbeat thread on its own socket, so it names its worker; with
    the CPU seconds and resident memory of its processes (it and its slots) for the metrics
    (trailing fields with defaults: a heartbeat without them still decodes)."""

    worker: bytes
    cpu_seconds: float = 0.0
    rss_bytes: int = 0


class Reregister(Header):
    """The dispatcher does not know this worker (removed, or restarted): register again.

    ``epoch``: the dispatcher's incarnation. Another than the one that registered the worker
    means a restart: what the slots hold was not re-queued anywhere, so they keep it and
    report it (see AttemptResult.owner); the same one means the worker was removed (its
    attempts were re-queued elsewhere) and its slots are replaced."""

    epoch: str = ""


class RunSpec(msgspec.Struct, array_like=True):
    attempt_id: int
    kind: int
    fn: Blob
    args: Blob
    priority: int = 0  # the worker runs what it holds highest priority first
    # The task this attempt is for (its client's identity and id), echoed in the result: a
    # dispatcher started after this attempt was sent knows the task by them, not the attempt.
    owner: bytes = b""
    task_id: int = -1


class Run(Header):
    attempts: list[RunSpec]


class Kill(Header):
    """Cancel these attempts. Sent to the slot holding them (it skips those it has not started
    and reports them ``cancelled``) and, to force-cancel, to its worker too (it kills the slot
    process if one of them is running)."""

    attempt_ids: list[int]
    sync: int = 0  # the answer to a Done with this ``sync``: every Kill sent before it is read


class SlotHello(Header):
    """A slot process's first message on its own socket (repeated until welcomed)."""

    version: int
    worker: bytes  # the identity of the worker that started it
    direct: str = ""  # its direct endpoint, for lease holders ("": none)


class SlotWelcome(Header):
    """Reply to :class:`SlotHello`: the dispatcher can route to this slot now."""


class SlotReady(Header):
    """Worker -> dispatcher: a new slot process (replacing a lost one) is welcomed."""

    slot: bytes


class ReplaceSlot(Header):
    """Dispatcher -> worker: this slot cannot be reached; its attempts went back to the queue.
    Kill it and start another (announced with :class:`SlotReady` as usual)."""

    slot: bytes


class SlotLost(Header):
    """Worker -> dispatcher: this slot process is gone (died, or killed by the worker).

    ``running`` is the attempt it was running (0: none); its outcome is ``status``, with
    ``error``. Attempts queued on the slot and not started go back to the dispatcher's queue.
    """

    slot: bytes
    running: int
    status: Status
    error: str = ""


class AttemptResult(msgspec.Struct, array_like=True):
    attempt_id: int
    status: Status
    value: Blob | None = None
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0  # how long the task ran on its slot (the dispatcher sizes prefetch)
    owner: bytes = b""  # its RunSpec's (see there)
    task_id: int = -1


class Done(Header):
    results: list[AttemptResult]
    # Direct attempts finished since the last Done, and those cancelled before they started.
    direct_finished: int = 0
    direct_cancelled: int = 0
    # Attempts that have been running for a while (about a millisecond): until then a task can
    # still be cancelled without running. One that ends sooner is known started by its result.
    started: list[int] = []
    # Not 0: answer with Kill([], sync) once handled. Behind an attempt reported started, the
    # dispatcher counts those cancelled whose Kill it sent (cancel() is True at once); the
    # slot reads messages only between tasks, so that Kill may still be on its way when the
    # task ends. Kills travel in order: the answer comes after every one sent before.
    sync: int = 0


class Drain(Header):
    """The worker is draining (SIGTERM): place nothing new on it."""


class Goodbye(Header):
    """Worker -> dispatcher: deregister me. Dispatcher -> worker: drained, you may exit."""


# ------------------------------------------------------------------- admin -> dispatcher


class DrainWorker(Header):
    """Drain a worker as its SIGTERM would (nothing new is placed on it; once its slots are
    idle it is released and exits). ``worker``: its name, or its identity in hex."""

    worker: str


class CancelTasksOf(Header):
    """Cancel the tasks of every client connected with the key named ``key`` (its name in the
    dispatcher's keys directory): those of ``task_ids``, or all of them if empty; ``force``
    kills running ones too (as ``Cancel``)."""

    key: str
    task_ids: list[int] = []
    force: bool = False


class AdminReply(Header):
    """What an admin's request did: ``count`` workers drained or tasks cancelled; ``found``:
    whether it named a worker or a connected key this dispatcher knows (``detail`` says)."""

    found: bool
    count: int
    detail: str


# ------------------------------------------------------------------- dataflow jobs


class JobInfo(msgspec.Struct, array_like=True):
    """A dataflow job as its job master announces it (``pydispatch jobs`` lists these)."""

    job_id: str
    name: str
    state: str  # CREATED, RUNNING, RESTARTING, FINISHED, FAILED, CANCELED
    endpoint: str  # the job master's control socket: where a cancel request goes
    attempt: int
    slices: int
    # Set by the dispatcher, never taken from a master: who submitted the job (name and public
    # key; "" without keys) and the job's own public key (its master serves with it).
    owner: str = ""
    owner_key: str = ""
    key: str = ""


class JobUpdate(Header):
    """Client -> dispatcher: a job master announces its job and each change of state."""

    job: JobInfo
    # The master's token (see JobHostReport): a restarted dispatcher ignores what the masters
    # of its predecessor say ("": a master it did not start, e.g. in the application).
    token: str = ""


class JobsRequest(Header):
    """Anyone -> dispatcher: which dataflow jobs do you know of?"""


class JobsReply(Header):
    jobs: list[JobInfo]


class SubmitJob(Header):
    """Anyone -> dispatcher: host this job in a job-master process (``runtime.job_masters``).

    ``payload`` is the cloudpickled job (its graph, options and original operator ids) in
    frames after the header; the dispatcher checks only that the blob fits its frames and
    hands them to the job's process. Answered with :class:`JobAccepted` once the job is
    planned and deployed, or an :class:`Error` (``code`` "unfit" for a job that can never fit
    the cluster, "invalid" for one that cannot be loaded or planned)."""

    name: str
    priority: int
    payload: Blob


class JobAccepted(Header):
    """Dispatcher -> submitter: the job runs; its master serves requests at ``endpoint``."""

    job_id: str
    endpoint: str
    key: str = ""  # with keys: the job's public key (its master's control socket's)


class JobPayloadRequest(Header):
    """Job-master process -> dispatcher: the job it was started for (answered with
    :class:`JobPayload`); ``token`` is the secret it was started with."""

    job_id: str
    token: str


class JobPayload(Header):
    name: str
    priority: int
    payload: Blob
    # The dispatcher keeps the job in a store: a master stopped with its dispatcher hands
    # the job over to the next one on that store (no FAILED outcome; see master_process).
    durable: bool = False


class JobHostReport(Header):
    """Job-master process -> dispatcher: the job is deployed (``endpoint``), or refused
    (``code`` and ``error``: forwarded to the submitter as an :class:`Error`)."""

    job_id: str
    token: str
    endpoint: str = ""
    code: str = ""
    error: str = ""


class JobOutcome(Header):
    """Job-master process -> dispatcher: its finished job's outcome (``reply``: the encoded
    ``job_plane.JobResultReply`` header, its frames after it), kept in the job store for
    ``keep_for`` seconds (the job's result retention), so that a handle still gets it after
    the master, or the dispatcher, is gone. Answered with :class:`JobOutcomeReply` (empty)."""

    job_id: str
    token: str
    keep_for: float
    reply: bytes


class JobOutcomeRequest(Header):
    """A handle -> dispatcher: the kept outcome of a job whose master has exited."""

    job_id: str


class JobOutcomeReply(Header):
    """``reply``: a ``job_plane.JobResultReply`` header (frames after it); b"": none kept."""

    reply: bytes = b""


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
    | LeaseGranted
    | LeaseEnded
    | KillDirect
    | ReturnLease
    | LeaseOpen
    | LeaseClose
    | LeaseClosed
    | DirectRun
    | DirectDone
    | ClientBye
    | StatusRequest
    | StatusReply
    | Heartbeat
    | Reregister
    | Run
    | Kill
    | SlotHello
    | SlotWelcome
    | SlotReady
    | SlotLost
    | ReplaceSlot
    | Done
    | Drain
    | Goodbye
    | DrainWorker
    | CancelTasksOf
    | AdminReply
    | JobUpdate
    | JobsRequest
    | JobsReply
    | SubmitJob
    | JobAccepted
    | JobPayloadRequest
    | JobPayload
    | JobHostReport
    | JobOutcome
    | JobOutcomeRequest
    | JobOutcomeReply
)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: Header) -> bytes:
    """One header of any plane: :data:`Message`, ``job_plane.JobMessage`` or
    ``data_plane.DataMessage``."""
    return _encoder.encode(message)


def decode_with(decoder: msgspec.msgpack.Decoder[Any], data: bytes | memoryview) -> Any:
    """Decode one header with a plane's decoder; malformed input raises :class:`ProtocolError`."""
    try:
        return decoder.decode(data)
    # msgspec raises UnicodeDecodeError (a ValueError) for invalid UTF-8 in a tag or string.
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError) as error:
        raise ProtocolError(f"malformed header: {error}") from None


def decode(data: bytes | memoryview) -> Message:
    """Decode one header; any malformed input raises :class:`ProtocolError`, never crashes."""
    return cast(Message, decode_with(_decoder, data))


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
