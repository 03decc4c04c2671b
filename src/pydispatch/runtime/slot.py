"""A worker slot: a subprocess that runs one task at a time, talking to the dispatcher itself.

Each slot is its own process so that a running task can be force-cancelled (its worker kills
the slot with SIGKILL and starts a fresh one) and so that a task that crashes its interpreter
takes only its slot down. It has its own DEALER socket to the dispatcher: tasks (``Run``) come
straight from the dispatcher and results (``Done``) go straight back, so the worker process is
not on the data path (it registers, heartbeats and supervises).

What the worker needs to know of a slot it reads from a small shared file (:class:`SlotState`),
not from messages: whether the slot is welcomed by the dispatcher, and which attempt it is
running. That is what lets the worker kill the right slot for a force-cancel and say which
attempt a dead slot took down.

A slot may also have a direct endpoint (a ROUTER it binds): clients holding a lease on it (see
``leases``) send it their lone tasks (``DirectRun``) and get the outcome (``DirectDone``) from
it, without the dispatcher in between. Direct attempts join the same queue, by priority; the
dispatcher opens and closes leases (``LeaseOpen``/``LeaseClose``), and a ``DirectRun`` under a
lease that is not open is refused (the client then sends the task through the dispatcher).

Run as ``python -m pydispatch.runtime.slot ADDRESS WORKER_ID SLOT_ID STATE_PATH WORKER_PID
MAX_MESSAGE_SIZE [DIRECT_BIND]`` (identities in hex).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import mmap
import os
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Final

import zmq

from ..errors import RemoteError
from ..wire import protocol as p
from ..wire.addresses import ADVERTISE_ENV, advertised
from ..wire.security import Gate, connect_curve, peer_key, resolve_keys, serve_curve
from ..wire.transport import (
    FrameLike,
    dumps,
    loads,
    make_socket,
    parse,
    rebase,
    receive_pending,
    recv_parts,
    send,
    split_envelope,
)
from .memory import collect_less_often, keep_large_buffers
from .reconnect import spread_reconnects

__all__ = ["EXIT_REFUSED", "SlotState", "main"]

log = logging.getLogger(__name__)

_HELLO_EVERY: Final = 0.5  # seconds between SlotHello messages until one is welcomed
EXIT_REFUSED: Final = 3  # exit code: the dispatcher refused the hello (protocol version)
# Result batching (see _Slot._run_next): a finished result may wait for the next task only if
# that task's function last ran in under _SHORT seconds, the oldest waiting result is younger
# than _HOLD_AT_MOST, and fewer than _BATCH results wait.
_SHORT: Final = 200e-6
_HOLD_AT_MOST: Final = 1e-3
_BATCH: Final = 64
# ...and half the queue is done (so that the dispatcher refills it while the rest runs) only
# once this many wait: every message wakes the dispatcher, and on a busy machine a wake-up
# costs more than a tiny task (3.4 results a message became about 8).
_HALF_AT_LEAST: Final = 8
_KEEP_FREE: Final = 64 << 20  # freed heap a slot keeps for the next large frames
# Direct attempts finished are counted to the dispatcher on the next Done, or after this long
# idle: never one message per lone task (each would wake the dispatcher during a round trip).
_COUNT_AFTER_MS: Final = 200
_STATE = struct.Struct("=qq")  # (welcomed: 0/1, running attempt id: 0 = none)
_DIRECT_QUEUE: Final = 1000  # messages queued per peer on the direct endpoint, at most
# How long a slot waits for the answer to its Done.sync before it goes on without it (its
# dispatcher is gone or cut off: its worker replaces this slot when it registers again).
_SYNC_WITHIN: Final = 10.0


class SlotState:
    """The slot's state, shared with its worker through a memory-mapped 16-byte file.

    One writer (the slot), one reader (the worker). Each field is an aligned 8-byte word, so
    a read never sees half a write.
    """

    def __init__(self, path: str, create: bool = False) -> None:
        if create:
            with open(path, "wb") as f:
                f.write(bytes(_STATE.size))
        with open(path, "r+b") as f:
            self._map = mmap.mmap(f.fileno(), _STATE.size)

    @property
    def welcomed(self) -> bool:
        return bool(struct.unpack_from("=q", self._map, 0)[0])

    @property
    def running(self) -> int:
        return int(struct.unpack_from("=q", self._map, 8)[0])

    def set_welcomed(self) -> None:
        struct.pack_into("=q", self._map, 0, 1)

    def set_running(self, attempt_id: int) -> None:
        struct.pack_into("=q", self._map, 8, attempt_id)

    def close(self) -> None:
        self._map.close()


def _watch_parent(worker_pid: int, state_path: str) -> None:
    # If the worker dies (even by SIGKILL) its slots must not outlive it, nor its files: the
    # last slot out removes the worker's directory.
    while True:
        time.sleep(0.25)
        if os.getppid() != worker_pid:
            for path in (state_path, state_path + ".direct"):  # (the ipc direct endpoint)
                with contextlib.suppress(OSError):
                    os.unlink(path)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(state_path))
            os._exit(1)


def _function_key(spec: p.RunSpec, frames: list[zmq.Frame]) -> bytes:
    if spec.fn.frame == p.INLINE:
        return spec.fn.data
    if 0 <= spec.fn.frame < len(frames):
        return frames[spec.fn.frame].bytes
    return b""  # malformed: loads() reports it


def _run_one(
    spec: p.RunSpec,
    frames: list[zmq.Frame],
    functions: dict[bytes, Callable[..., Any]],
    key: bytes,
) -> tuple[p.AttemptResult, list[FrameLike]]:
    out: list[FrameLike] = []
    try:
        fn = functions.get(key) if key else None
        if fn is None:
            if len(functions) > 256:
                functions.clear()
            fn = loads(spec.fn, frames)
            if key:
                functions[key] = fn
        args = loads(spec.args, frames)
        if spec.kind == p.KIND_MAP1:
            value: object = list(map(fn, args))  # the loop in C, as Pool.map's
        elif spec.kind == p.KIND_CHUNK:
            value = list(itertools.starmap(fn, args))
        else:
            positional, keywords = args
            value = fn(*positional, **keywords)
        ok = p.AttemptResult(spec.attempt_id, "ok", dumps(value, out))
        ok.owner, ok.task_id = spec.owner, spec.task_id  # (see RunSpec.owner)
        return ok, out
    except BaseException as exc:  # the task's failure, whatever it is, goes back to the client
        text = "".join(traceback.format_exception(exc))
        out = []
        try:
            blob = dumps(exc, out)
        except Exception:
            out = []
            blob = dumps(RemoteError(f"{type(exc).__name__}: {exc}"), out)
        error = f"{type(exc).__name__}: {exc}"
        raised = p.AttemptResult(spec.attempt_id, "error", blob, error, text)
        raised.owner, raised.task_id = spec.owner, spec.task_id
        return raised, out


def _reachable(endpoint: str) -> str:
    """What a client connects to: a wildcard bind is advertised at the worker's advertised
    host (its address toward the dispatcher), else under this host's name."""
    return advertised(endpoint, os.environ.get(ADVERTISE_ENV) or socket.gethostname())


def _lease_of(attempt_id: int) -> int:
    """The lease a direct attempt (negative id) was sent under (see protocol.LeaseGranted)."""
    return -attempt_id >> 32


# A queued attempt: (-priority, arrival, spec, frames, function key (see _function_key), the
# identity of the lease holder that sent it directly (b"": the dispatcher did)).
_Entry = tuple[int, int, p.RunSpec, list[zmq.Frame], bytes, bytes]


class _Slot:
    def __init__(
        self, sock: zmq.Socket[Any], state: SlotState, direct: zmq.Socket[Any] | None = None
    ) -> None:
        self._sock = sock
        self._state = state
        self._direct = direct  # used by the main thread only
        # Open leases (see LeaseOpen): id -> (token, the client key it is open to ("": any,
        # without keys)). Read by the ZAP thread too (a client key of an open lease connects).
        self._leases: dict[int, tuple[bytes, str]] = {}
        self.secure = False  # the direct endpoint is a CURVE server
        self._refused_keys: dict[str, None] = {}  # each logged once
        # Closed leases with direct attempts still to run: LeaseClosed goes once they are done.
        self._closing: set[int] = set()
        self._running_lease = 0  # the lease of the direct attempt being run (0: none)
        self._direct_finished = 0  # not counted to the dispatcher yet
        self._direct_cancelled = 0
        # Attempts received and not started, highest priority first (FIFO among equals).
        self._queue: list[_Entry] = []
        self._order = itertools.count()
        self._skip: set[int] = set()
        # After a task reported started, the next dispatcher attempt waits for the Kills sent
        # before the dispatcher read that task's result (see Done.sync): the last answered.
        self._sync_due = False
        self._syncs = itertools.count(1)
        self._synced = 0
        self._functions: dict[bytes, Callable[..., Any]] = {}
        self._durations: dict[bytes, float] = {}  # function key -> how long it last ran
        # Results not sent yet (see _run_next), and when the oldest of them was finished.
        # The lock is held around every use of the socket and of _held: the late flusher
        # thread sends held results while a task runs, when the main thread never touches
        # the socket (it polls it unlocked only when nothing is held).
        self._held: list[tuple[p.AttemptResult, list[FrameLike]]] = []
        self._held_since = 0.0
        self._lock = threading.Lock()
        # The dispatcher's attempt being run (0: none or a direct one), since when, and the
        # last one reported started: the late flusher reports one that runs for a while.
        self._current = 0
        self._current_since = 0.0
        self._reported = 0
        # Set while the late flusher has something to watch: held results, or a task running
        # that was not reported started. Changed under _lock only.
        self._watch = threading.Event()
        self._poller = zmq.Poller()
        self._received_at = 0.0  # when the socket was last read
        self._poller.register(sock, zmq.POLLIN)
        if direct is not None:
            self._poller.register(direct, zmq.POLLIN)

    def start_late_flusher(self) -> None:
        threading.Thread(target=self._flush_late, name="late-flusher", daemon=True).start()

    def _flush_late(self) -> None:
        """Send results held for longer than _HOLD_AT_MOST (the task after them turned out
        slow), and report a task that has been running that long as started: until then its
        client may still cancel it without its running. (A task holding the GIL delays this by
        Python's switch interval, 5 ms.)"""
        while True:
            self._watch.wait()
            time.sleep(_HOLD_AT_MOST)
            with self._lock:
                now = time.perf_counter()
                current, started = self._current, []
                due = now - self._current_since >= _HOLD_AT_MOST
                if current and current != self._reported and due:
                    started = [current]
                    self._reported = current
                if started or (self._held and now - self._held_since >= _HOLD_AT_MOST):
                    self._send_held(started=started)
                if not self._held and (not self._current or self._current == self._reported):
                    self._watch.clear()

    def hello(self, worker: bytes, direct: str = "") -> None:
        while True:
            send(self._sock, p.SlotHello(p.PROTOCOL_VERSION, worker, direct))
            if not self._sock.poll(int(_HELLO_EVERY * 1000)):
                continue
            for message, _ in receive_pending(self._sock, "the dispatcher"):
                if isinstance(message, p.SlotWelcome):
                    self._state.set_welcomed()
                    return
                if isinstance(message, p.Error) and message.code == p.NOT_LEADER:
                    continue  # a standby: the worker finds the leader and replaces this slot
                if isinstance(message, p.Error):
                    log.error("the dispatcher refused this slot: %s", message.message)
                    sys.exit(EXIT_REFUSED)

    def serve(self) -> None:
        while True:
            if not self._queue:
                self._flush()
                if not self._poller.poll(_COUNT_AFTER_MS if self._direct_finished else None):
                    self._flush(count=True)
                    continue
                self._receive()
            else:  # what came meanwhile, before choosing what runs next
                self._receive_unless_fresh()
            if self._queue:
                self._run_next()

    def _receive_unless_fresh(self) -> None:
        # Looking costs a few microseconds (zmq answers "nothing" with an exception, and asking
        # ZMQ_EVENTS instead is a system call): too much to do twice per tiny task. So before
        # choosing the next task the slot looks only if it last looked _SHORT seconds ago or
        # more: a Run that arrives while a tiny task runs is seen after the next tiny task at
        # worst. (The look after announcing an attempt is never skipped: see _run_next.)
        if time.perf_counter() - self._received_at >= _SHORT:
            self._receive()

    def _flush(self, count: bool = False) -> None:
        with self._lock:
            if count and not self._held:
                send(self._sock, p.Done([], self._direct_finished, self._direct_cancelled))
            elif self._held:  # counts ride along (main thread only: the flusher never counts)
                self._send_held(self._direct_finished, self._direct_cancelled)
            else:
                return
            self._direct_finished = self._direct_cancelled = 0

    def _send_held(
        self,
        direct_finished: int = 0,
        direct_cancelled: int = 0,
        started: list[int] | None = None,
        sync: int = 0,
    ) -> None:
        if not self._held and not started and not sync:
            return
        frames: list[FrameLike] = []
        results = []
        for result, own in self._held:
            if result.value is not None:  # renumbered in place: a result is sent once
                result.value = rebase(result.value, own, frames)
            results.append(result)
        self._held = []
        done = p.Done(results, direct_finished, direct_cancelled, started or [], sync)
        send(self._sock, done, frames)

    def _receive(self, direct: bool = True) -> None:
        self._received_at = time.perf_counter()
        with self._lock:
            received = list(receive_pending(self._sock, "the dispatcher"))
        for message, frames in received:
            match message:
                case p.Run(attempts=attempts):
                    # One key per function frame of the message, not one copy per task.
                    keys: dict[int, bytes] = {}
                    for spec in attempts:
                        key = keys.get(spec.fn.frame)
                        if key is None or spec.fn.frame == p.INLINE:
                            key = keys[spec.fn.frame] = _function_key(spec, frames)
                        entry = (-spec.priority, next(self._order), spec, frames, key, b"")
                        heapq.heappush(self._queue, entry)
                case p.Kill(attempt_ids=ids, sync=sync):
                    self._skip.update(ids)
                    if sync:
                        self._synced = sync
                case p.LeaseOpen(lease_id=lease_id, token=token, client_key=key):
                    self._leases[lease_id] = (token, key)
                case p.LeaseClose(lease_id=lease_id):
                    # What its holder sent before the message that made the dispatcher close
                    # it is taken first (it is most likely here already: one hop, not two).
                    if self._direct is not None:
                        self._receive_direct(self._direct)
                    self._leases.pop(lease_id, None)
                    self._closing.add(lease_id)
                    self._confirm_closed(lease_id)
                case p.Error(message=text):
                    log.error("the dispatcher refused a message: %s", text)
                case _:  # a late SlotWelcome, a Reregister meant for the worker: nothing to do
                    pass
        # After the dispatcher's messages: a lease is opened there before its holder hears of
        # it, so a DirectRun read now finds its LeaseOpen read already.
        if direct and self._direct is not None:
            self._receive_direct(self._direct)

    def _receive_direct(self, direct: zmq.Socket[Any]) -> None:
        while True:
            try:
                parts = recv_parts(direct, zmq.NOBLOCK)
            except zmq.Again:
                return
            peer = peer_key(parts[-1])
            # Its lease closed since it connected (only a key holding one gets in: see Gate).
            # Answered as an unopened lease is, below: its holder may have sent this before it
            # heard that the lease ended, and waits for an answer to send the task elsewhere.
            unleased = self.secure and not self.lease_key(peer)
            if unleased:
                self._refuse(peer, "no open lease of its key")
            try:
                client, body = split_envelope(parts, routed=True)
                message, frames = parse(body)
            except p.ProtocolError as error:
                log.error("dropped a malformed message on the direct endpoint: %s", error)
                continue
            if not isinstance(message, p.DirectRun) or message.attempt.attempt_id >= 0:
                log.error("dropped a %s on the direct endpoint", type(message).__name__)
                continue
            spec = message.attempt
            lease = None if unleased else self._leases.get(message.lease_id)
            if lease is not None and not (
                secrets.compare_digest(lease[0], message.token)
                and (not lease[1] or lease[1] == peer)
            ):
                # A guessed or stolen lease: refused without a reply (nothing is unpickled).
                self._refuse(peer, f"a DirectRun under lease {message.lease_id} without its token")
                continue
            if lease is None or _lease_of(spec.attempt_id) != message.lease_id:
                refused = p.AttemptResult(spec.attempt_id, "failed", None, "no open lease")
                self._answer_direct(client, refused, [], refused=True)
                continue
            key = _function_key(spec, frames)
            entry = (-spec.priority, next(self._order), spec, frames, key, client)
            heapq.heappush(self._queue, entry)

    def lease_key(self, key: str) -> bool:
        """Whether ``key`` holds an open lease here (the ZAP thread asks, as the loop does)."""
        return any(client == key for _, client in list(self._leases.values()))

    def _refuse(self, key: str, reason: str) -> None:
        if key not in self._refused_keys:
            if len(self._refused_keys) > 4096:
                self._refused_keys.clear()
            self._refused_keys[key] = None
            log.warning("the direct endpoint refused key %s: %s (logged once)", key or "?", reason)

    def _confirm_closed(self, lease_id: int) -> None:
        """Say LeaseClosed once no direct attempt of the closed lease is queued or running."""
        if lease_id not in self._closing or self._running_lease == lease_id:
            return
        if any(e[5] and _lease_of(e[2].attempt_id) == lease_id for e in self._queue):
            return
        self._closing.discard(lease_id)
        with self._lock:
            send(self._sock, p.LeaseClosed(lease_id))

    def _answer_direct(
        self,
        client: bytes,
        result: p.AttemptResult,
        frames: list[FrameLike],
        refused: bool = False,
    ) -> None:
        assert self._direct is not None
        try:
            send(self._direct, p.DirectDone(result, refused), frames, identity=client)
        except zmq.ZMQError as error:  # EHOSTUNREACH: the client is gone
            log.info("could not answer a direct attempt: %s", error)

    def _sync(self) -> None:
        """Send what is held with a Done.sync and read until its answer: every Kill the
        dispatcher sent before it is read then (it counted those attempts cancelled)."""
        self._sync_due = False
        token = next(self._syncs)
        with self._lock:
            self._send_held(self._direct_finished, self._direct_cancelled, sync=token)
            self._direct_finished = self._direct_cancelled = 0
        deadline = time.monotonic() + _SYNC_WITHIN
        while self._synced != token:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "no answer from the dispatcher to a sync in %g s: going on", _SYNC_WITHIN
                )
                return
            if self._sock.poll(int(left * 1000) + 1):
                self._receive(direct=False)

    def _run_next(self) -> None:
        if self._sync_due and not self._queue[0][5]:  # a dispatcher attempt is next
            self._sync()
            return  # chosen again: the answer may have brought Kills or other attempts
        entry = heapq.heappop(self._queue)
        _, _, spec, frames, key, client = entry
        if client:
            self._running_lease = _lease_of(spec.attempt_id)
        # Results of tiny tasks go back in batches: one message per task would cost more than
        # the task. A result waits only for a task whose function last ran in under _SHORT,
        # and for about _HOLD_AT_MOST at most (the late flusher sends it if that task turns
        # out slow), so a slow task never holds back what finished before it.
        # (Held results die with this process if it is killed: their attempts are then
        # re-queued and run again, never lost.)
        # Half way through what is queued here (and at least _HALF_AT_LEAST of them) they go
        # anyway, so that the dispatcher sends more work while the rest runs.
        if self._held and (
            self._durations.get(key, 1.0) >= _SHORT
            or (len(self._held) > len(self._queue) and len(self._held) >= _HALF_AT_LEAST)
            or len(self._held) >= _BATCH
            or time.perf_counter() - self._held_since >= _HOLD_AT_MOST
        ):
            self._flush()
        # Announce the attempt, then look for a Kill once more, always: the worker answers
        # "cancelled before it started" for an attempt it does not see announced, so an
        # attempt whose Kill came must not start (and one whose Kill comes after this look is
        # seen running by the worker, which kills this process). One known to be cancelled is
        # never announced (nor killed for).
        if spec.attempt_id not in self._skip:
            self._state.set_running(spec.attempt_id)
            # (Not for a direct attempt: the worker's "cancelled before it started" does not
            # count for one, whose holder hears only from this slot or of its death. A Kill
            # that comes too late lets it finish, and its holder gets the result.)
            if not client:
                self._receive(direct=False)  # for a Kill: one look, not two
            if spec.attempt_id not in self._skip and self._queue and self._queue[0] < entry:
                # That look brought an attempt of higher priority: it goes first.
                self._state.set_running(0)
                self._running_lease = 0
                heapq.heappush(self._queue, entry)
                return
        if spec.attempt_id in self._skip:
            self._skip.discard(spec.attempt_id)
            self._state.set_running(0)
            self._finish(client, p.AttemptResult(spec.attempt_id, "cancelled", None, "cancelled"))
            return
        started = time.perf_counter()
        with self._lock:  # the late flusher watches while this task runs
            self._current = 0 if client else spec.attempt_id
            self._current_since = started
            if (self._current or self._held) and not self._watch.is_set():
                self._watch.set()
        result, out = _run_one(spec, frames, self._functions, key)
        with self._lock:  # the late flusher reports it now, or did already, or never will
            self._current = 0
            # Reported started: the dispatcher may count what waits behind it cancelled.
            self._sync_due |= self._reported == spec.attempt_id and not client
        self._skip.discard(spec.attempt_id)  # a cancel that came too late
        result.seconds = seconds = time.perf_counter() - started
        if len(self._durations) > 256:
            self._durations.clear()
        self._durations[key] = seconds
        # Cleared before the result is sent: if this process dies in between, the worker
        # says "nothing running" and the dispatcher re-queues the attempt (run again, not
        # lost).
        self._state.set_running(0)
        self._finish(client, result, out)

    def _finish(
        self, client: bytes, result: p.AttemptResult, frames: list[FrameLike] | None = None
    ) -> None:
        if client:  # a lease holder waits for this one alone: it goes at once
            if result.status == "cancelled":
                # Rare: counted at once, before the client hears (it may ask for status).
                self._direct_cancelled += 1
                self._flush(count=True)
            else:
                self._direct_finished += 1
            self._answer_direct(client, result, frames or [])
            self._running_lease = 0
            if self._closing:
                self._confirm_closed(_lease_of(result.attempt_id))
        else:
            self._hold(result, frames or [])

    def _hold(self, result: p.AttemptResult, frames: list[FrameLike]) -> None:
        with self._lock:
            if not self._held:
                self._held_since = time.perf_counter()
            self._held.append((result, frames))


def main(
    address: str,
    worker: bytes,
    identity: bytes,
    state_path: str,
    worker_pid: int,
    max_message_size: int,
    direct_bind: str = "",
) -> None:
    # The worker decides when a slot ends; a terminal's Ctrl-C or a SIGTERM to the process
    # group must not kill tasks that a draining worker wants to finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(worker_pid, state_path), daemon=True).start()
    keep_large_buffers(_KEEP_FREE)
    collect_less_often()
    context: zmq.Context[Any] = zmq.Context()
    keys = resolve_keys()  # the worker's (it passes them on in the environment)
    sock = make_socket(context, zmq.DEALER, max_message_size=max_message_size, identity=identity)
    spread_reconnects(sock)  # issue 21: no stampede when the dispatcher restarts
    if keys is not None:
        connect_curve(sock, keys.public, keys.secret, keys.server)
    sock.connect(address)
    direct = None
    endpoint = ""
    slot_of: list[_Slot] = []  # the ZAP thread's way to the slot's open leases
    if direct_bind:
        direct = make_socket(context, zmq.ROUTER, max_message_size=max_message_size)
        direct.setsockopt(zmq.RCVHWM, _DIRECT_QUEUE)
        direct.setsockopt(zmq.SNDHWM, _DIRECT_QUEUE)
        if keys is not None:  # only the key of a client holding an open lease connects
            Gate(context, lambda key: bool(slot_of) and slot_of[0].lease_key(key), "slot")
            serve_curve(direct, keys.public, keys.secret)
        try:
            direct.bind(direct_bind)
            endpoint = _reachable(direct.getsockopt_string(zmq.LAST_ENDPOINT))
        except zmq.ZMQError as error:  # the slot still works: its tasks come through the dispatcher
            log.warning("no direct endpoint (could not bind %s: %s)", direct_bind, error)
            direct.close(linger=0)
            direct = None
    slot = _Slot(sock, SlotState(state_path), direct)
    slot.secure = keys is not None
    slot_of.append(slot)
    slot.hello(worker, endpoint)
    slot.start_late_flusher()
    slot.serve()


if __name__ == "__main__":
    main(
        sys.argv[1],
        bytes.fromhex(sys.argv[2]),
        bytes.fromhex(sys.argv[3]),
        sys.argv[4],
        int(sys.argv[5]),
        int(sys.argv[6]),
        sys.argv[7] if len(sys.argv) > 7 else "",
    )
