"""Framing over pyzmq, kept apart from any logic.

A message is ``[identity..., b"", header, *frames]``: ROUTER sockets see the identity, DEALER
sockets do not. Python objects are pickled (cloudpickle, protocol 5) into one frame each, with
every large buffer they contain (numpy arrays) taken out of band into its own raw frame and sent
with ``copy=False``: the array's memory goes from the user's array to the socket without being
copied into a pickle stream, and on the receiving side the array is rebuilt over the received
frame's memory (writable, no copy).

Code travels (:func:`travels_by_value`): functions and classes of the user's own modules (a file
under the client's working directory, not in site-packages, the standard library or pydispatch)
are pickled by value, as ``__main__``'s are, because a worker started elsewhere cannot import
them; a worker that still meets a module it cannot import says which, where, and what to do
(:class:`ModuleNotImportable`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import marshal
import os
import pickle
import sys
import time
import types
from collections import ChainMap
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Final, TypeAlias

import cloudpickle
import zmq

from .data_plane import BatchData, Column, DataMessage, Watermark, decode_data
from .job_plane import JobMessage, decode_job
from .protocol import (
    INLINE,
    NOT_LEADER,
    Blob,
    BufferMeta,
    Error,
    Message,
    ProtocolError,
    StatusRequest,
    check_blob,
    decode,
    encode,
)
from .security import Keys, connect_curve, resolve_keys

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "INLINE_LIMIT",
    "FrameLike",
    "ModuleNotImportable",
    "Socket",
    "ask",
    "batch_from",
    "batch_message",
    "dumps",
    "find_leader",
    "frame_sizes",
    "keep_by_reference",
    "loads",
    "make_socket",
    "parse",
    "parse_data",
    "parse_job",
    "parse_job_reply",
    "rebase",
    "receive_pending",
    "recv",
    "recv_parts",
    "request",
    "send",
    "split_addresses",
    "split_envelope",
    "travels_by_value",
    "watermark_from",
    "watermark_message",
]

log = logging.getLogger(__name__)

# Large enough for real payloads; small enough that a garbage length prefix cannot make a peer
# allocate gigabytes. Every socket gets it as ZMQ_MAXMSGSIZE: a peer that sends more is
# disconnected by libzmq before the message reaches Python.
DEFAULT_MAX_MESSAGE_SIZE: Final = 512 * 1024 * 1024

# Buffers smaller than this stay inside the pickle stream: a frame of its own costs more than
# copying a few kilobytes.
_INBAND_LIMIT: Final = 4096

# Pickle streams up to this size go inline in the header by default (see protocol.Blob).
INLINE_LIMIT: Final = 8192

FrameLike: TypeAlias = zmq.Frame | bytes | memoryview
Socket: TypeAlias = "zmq.Socket[Any]"


def make_socket(
    context: zmq.Context[Any],
    socket_type: int,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    identity: bytes | None = None,
) -> Socket:
    """A socket with the limits every pydispatch socket shares."""
    sock: Socket = context.socket(socket_type)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_size)
    sock.setsockopt(zmq.LINGER, 0)
    # No high-water mark: ROUTER sockets silently drop messages to a peer over its HWM, and a
    # dropped result would leave a future unresolved forever. Memory is bounded by the work
    # the clients submitted, which they hold anyway.
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    if socket_type == zmq.ROUTER:
        # Sending to a vanished peer raises EHOSTUNREACH instead of disappearing silently.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    return sock


_MORE: Final = int(zmq.SNDMORE)  # plain ints: pyzmq's flag enums cost a call per operation
_NOBLOCK: Final = int(zmq.NOBLOCK)


def send(
    sock: Socket,
    message: Message | JobMessage | DataMessage,
    frames: Sequence[FrameLike] = (),
    identity: bytes | None = None,
    noblock: bool = False,
) -> None:
    """Send ``message`` and its ``frames``; with ``noblock``, raise zmq.Again (having queued
    nothing) if the socket cannot take it now."""
    # Frame by frame rather than send_multipart, whose per-message type check and flag
    # arithmetic cost more than the sends (3.3-4.6 us against 1.2 us a message, measured).
    # The header is encoded before anything is queued: a frame left on the socket would be
    # glued to the next message. Every frame is bytes, a zmq.Frame or a memoryview of a pickle
    # buffer (dumps makes them), so no send fails half way for a bad frame, and a ROUTER
    # refuses an unknown peer (EHOSTUNREACH) on the identity frame, before anything is queued.
    # (A signal's exception raised between two frames would still leave a partial message.)
    header = encode(message)
    first = _MORE | _NOBLOCK if noblock else _MORE  # the rest of a message never blocks
    if identity is not None:
        sock.send(identity, first)
        first = _MORE
    sock.send(b"", first)
    if not frames:
        sock.send(header, 0)
        return
    sock.send(header, _MORE)
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        # copy=False: pyzmq still copies frames under its copy threshold, so small ones stay
        # cheap and large buffers go out zero-copy.
        sock.send(frame, 0 if i == last else _MORE, copy=False)


def recv_parts(sock: Socket, flags: int = 0) -> list[zmq.Frame]:
    """One whole multipart message, without copies (raises zmq.Again with ``NOBLOCK``).

    Like ``recv_multipart(copy=False)`` at half its cost: it reads each frame's "more" flag
    instead of asking the socket for RCVMORE."""
    part = sock.recv(flags, copy=False)
    parts = [part]
    while part.more:  # the rest of a message arrives with its first frame: never blocks
        part = sock.recv(0, copy=False)
        parts.append(part)
    return parts


def split_envelope(parts: list[zmq.Frame], routed: bool) -> tuple[bytes, list[zmq.Frame]]:
    """Return ``(identity, [header, *frames])``; raise ProtocolError on a bad envelope."""
    identity = parts[0].bytes if routed else b""
    body = parts[1:] if routed else parts
    if len(body) < 2 or len(body[0]) != 0:
        raise ProtocolError("expected an empty delimiter frame followed by a header frame")
    return identity, body[1:]


def parse(body: list[zmq.Frame]) -> tuple[Message, list[zmq.Frame]]:
    """Decode the header of ``[header, *frames]``; the frames are returned untouched."""
    return decode(body[0].buffer), body[1:]


def parse_job(body: list[zmq.Frame]) -> JobMessage:
    """Decode a job plane control message ``[header]`` (it never carries frames)."""
    if len(body) != 1:
        raise ProtocolError(f"a job control message is one header frame, got {len(body)} frames")
    return decode_job(body[0].buffer)


def parse_job_reply(body: list[zmq.Frame]) -> tuple[JobMessage, list[zmq.Frame]]:
    """Decode a job master's answer to a job's handle ``[header, *frames]`` (a result's
    pickled records follow its header); the frames are untouched."""
    return decode_job(body[0].buffer), body[1:]


def parse_data(body: list[zmq.Frame]) -> tuple[DataMessage, list[zmq.Frame]]:
    """Decode a job plane data message ``[header, *frames]``; the frames are untouched."""
    return decode_data(body[0].buffer), body[1:]


def recv(sock: Socket, routed: bool) -> tuple[bytes, Message, list[zmq.Frame]]:
    parts = recv_parts(sock)
    identity, body = split_envelope(parts, routed)
    message, frames = parse(body)
    return identity, message, frames


# ------------------------------------------------------------------------- object payloads


def receive_pending(sock: Socket, peer: str) -> Iterator[tuple[Message, list[zmq.Frame]]]:
    """Every message already waiting on a DEALER socket, parsed, without blocking. A malformed
    one is logged (naming ``peer``) and dropped: a bad message must not stop the receiver."""
    while True:
        try:
            parts = recv_parts(sock, _NOBLOCK)
        except zmq.Again:
            return
        try:
            _, body = split_envelope(parts, routed=False)
            message, frames = parse(body)
        except ProtocolError as error:
            log.error("dropped a malformed message from %s: %s", peer, error)
            continue
        yield message, frames


def _out_of_band(
    buffers: Sequence[pickle.PickleBuffer], frames: list[FrameLike]
) -> tuple[BufferMeta, ...]:
    """Append each out-of-band buffer to ``frames`` as a raw frame; describe where it went."""
    metas = []
    for buffer in buffers:
        view = memoryview(buffer)
        raw = buffer.raw()
        metas.append(BufferMeta(len(frames), raw.nbytes, view.format, tuple(view.shape or ())))
        frames.append(raw)
    return tuple(metas)


def request(
    address: str, message: Message, timeout: float = 5.0, keys: str | Keys | None = None
) -> Message:
    """One question to a dispatcher without becoming its client: connect a DEALER, send
    ``message``, wait up to ``timeout`` seconds for the answer, close (for CLI look-ups)."""
    return ask(address, message, (), timeout, keys)[0]


def ask(
    address: str,
    message: Message,
    frames: Sequence[FrameLike] = (),
    timeout: float = 5.0,
    keys: str | Keys | None = None,
) -> tuple[Message, list[zmq.Frame]]:
    """:func:`request` with frames both ways (a job's payload to the dispatcher and back to
    the job's process). The answer's frames stay valid after the socket is closed. ``keys``:
    see ``security.resolve_keys`` (by default, those the environment names).

    ``address`` may list standby dispatchers (``tcp://h1:5555,tcp://h2:5555``): the one that
    leads is asked (:func:`find_leader`); a standby asked alone names the leader, which is
    then asked instead (a standby acts on nothing, so nothing is done twice)."""
    addresses = split_addresses(address)
    target = addresses[0] if len(addresses) == 1 else find_leader(addresses, keys, timeout)
    reply = _ask_one(target, message, frames, timeout, keys)
    if isinstance(reply[0], Error) and reply[0].code == NOT_LEADER and reply[0].message:
        reply = _ask_one(reply[0].message, message, frames, timeout, keys)
    return reply


def split_addresses(address: str) -> list[str]:
    """``"tcp://h1:5555,tcp://h2:5555"``: the dispatchers it lists, in order (ValueError if
    it lists none)."""
    addresses = [part.strip() for part in address.split(",") if part.strip()]
    if not addresses:
        raise ValueError(f"{address!r} names no dispatcher address")
    return addresses


def find_leader(
    addresses: Sequence[str], keys: str | Keys | None = None, timeout: float = 5.0
) -> str:
    """The address among ``addresses`` (and the leaders standbys name) of the dispatcher that
    leads: the one that answers a status request itself (a standby answers only with
    ``Error(NOT_LEADER, leader)``). Asked in turn, each for a share of
    ``timeout``, round after round until it passes (TimeoutError)."""
    deadline = time.monotonic() + timeout
    each = max(0.2, min(1.0, timeout / max(1, len(addresses))))
    candidates = list(addresses)
    while True:
        for candidate in list(candidates):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no dispatcher among {', '.join(candidates)} answered as the leader "
                    f"within {timeout:g} s"
                )
            try:
                reply, _ = _ask_one(candidate, StatusRequest(), (), min(each, left), keys)
            except (TimeoutError, zmq.ZMQError):
                continue
            if not (isinstance(reply, Error) and reply.code == NOT_LEADER):
                return candidate  # (a refusal too: standbys answer nothing but NOT_LEADER)
            named = reply.message
            if named and named not in candidates:  # a leader we were not told of
                candidates.append(named)


def _ask_one(
    address: str,
    message: Message,
    frames: Sequence[FrameLike],
    timeout: float,
    keys: str | Keys | None,
) -> tuple[Message, list[zmq.Frame]]:
    credentials = resolve_keys(keys)
    context: zmq.Context[Any] = zmq.Context()
    sock = make_socket(context, zmq.DEALER)
    try:
        if credentials is not None:
            connect_curve(sock, credentials.public, credentials.secret, credentials.server)
        sock.connect(address)
        send(sock, message, frames)
        if not sock.poll(int(timeout * 1000)):
            why = f" (or it refused the key of {credentials.name!r})" if credentials else ""
            raise TimeoutError(f"no dispatcher answered at {address} within {timeout} s{why}")
        _, body = split_envelope(recv_parts(sock), routed=False)
        return parse(body)
    finally:
        sock.close(linger=0)
        context.term()


def _reduce_code(code: types.CodeType) -> tuple[Any, tuple[Any, ...]]:
    """A code object as ``marshal`` writes it (as in a ``.pyc``): file name and line numbers
    included, so that a remote traceback names the user's file, line and source line. Since
    3.1.3, cloudpickle names every by-value function's file ``<dynamic-code>``. Client and
    workers run the same Python version, as cloudpickle's by-value functions require anyway."""
    try:
        return marshal.loads, (marshal.dumps(code),)
    except ValueError:  # a hand-made code object holding an unmarshallable constant
        reduced: tuple[Any, tuple[Any, ...]] = _CLOUDPICKLE_CODE_REDUCE(code)
        return reduced


_CLOUDPICKLE_CODE_REDUCE: Final = cloudpickle.Pickler.dispatch_table[types.CodeType]


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle's pickler, with code objects that keep their file name, and the user's own
    modules pickled by value (see :func:`travels_by_value`)."""

    dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
        {types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chosen: set[str] = set()  # modules registered here whose code this pickle holds

    def reducer_override(self, obj: Any) -> Any:
        # Functions and classes only: they are what a pickle names by module (an instance
        # names its class, which comes here in turn).
        if type(obj) is types.FunctionType or isinstance(obj, type):
            name = getattr(obj, "__module__", None)
            if type(name) is str:
                if name not in _BY_VALUE:
                    travels_by_value(name)
                if name in _REGISTERED:
                    self.chosen.add(name)
        return super().reducer_override(obj)


# Module name -> whether it is pickled by value (decided once per module).
_BY_VALUE: dict[str, bool] = {"__main__": False, "builtins": False}
_REGISTERED: set[str] = set()  # those registered here (not by the user's own call)


@functools.cache
def _installed_roots() -> tuple[str, ...]:
    """Where installed code lives: a module under one of these is importable on workers that
    run the same environment (or it is not the user's to ship)."""
    # Imported when first needed: most processes (the dispatcher, slots) never need them.
    import site
    import sysconfig

    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    roots.add(site.getusersitepackages())
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # pydispatch
    return tuple(os.path.join(os.path.realpath(root), "") for root in roots if root)


def travels_by_value(module_name: str) -> bool:
    """Whether functions and classes of ``module_name`` are pickled by value, registering the
    module with ``cloudpickle.register_pickle_by_value`` the first time it qualifies: its file
    is under the current working directory and not under site-packages, the standard library
    or pydispatch. Such a module is the user's own code (``mymod.py`` beside the script), which
    workers started elsewhere cannot import; pickled by reference, a task using it would fail
    there with ``ModuleNotFoundError``. Any other module travels by value once registered by
    hand: ``cloudpickle.register_pickle_by_value(module)``."""
    decided = _BY_VALUE.get(module_name)
    if decided is not None:
        return decided
    if module_name.partition(".")[0] == "pydispatch":  # (an editable install is under a cwd)
        _BY_VALUE[module_name] = False
        return False
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    by_value = False
    if module is not None and isinstance(file, str):
        path = os.path.realpath(file)
        here = os.path.join(os.path.realpath(os.getcwd()), "")
        if path.startswith(here) and not path.startswith(_installed_roots()):
            if module_name not in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.register_pickle_by_value(module)
                _REGISTERED.add(module_name)
            by_value = True
    _BY_VALUE[module_name] = by_value
    return by_value


class ModuleNotImportable(ModuleNotFoundError):  # noqa: N818 - a ModuleNotFoundError, named
    """An object pickled by reference to a module this process cannot import (a worker
    unpickling a task's function or arguments, typically); the message says how to make the
    module travel. A ``ModuleNotFoundError``, so that code catching that still does."""


def _cloudpickle(obj: object, buffer_callback: Any, buffers: list[Any]) -> bytes:
    """``obj`` pickled (out-of-band buffers through ``buffer_callback`` into ``buffers``)."""
    while True:
        with io.BytesIO() as file:
            pickler = _Pickler(file, protocol=5, buffer_callback=buffer_callback)
            try:
                pickler.dump(obj)
                return file.getvalue()
            except Exception:
                # A module of the user's whose code cannot go by value (a function refers to
                # a lock or a socket at module level) goes by reference, as before it was
                # chosen: fine wherever the workers can import it, else their error says how
                # to make it travel.
                if not pickler.chosen:
                    raise
                _by_reference_again(pickler.chosen)
                buffers.clear()


def keep_by_reference(module_name: str) -> None:
    """Pickle ``module_name``'s functions and classes by reference from now on, whatever
    :func:`travels_by_value` would choose: for code that must share its module's state with
    the process running it (a slot run in this process, in a test)."""
    _by_reference_again({module_name})
    _BY_VALUE[module_name] = False


def _by_reference_again(names: set[str]) -> None:
    """Unregister modules :func:`travels_by_value` registered (never those the user did)."""
    for name in names & _REGISTERED:
        _REGISTERED.discard(name)
        _BY_VALUE[name] = False
        module = sys.modules.get(name)
        if module is not None:
            with contextlib.suppress(ValueError):
                cloudpickle.unregister_pickle_by_value(module)


def dumps(obj: object, frames: list[FrameLike], inline_limit: int = INLINE_LIMIT) -> Blob:
    """Pickle ``obj`` and return the blob that locates it; frames it needs are appended.

    ``inline_limit=0`` forces a frame of its own even for a small stream, so that the same
    frame object can be shared by many blobs (a function used by thousands of tasks).
    """
    if _is_plain(obj, 2):
        # Builtins only: the C pickler is exact and much cheaper than building a CloudPickler.
        data = pickle.dumps(obj, protocol=5)
        if len(data) <= inline_limit:
            return Blob(INLINE, (), data)
        frames.append(data)
        return Blob(len(frames) - 1)
    buffers: list[pickle.PickleBuffer] = []

    def take_out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            size = buffer.raw().nbytes
        except BufferError:  # not contiguous: let pickle copy it in band
            return True
        if size < _INBAND_LIMIT:
            return True
        buffers.append(buffer)
        return False  # false means: out of band

    data = _cloudpickle(obj, take_out_of_band, buffers)
    inline = len(data) <= inline_limit
    first = INLINE if inline else len(frames)
    if not inline:
        frames.append(data)
    metas = _out_of_band(buffers, frames)
    return Blob(first, metas, data if inline else b"")


_ATOMS: Final = frozenset({int, float, str, bytes, bool, type(None)})


def _is_plain(obj: object, depth: int) -> bool:
    """Whether ``obj`` is builtin scalars in small builtin containers (cheap to check).

    Plain loops, no generators: this runs for every submitted task and every result.
    """
    kind = type(obj)
    if kind in _ATOMS:
        return True
    if depth == 0:
        return False
    if kind is tuple or kind is list:
        items: Any = obj
        if len(items) > 16:
            return False
        for item in items:
            if type(item) not in _ATOMS and not _is_plain(item, depth - 1):
                return False
        return True
    if kind is dict:
        mapping: Any = obj
        if len(mapping) > 16:
            return False
        for key, value in mapping.items():
            if type(key) is not str:
                return False
            if type(value) not in _ATOMS and not _is_plain(value, depth - 1):
                return False
        return True
    return False


def loads(blob: Blob, frames: Sequence[zmq.Frame]) -> Any:
    """Unpickle a blob; arrays are rebuilt over the received frames' memory (no copy)."""
    check_blob(blob, [len(frame) for frame in frames])
    stream = blob.data if blob.frame == INLINE else frames[blob.frame].buffer
    try:
        return pickle.loads(stream, buffers=[frames[meta.frame].buffer for meta in blob.buffers])
    except ModuleNotFoundError as error:
        if isinstance(error, ModuleNotImportable) or not error.name:
            raise
        raise _not_importable(error.name) from error


def _not_importable(name: str) -> ModuleNotImportable:
    import socket

    where = f"process {os.getpid()} on {socket.gethostname()}"
    top = name.partition(".")[0]
    return ModuleNotImportable(
        f"module {name!r} is not importable on this worker ({where}): a function, class or "
        f"object of it was pickled by reference. To make it travel, keep its file under the "
        f"submitting process's working directory (such modules are pickled by value), or "
        f"call cloudpickle.register_pickle_by_value({top}) there before submitting, or "
        f"install it where the workers run",
        name=name,
    )


def rebase(
    blob: Blob,
    frames_in: Sequence[FrameLike],
    frames_out: list[FrameLike],
    placed: dict[int, int] | None = None,
) -> Blob:
    """Copy the frame *references* of ``blob`` into ``frames_out`` and renumber it.

    ``placed`` maps ``id(frame)`` to its index in ``frames_out`` so that a frame shared by many
    blobs (one function for a whole batch of tasks) is sent once per message.
    """
    if blob.frame == INLINE and not blob.buffers:
        return blob  # nothing outside the header: the common case for small tasks
    memo: dict[int, int] = {} if placed is None else placed
    first = _place(blob.frame, frames_in, frames_out, memo)
    if not blob.buffers:  # a function: one frame, no arrays (the other common case)
        return blob if first == blob.frame else Blob(first, (), blob.data)
    return Blob(
        first,
        tuple(
            BufferMeta(
                _place(meta.frame, frames_in, frames_out, memo),
                meta.nbytes,
                meta.format,
                meta.shape,
            )
            for meta in blob.buffers
        ),
        blob.data,
    )


def _place(
    index: int, frames_in: Sequence[FrameLike], frames_out: list[FrameLike], memo: dict[int, int]
) -> int:
    """Where frame ``index`` of ``frames_in`` is in ``frames_out``, appending it the first time."""
    if index == INLINE:
        return INLINE
    frame = frames_in[index]
    where = memo.get(id(frame))
    if where is None:
        where = memo[id(frame)] = len(frames_out)
        frames_out.append(frame)
    return where


def frame_sizes(frames: Sequence[FrameLike]) -> list[int]:
    return [len(frame) if not isinstance(frame, memoryview) else frame.nbytes for frame in frames]


# ------------------------------------------------------------------ dataflow batches


def _pickle_data(obj: object, frames: list[FrameLike]) -> Blob:
    """Pickle user data (a batch of records, a watermark of a user's type) into ``frames``.

    The C pickler first: records are plain data far more often than not, and it is several
    times cheaper than cloudpickle's on a 4096-record list; cloudpickle for lambdas and
    classes of ``__main__``. Large buffers go out of band either way."""
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    except (pickle.PicklingError, AttributeError, TypeError):
        buffers = []
        data = _cloudpickle(obj, buffers.append, buffers)
    frames.append(data)
    metas = _out_of_band(buffers, frames)
    return Blob(0, metas)


def _raw_column(column: object) -> bool:
    import numpy as np  # only the dataflow plane needs numpy: dispatchers and slots start without

    return (
        isinstance(column, np.ndarray)
        and not column.dtype.hasobject
        and column.dtype.fields is None
        and column.dtype.subdtype is None
    )


def batch_message(edge: int, batch: Any) -> tuple[BatchData, list[FrameLike]]:
    """The header and frames of a batch on ``edge``: a columnar batch of plain numpy columns
    as raw frames (no copy when contiguous); records, or object columns, pickled."""
    frames: list[FrameLike] = []
    if isinstance(batch, dict) and all(_raw_column(c) for c in batch.values()):
        import numpy as np

        columns = []
        for name, column in batch.items():
            array = np.ascontiguousarray(column)
            # A byte view, not memoryview(array): the buffer protocol refuses datetime64.
            frames.append(array.reshape(-1).view(np.uint8).data if array.size else b"")
            columns.append(
                Column(name, array.dtype.str, array.shape, len(frames) - 1, array.nbytes)
            )
        return BatchData(edge, "columns", columns), frames
    return BatchData(edge, "pickled", pickled=_pickle_data(batch, frames)), frames


def batch_from(message: BatchData, frames: Sequence[zmq.Frame]) -> Any:
    """The batch a :class:`BatchData` describes; columns are rebuilt over the frames (no copy).
    A header that disagrees with its frames raises :class:`ProtocolError`."""
    if message.kind == "pickled":
        if message.pickled is None:
            raise ProtocolError("a pickled batch without its blob")
        return loads(message.pickled, frames)
    import numpy as np

    batch: dict[str, np.ndarray[Any, Any]] = {}
    for column in message.columns:
        if not 0 <= column.frame < len(frames):
            raise ProtocolError(f"column {column.name!r} refers to frame {column.frame}")
        try:
            dtype = np.dtype(column.dtype)
        except (TypeError, ValueError):
            raise ProtocolError(f"column {column.name!r} has dtype {column.dtype!r}") from None
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise ProtocolError(f"column {column.name!r} has dtype {column.dtype!r}")
        count = 1
        for extent in column.shape:
            if extent < 0:
                raise ProtocolError(f"column {column.name!r} has shape {column.shape}")
            count *= extent
        size = len(frames[column.frame])
        if size != column.nbytes or size != count * dtype.itemsize:
            raise ProtocolError(
                f"column {column.name!r}: frame of {size} bytes, header says {column.nbytes} "
                f"for shape {column.shape} of {dtype.str}"
            )
        array = np.frombuffer(frames[column.frame].buffer, dtype) if size else np.empty(0, dtype)
        batch[column.name] = array.reshape(column.shape)
    return batch


def watermark_message(edge: int, mark: Any) -> tuple[Watermark, list[FrameLike]]:
    """A watermark: a plain int or float in the header, anything else pickled in a frame."""
    if (type(mark) is int and -(2**63) <= mark < 2**63) or type(mark) is float:
        return Watermark(edge, mark), []
    frames: list[FrameLike] = []
    return Watermark(edge, pickled=_pickle_data(mark, frames)), frames


def watermark_from(message: Watermark, frames: Sequence[zmq.Frame]) -> Any:
    return message.mark if message.pickled is None else loads(message.pickled, frames)
