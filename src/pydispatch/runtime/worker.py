"""A worker process: registers with the dispatcher, heartbeats, and supervises N slot processes.

Tasks do not pass through this process: each slot subprocess has its own socket to the
dispatcher and gets its tasks from it and returns results to it directly (see ``runtime.slot``).
The worker is the slots' supervisor:

* It starts them, waits until the dispatcher has welcomed each, and registers their
  identities; it replaces a slot that dies and reports it (``SlotLost`` naming the attempt the
  slot was running, read from the slot's shared state) and its replacement (``SlotReady``).
* Heartbeats come from a thread with its own socket, so nothing the main loop does (and no
  task: tasks run in slot subprocesses) can silence them; only a stopped or dead process can.
* Force-cancel (``Kill``): the dispatcher tells both the slot holding the attempt (which skips
  it if it has not started) and this worker, which kills the slot process if it is running the
  attempt, starts a fresh one, and reports the attempt ``cancelled``. The check is repeated
  for a short while (``_KILL_WATCH``): the slot may start the attempt just after the first
  look, before the Kill reaches the slot's own socket.
* SIGINT stops at once (running attempts are reported ``lost`` and re-queued elsewhere).
* SIGTERM is a graceful drain: the worker tells the dispatcher (which places nothing new on
  it), lets running tasks finish for up to ``drain_grace`` seconds, reports any it had to
  abandon as ``lost`` (the dispatcher re-queues them elsewhere), and exits when the dispatcher
  releases it. A second SIGTERM ends the grace period at once.
* ``Reregister``: the dispatcher removed us for silence (same epoch): attempts still running
  here were already re-queued elsewhere, so every slot is killed and replaced, then the
  worker registers again. Or it restarted (another epoch): nobody re-queued what the slots
  hold, so they keep it and report its outcomes to the new dispatcher, which delivers those
  its clients still want (the outcomes name their tasks); the worker registers its slots as
  they are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

import zmq

from ..wire import protocol as p
from ..wire.addresses import ADVERTISE_ENV, default_node, route_source, url_host
from ..wire.security import IDENTITY_ENV, KEYS_ENV, Keys, connect_with, resolve_keys
from ..wire.transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    find_leader,
    make_socket,
    receive_pending,
    send,
    split_addresses,
)
from .reconnect import (
    WORKER_SILENCE_S,
    drop_when_silent,
    follow_silence,
    spread_reconnects,
    worker_silence,
)
from .slot import EXIT_REFUSED, SlotState
from .slot import main as run_slot
from .slot_process import SlotProcess, fork_process
from .usage import ProcessUsage

__all__ = ["Worker", "WorkerOptions", "run_worker"]

log = logging.getLogger(__name__)

# Given standbys: a dispatcher lost this long (seconds) has the others asked who leads.
_LOOK_FOR_LEADER_AFTER: Final = 2.0
_REGISTER_RETRY: Final = 5.0  # seconds without a Registered reply before registering again
_KILL_WATCH: Final = 2.0  # seconds a force-cancelled attempt is watched for on the slots
_IPC_PATH_MAX: Final = 100  # bytes of an ipc:// socket path (sun_path holds 108 with its NUL)
_MONITOR_EVENT: Final = struct.Struct("=H")  # a monitor message's event number (native order)
_CHECK_EVERY: Final = 0.05  # seconds between checks that the slot processes are alive
_LONGEST_TIMEOUT: Final = 86_400.0  # a heartbeat timeout told beyond this is not followed


@dataclass(slots=True, eq=False)
class _Slot:
    index: int
    identity: bytes
    state: SlotState
    process: SlotProcess
    announced: bool = False  # the dispatcher knows it (in Register, or by SlotReady)


@dataclass(slots=True)
class WorkerOptions:
    slots: int = 1
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    name: str = ""
    node: str = ""
    drain_grace: float = 30.0
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    # The host (of a tcp:// address) where this worker's slots bind their direct endpoints
    # when the dispatcher is not on ipc:// ("": none; None: the advertised host, so that
    # clients on other hosts reach them). (It once also bound a data socket that nothing
    # read: gone, as it only let a peer fill this process's memory.)
    data_bind: str | None = None
    # The address this worker's slots and slices are reached at ("": the local address of
    # its route to the dispatcher, or PYDISPATCH_ADVERTISE_HOST if set).
    advertise_host: str = ""
    # Each slot binds a direct endpoint for clients holding a lease on it (see ``leases``):
    # in this worker's private directory when the dispatcher is on ipc://, else on the
    # data_bind host (none if data_bind is "").
    direct: bool = True
    # Stop (as on SIGINT) when the process with this pid is no longer our parent: set by
    # LocalCluster and ``worker --nprocs`` so that workers never outlive who started them.
    exit_with_parent: int = 0
    # This worker's keys (None: those the environment names, if any; see security). Its
    # slots speak with the same key, and serve their direct endpoints with it.
    keys: Keys | None = None


class Worker:
    def __init__(self, address: str, options: WorkerOptions | None = None) -> None:
        self.options = options or WorkerOptions()
        # A leader and its standbys: the worker follows whichever leads (see _follow_leader).
        self._addresses = split_addresses(address)
        self.address = self._addresses[0]
        self._looked_for_leader_at = 0.0
        self.advertise_host = (
            self.options.advertise_host
            or os.environ.get(ADVERTISE_ENV, "")
            or route_source(self.address)
        )
        self.node = self.options.node or default_node(self.advertise_host)
        self.name = self.options.name or f"{self.node}-{os.getpid()}"
        self.identity = f"{self.name}/{uuid.uuid4().hex[:8]}".encode()
        self.keys = self.options.keys if self.options.keys is not None else resolve_keys()
        self._context: zmq.Context[Any] = zmq.Context()
        self._sock = make_socket(
            self._context,
            zmq.DEALER,
            max_message_size=self.options.max_message_size,
            identity=self.identity,
        )
        # Connection events of the dispatcher's socket, to say when we lose and regain it.
        self._monitor = self._sock.get_monitor_socket(
            zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
        )
        self._lost_dispatcher_at: float | None = None
        self._ever_registered = False
        spread_reconnects(self._sock)  # issue 21: no stampede when the dispatcher restarts
        drop_when_silent(self._sock, WORKER_SILENCE_S)  # issue 14: back soon after a link cut
        self._connect(self._sock)
        self.data_address = ""
        # In PYDISPATCH_SLOTS_DIR if set: a LocalCluster removes it however the worker ended.
        self._tmpdir = tempfile.mkdtemp(
            "", "pydispatch-slots-", os.environ.get("PYDISPATCH_SLOTS_DIR")
        )
        self._slots: list[_Slot] = []
        self._slot_generation = 0
        self._kills: dict[int, float] = {}  # force-cancelled attempt id -> watch until
        self._heartbeat_interval = 1.0
        # How long a connection to the dispatcher may stay silent: 12 s, or its timeout and
        # two pings once it told a longer one (issue 14; see reconnect). Read by the
        # heartbeat thread too.
        self._silence = WORKER_SILENCE_S
        self._dispatcher_epoch = ""  # of the dispatcher that registered us (see Reregister)
        self._heartbeat_stop = threading.Event()
        # Set when the dispatcher tells an interval: the next heartbeat follows at that pace,
        # not after the one being waited out (1 s at first: a dispatcher with a timeout of
        # 1 s declared a worker lost just after it registered).
        self._heartbeat_retold = threading.Event()
        self._registered_at: float | None = None
        self._register_sent_at = 0.0
        self._drain_requested = 0  # number of SIGTERMs received
        self._drain_deadline: float | None = None
        self._released = False

    # ---------------------------------------------------------------------------- run

    def run(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
            signal.signal(signal.SIGINT, self._on_sigint)
        try:
            for index in range(self.options.slots):
                self._slots.append(self._start_slot(index))
            # Register only once every slot can take a task: "registered" means "ready".
            self._wait_for_slots()
            self._register()
            heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True)
            heartbeat.start()
            self._loop()
        finally:
            self._heartbeat_stop.set()
            self._heartbeat_retold.set()
            self._shutdown_slots()
            self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._sock.close(linger=200)
            self._context.term()
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def request_drain(self) -> None:
        self._drain_requested += 1

    def request_stop(self) -> None:
        """Stop now: running attempts are abandoned (re-queued elsewhere by the dispatcher)."""
        self._drain_requested += 2

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.request_drain()

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.request_stop()

    def _loop(self) -> None:
        next_check = 0.0
        while True:
            self._read_connection_events()
            now = time.monotonic()
            if self._drain_requested and self._drain_deadline is None:
                self._start_drain(now)
            if self._drain_deadline is not None and (
                now >= self._drain_deadline or self._drain_requested > 1
            ):
                self._abandon_all("the worker's drain grace period ended")
                send(self._sock, p.Goodbye())
                return
            if self._released:
                return
            if self._registered_at is None and now - self._register_sent_at > _REGISTER_RETRY:
                self._register()
            # While a force-cancel is watched, look at the slots often.
            self._look_for_leader(now)
            if self._sock.poll(10 if self._kills else 100):
                self._receive_from_dispatcher()
            self._watch_kills(time.monotonic())
            if now >= next_check:
                if self.options.exit_with_parent and os.getppid() != self.options.exit_with_parent:
                    self.request_stop()
                self._check_slot_processes()
                self._announce_slots()
                next_check = now + _CHECK_EVERY

    # -------------------------------------------------------------------- dispatcher

    def _register(self) -> None:
        self._registered_at = None
        self._register_sent_at = time.monotonic()
        welcomed = [slot for slot in self._slots if slot.state.welcomed]
        for slot in welcomed:
            slot.announced = True
        send(
            self._sock,
            p.Register(
                p.PROTOCOL_VERSION,
                self.name,
                self.node,
                os.getpid(),
                self.options.slots,
                self.options.resources,
                self.options.labels,
                self.data_address,
                [slot.identity for slot in welcomed],
            ),
        )

    def _heartbeat_loop(self) -> None:
        sock = make_socket(self._context, zmq.DEALER, identity=self.identity + b"/heartbeat")
        spread_reconnects(sock)
        drop_when_silent(sock, WORKER_SILENCE_S)
        self._connect(sock)
        connected_to = self.address
        try:
            usage = ProcessUsage()
            while True:
                self._heartbeat_retold.wait(self._heartbeat_interval)
                if self._heartbeat_stop.is_set():
                    break
                self._heartbeat_retold.clear()
                if connected_to != self.address:  # another dispatcher leads (_follow_leader)
                    with contextlib.suppress(zmq.ZMQError):
                        sock.disconnect(connected_to)
                    connected_to = self.address
                    connect_with(sock, self.keys, connected_to)
                follow_silence(sock, self._silence, connected_to)  # its timeout, once told
                if self._registered_at is not None:
                    pids = [os.getpid(), *(slot.process.pid for slot in list(self._slots))]
                    cpu, rss = usage.measure(pids)
                    send(sock, p.Heartbeat(self.identity, cpu, rss))
        finally:
            sock.close(linger=0)

    def _connect(self, sock: zmq.Socket[Any]) -> None:
        connect_with(sock, self.keys, self.address)

    def _receive_from_dispatcher(self) -> None:
        for message, _ in receive_pending(self._sock, "the dispatcher"):
            try:
                self._handle(message)
            except Exception:  # a bad message must not kill the worker and its tasks
                log.exception("error handling %s from the dispatcher", type(message).__name__)

    def _handle(self, message: p.Message) -> None:
        match message:
            case p.Kill(attempt_ids=ids):
                now = time.monotonic()
                self._kills.update(dict.fromkeys(ids, now + _KILL_WATCH))
                killed = self._watch_kills(now)
                # The others wait in their slot's queue, behind a task that may run for long:
                # cancelled now (the dispatcher frees their places), skipped by the slot.
                waiting = [
                    p.AttemptResult(i, "cancelled", None, "cancelled before it started")
                    for i in ids
                    if i not in killed
                ]
                if waiting:
                    send(self._sock, p.Done(waiting))
            case p.Registered(heartbeat_interval=interval, heartbeat_timeout=timeout, epoch=epoch):
                self._follow_timeout(timeout)
                if interval < self._heartbeat_interval:
                    self._heartbeat_retold.set()
                self._heartbeat_interval = interval
                self._dispatcher_epoch = epoch
                self._registered_at = time.monotonic()
                self._log_registered()
                if self._drain_deadline is not None:
                    send(self._sock, p.Drain())
            case p.Reregister(epoch=epoch):
                if self._registered_at is None:
                    return  # a Register is already on its way
                if epoch and self._dispatcher_epoch and epoch != self._dispatcher_epoch:
                    log.warning("the dispatcher restarted: registering again (slots keep work)")
                    self._register()
                    return
                log.warning("the dispatcher no longer knows this worker: registering again")
                if self._lost_dispatcher_at is None:
                    self._lost_dispatcher_at = time.monotonic()
                # What the slots hold was re-queued elsewhere when we were removed.
                for slot in list(self._slots):
                    self._replace_slot(slot)
                self._register()
            case p.ReplaceSlot(slot=identity):
                for slot in list(self._slots):
                    if slot.identity == identity:
                        log.warning("the dispatcher cannot reach slot %d: replacing it", slot.index)
                        self._replace_slot(slot, "lost", "the dispatcher could not reach its slot")
            case p.Goodbye():
                self._released = True
            case p.Error(code=p.NOT_LEADER, message=leader):
                self._follow_leader(leader)  # a standby answered: where the leader is
            case p.Error(code=code, message=text):
                log.error("the dispatcher refused a message: %s: %s", code, text)
            case _:
                log.error("unexpected %s from the dispatcher", type(message).__name__)

    def _follow_timeout(self, timeout: float) -> None:
        """Drop a silent connection no sooner than the dispatcher's heartbeat ``timeout`` and
        two pings, when it removed us (see reconnect): our connection now, the heartbeat
        thread's at its next beat."""
        if not 0 < timeout < _LONGEST_TIMEOUT:  # nan included: keep the default
            log.warning("the dispatcher told an implausible heartbeat timeout: %r", timeout)
            return
        self._silence = worker_silence(timeout)
        # A disconnect of ours is no loss to the monitor: libzmq reports none.
        follow_silence(self._sock, self._silence, self.address)

    def _look_for_leader(
        self, now: float, lost_since: float | None = None, register: bool = True
    ) -> None:
        """Given standbys: the dispatcher's connection lost (or a Register unanswered) for a
        while has the others asked who leads now."""
        if lost_since is None:
            lost_since = self._lost_dispatcher_at
            if self._registered_at is None:
                lost_since = min(lost_since or now, self._register_sent_at)
            if len(self._addresses) < 2:
                return
        if (
            lost_since is None
            or now - lost_since < _LOOK_FOR_LEADER_AFTER
            or now - self._looked_for_leader_at < _LOOK_FOR_LEADER_AFTER
        ):
            return
        self._looked_for_leader_at = now
        with contextlib.suppress(TimeoutError):
            self._follow_leader(find_leader(self._addresses, self.keys, 2.0), register)

    def _follow_leader(self, leader: str, register: bool = True) -> None:
        """Register with the dispatcher at ``leader``. The slots speak to the old address:
        fresh ones replace them (what they ran runs again: its clients resubmit it)."""
        if not leader or leader == self.address:
            return
        log.warning("the dispatcher that leads is at %s now (was %s)", leader, self.address)
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disconnect(self.address)
        self.address = leader
        self._connect(self._sock)
        if leader not in self._addresses:
            self._addresses.append(leader)
        if self._lost_dispatcher_at is None:
            self._lost_dispatcher_at = time.monotonic()
        for slot in list(self._slots):
            self._replace_slot(slot)
        if register:
            self._register()

    def _log_registered(self) -> None:
        if not self._ever_registered:
            self._ever_registered = True
            log.info(
                "registered with the dispatcher at %s as %s on node %s: %d slots, resources %s,"
                " labels %s",
                self.address,
                self.name,
                self.node,
                self.options.slots,
                self.options.resources or "none",
                self.options.labels or "none",
            )
        elif self._lost_dispatcher_at is not None:
            log.info(
                "registered again with the dispatcher at %s, %.1f s after losing it",
                self.address,
                time.monotonic() - self._lost_dispatcher_at,
            )
        self._lost_dispatcher_at = None

    def _read_connection_events(self) -> None:
        """Log the loss of the dispatcher's connection once (its return is logged on
        Registered); a new connection (it restarted) gets a heartbeat at once: one it does not
        know has us register again now rather than at the next heartbeat."""
        reconnected = False
        while self._monitor.poll(0):
            event = _monitor_event(self._monitor.recv_multipart())
            if event == zmq.EVENT_DISCONNECTED and self._lost_dispatcher_at is None:
                self._lost_dispatcher_at = time.monotonic()
                if self._ever_registered:
                    log.warning(
                        "lost the connection to the dispatcher at %s: reconnecting", self.address
                    )
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                reconnected = True
        if reconnected and self._registered_at is not None:
            send(self._sock, p.Heartbeat(self.identity))

    def _start_drain(self, now: float) -> None:
        log.info("draining: running tasks get %.1f s to finish", self.options.drain_grace)
        self._drain_deadline = now + self.options.drain_grace
        if self._registered_at is None:
            self._released = True  # nothing was ever placed here
            return
        send(self._sock, p.Drain())

    # ------------------------------------------------------------------------- slots

    def _start_slot(self, index: int) -> _Slot:
        self._slot_generation += 1
        identity = b"%s/slot%d.%d" % (self.identity, index, self._slot_generation)
        path = os.path.join(self._tmpdir, f"slot-{index}-{self._slot_generation}")
        state = SlotState(path, create=True)
        args = (
            self.address, self.identity, identity, path, os.getpid(),
            self.options.max_message_size, self._direct_bind(path),
        )  # fmt: skip
        process: SlotProcess
        if self._may_fork():  # a few ms rather than ~0.1 s of CPU (see runtime.slot_process)
            process = fork_process(lambda: run_slot(*args), self._slot_environment())
        else:
            command = [sys.executable, "-m", "pydispatch.runtime.slot"]
            command += [a.hex() if isinstance(a, bytes) else str(a) for a in args]
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, env=self._slot_environment()
            )
        return _Slot(index, identity, state, process)

    def _may_fork(self) -> bool:
        """Only while this process has no thread but ours: the worker's first slots, started
        before its heartbeat thread (a replacement, or a worker inside a program with threads
        of its own, starts an interpreter: a thread could hold a lock the child needs)."""
        if not hasattr(os, "fork") or threading.current_thread() is not threading.main_thread():
            return False
        return threading.active_count() == 1

    def _slot_environment(self) -> dict[str, str]:
        """The worker's environment, naming its keys (a path and a name: no secret) or none."""
        env = {k: v for k, v in os.environ.items() if k not in (KEYS_ENV, IDENTITY_ENV)}
        env[ADVERTISE_ENV] = self.advertise_host  # where its slots and slices bind
        if self.keys is not None:
            env[KEYS_ENV] = self.keys.directory
            env[IDENTITY_ENV] = self.keys.name
        return env

    def _direct_bind(self, state_path: str) -> str:
        if not self.options.direct:
            return ""
        if self.address.startswith("ipc://"):
            path = f"{state_path}.direct"
            # A socket path longer than sun_path (108 bytes) cannot be bound: loopback TCP.
            return f"ipc://{path}" if len(path.encode()) < _IPC_PATH_MAX else "tcp://127.0.0.1:*"
        bind = self.options.data_bind
        if bind is None:
            return f"tcp://{url_host(self.advertise_host)}:*"
        if bind.startswith("tcp://"):
            return f"tcp://{bind[len('tcp://') :].rsplit(':', 1)[0]}:*"
        return ""

    def _wait_for_slots(self) -> None:
        """Until the dispatcher has welcomed every slot (it may not be up yet: keep waiting)."""
        started = time.monotonic()
        next_note = started + 10.0
        while not all(slot.state.welcomed for slot in self._slots):
            # Not welcomed yet: the address may be a standby's (it answers nobody's slots), or
            # a dead leader's among standbys: ask who leads.
            if time.monotonic() - started > _LOOK_FOR_LEADER_AFTER:
                self._look_for_leader(time.monotonic(), started, register=False)
            if self._drain_requested:
                return
            if time.monotonic() > next_note:
                log.warning("waiting for the dispatcher at %s to welcome our slots", self.address)
                next_note += 10.0
            time.sleep(0.01)
            if self.options.exit_with_parent and os.getppid() != self.options.exit_with_parent:
                self.request_stop()
            self._check_slot_processes()

    def _announce_slots(self) -> None:
        """Tell the dispatcher of replacement slots it has welcomed (once we are registered)."""
        if self._registered_at is None:
            return
        for slot in self._slots:
            if not slot.announced and slot.state.welcomed:
                slot.announced = True
                send(self._sock, p.SlotReady(slot.identity))

    def _replace_slot(self, slot: _Slot, status: p.Status | None = None, error: str = "") -> None:
        """Kill ``slot`` and start another; with ``status``, report the loss to the dispatcher."""
        _kill_process(slot.process)
        running = slot.state.running  # read after its death: it cannot change any more
        if status == "cancelled" and running not in self._kills:
            # It moved on to another attempt between our look and its death.
            status, error = "lost", "its slot was killed to force-cancel another task"
        slot.state.close()
        if status is not None and slot.announced:
            send(self._sock, p.SlotLost(slot.identity, running, status, error))
        self._slots[slot.index] = self._start_slot(slot.index)

    def _watch_kills(self, now: float) -> set[int]:
        """Kill the slots running a force-cancelled attempt; return those attempts."""
        killed: set[int] = set()
        if not self._kills:
            return killed
        for slot in list(self._slots):
            running = slot.state.running
            if running in self._kills:
                killed.add(running)
                self._replace_slot(slot, "cancelled", "force-cancelled (slot killed)")
        for attempt_id in [a for a, until in self._kills.items() if until < now]:
            del self._kills[attempt_id]
        return killed

    def _check_slot_processes(self) -> None:
        for slot in list(self._slots):
            code = slot.process.poll()
            if code is None:
                continue
            if code == EXIT_REFUSED and not slot.state.welcomed:
                # Not a task's doing (it never had one): this dispatcher will refuse every slot.
                raise RuntimeError(
                    "the dispatcher refused this worker's slots (a different protocol version?)"
                )
            log.warning("slot %d died (exit code %s): starting a new one", slot.index, code)
            error = f"the slot process running this task died (exit code {code})"
            self._replace_slot(slot, "failed", error)

    def _abandon_all(self, reason: str) -> None:
        """Give up every attempt the slots hold: reported ``lost``, re-queued elsewhere."""
        for slot in self._slots:
            _kill_process(slot.process)
            if slot.announced:
                send(self._sock, p.SlotLost(slot.identity, slot.state.running, "lost", reason))

    def _shutdown_slots(self) -> None:
        for slot in self._slots:
            _kill_process(slot.process)


def _kill_process(process: SlotProcess) -> None:
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        log.error("slot process %d did not die", process.pid)


def _monitor_event(message: list[bytes]) -> int:
    """The event number of a socket monitor's message: the first 16 bits of its first frame
    (zmq_socket_monitor(3)). pyzmq's parser lives in ``zmq.utils.monitor``, which imports
    ``asyncio``: 15-20 ms of CPU more for every worker that starts."""
    (event,) = _MONITOR_EVENT.unpack_from(message[0])
    return int(event)


def run_worker(address: str, options: WorkerOptions) -> None:
    """Run one worker in this process until it is drained (SIGTERM) or released."""
    Worker(address, options).run()
