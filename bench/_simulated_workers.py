"""Simulated workers: many workers in a few processes, speaking the real protocol.

A real worker is a process with a subprocess per slot; a thousand of them do not fit on a
laptop, nor on this 2-core machine. A simulated worker has the same sockets as a real one and
sends the same messages, but runs nothing:

* one DEALER per slot (identity ``<worker>/slot<i>.1``): ``SlotHello`` until ``SlotWelcome``;
  each ``Run`` is answered at once with one ``Done`` whose results are ``None`` (a no-op);
* one DEALER for the worker itself: ``Register`` (with its welcomed slots) once every slot is
  welcomed, again on ``Reregister`` or without an answer for 5 s;
* one DEALER for heartbeats (identity ``<worker>/heartbeat``), a ``Heartbeat`` every interval
  the dispatcher asked for, as the real worker's heartbeat thread sends them.

So a simulated worker costs the dispatcher what a real one does (its connections, its
registration, its heartbeats, its results), and the simulator costs little: the sockets are
watched with ``epoll`` on their ``ZMQ_FD`` (only sockets with something to read are looked at),
not with ``zmq_poll`` over all of them. Slot sockets announce no direct endpoint, so clients
never get a lease: every task goes through the dispatcher (the lane is off).

:class:`SimulatedWorkers` runs in the calling process; :func:`start_simulators` spreads the
workers over a few processes (a process holds a few thousand file descriptors at most: two per
socket) and :class:`SimulatorFleet` commands them (counters, stop).
"""

from __future__ import annotations

import heapq
import itertools
import math
import multiprocessing
import multiprocessing.connection
import os
import select
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from pydispatch.runtime.reconnect import spread_reconnects
from pydispatch.wire import protocol as p
from pydispatch.wire.transport import dumps, parse, recv_parts, send, split_envelope

__all__ = ["Counters", "SimulatedWorkers", "SimulatorFleet", "start_simulators"]

_HELLO_AGAIN = 2.0  # seconds without SlotWelcome before saying hello again
_REGISTER_AGAIN = 5.0  # seconds without Registered before registering again (as the worker)
_NOOP_SECONDS = 2e-6  # what a slot reports a no-op took: the dispatcher sizes prefetch by it
_MAX_PER_PROCESS = 500  # workers per simulator process (4 sockets, ~8 descriptors each)


@dataclass
class Counters:
    """What a simulator saw since the counters were last taken."""

    workers: int = 0
    registered: int = 0
    first_registered: float = 0.0  # time.monotonic() of the first and last Registered
    last_registered: float = 0.0
    runs: int = 0  # Run messages received
    attempts: int = 0  # attempts those carried (all answered)
    heartbeats: int = 0
    reregistered: int = 0  # Reregister received: the dispatcher had forgotten a worker
    errors: list[str] = field(default_factory=list)  # Error, ReplaceSlot, unexpected messages

    def add(self, other: Counters) -> None:
        self.workers += other.workers
        self.registered += other.registered
        if other.first_registered:
            self.first_registered = min(self.first_registered or math.inf, other.first_registered)
        self.last_registered = max(self.last_registered, other.last_registered)
        self.runs += other.runs
        self.attempts += other.attempts
        self.heartbeats += other.heartbeats
        self.reregistered += other.reregistered
        self.errors += other.errors


@dataclass(eq=False)
class _Worker:
    identity: bytes
    name: str
    sock: zmq.Socket[Any]
    beat: zmq.Socket[Any]
    slots: list[bytes]
    slot_socks: list[zmq.Socket[Any]]
    welcomed: set[bytes] = field(default_factory=set)
    hello_sent: float = 0.0
    register_sent: float = 0.0
    registered: bool = False
    interval: float = 1.0


class SimulatedWorkers:
    """``count`` simulated workers of ``slots`` slots each, connected to ``address``."""

    def __init__(
        self, address: str, count: int, *, slots: int = 2, prefix: str = "sim", pid: int = 0
    ) -> None:
        self.address = address
        self.counters = Counters(workers=count)
        self._context: zmq.Context[Any] = zmq.Context()
        self._context.setsockopt(zmq.LINGER, 0)
        self._context.set(zmq.MAX_SOCKETS, count * (slots + 2) + 16)
        self._epoll = select.epoll()
        self._by_fd: dict[int, tuple[zmq.Socket[Any], _Worker, int]] = {}
        self._pid = pid or os.getpid()
        self._workers: list[_Worker] = []
        # Registered workers by when their next heartbeat is due (a heap: the dispatcher
        # paces large clusters, telling workers different intervals; see heartbeat_pacing).
        self._beats: list[tuple[float, int, _Worker]] = []
        self._beat_order = itertools.count()
        self._touched: set[zmq.Socket[Any]] = set()  # sent on: look for input again (ZMQ_FD)
        none_frames: list[Any] = []
        self._none = dumps(None, none_frames)
        assert not none_frames
        for index in range(count):
            name = f"{prefix}-{index}"
            identity = f"{name}/{self._pid:x}".encode()
            sock = self._socket(identity)
            beat = self._socket(identity + b"/heartbeat")
            slot_ids = [b"%s/slot%d.1" % (identity, i) for i in range(slots)]
            worker = _Worker(identity, name, sock, beat, slot_ids, [])
            worker.slot_socks = [self._socket(slot) for slot in slot_ids]
            self._workers.append(worker)
            self._watch(sock, worker, -1)
            self._watch(beat, worker, -2)
            for i, slot in enumerate(worker.slot_socks):
                self._watch(slot, worker, i)

    def _socket(self, identity: bytes) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, identity)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        spread_reconnects(sock)  # as a real worker's sockets
        return sock

    def _watch(self, sock: zmq.Socket[Any], worker: _Worker, role: int) -> None:
        fd = sock.getsockopt(zmq.FD)
        self._by_fd[fd] = (sock, worker, role)
        self._epoll.register(fd, select.EPOLLIN)

    # ------------------------------------------------------------------------- run

    def connect(self) -> None:
        """Connect every socket and say hello from every slot: the herd starts here."""
        now = time.monotonic()
        for worker in self._workers:
            worker.sock.connect(self.address)
            worker.beat.connect(self.address)
            for slot in worker.slot_socks:
                slot.connect(self.address)
            self._hello(worker, now)

    def run_once(self, timeout: float) -> None:
        """Handle what arrived within ``timeout`` seconds, send heartbeats and retries due."""
        for fd, _ in self._epoll.poll(timeout):
            sock, worker, role = self._by_fd[fd]
            self._drain(sock, worker, role)
        while self._touched:
            sock = self._touched.pop()
            entry = self._by_fd[sock.getsockopt(zmq.FD)]
            self._drain(sock, entry[1], entry[2])
        now = time.monotonic()
        while self._beats and self._beats[0][0] <= now:
            _, _, worker = heapq.heappop(self._beats)
            if worker.registered:
                send(worker.beat, p.Heartbeat(worker.identity))
                self.counters.heartbeats += 1
                self._beat_after(worker, now)

    def _beat_after(self, worker: _Worker, now: float) -> None:
        heapq.heappush(self._beats, (now + worker.interval, next(self._beat_order), worker))

    def retry_due(self) -> None:
        """Hellos and registrations left unanswered for too long go out again."""
        now = time.monotonic()
        for worker in self._workers:
            if len(worker.welcomed) < len(worker.slots):
                if now - worker.hello_sent > _HELLO_AGAIN:
                    self._hello(worker, now)
            elif not worker.registered and now - worker.register_sent > _REGISTER_AGAIN:
                self._register(worker, now)

    def take_counters(self) -> Counters:
        taken = self.counters
        # Registration is a state, not an event count: it stays.
        self.counters = Counters(
            workers=taken.workers,
            registered=taken.registered,
            first_registered=taken.first_registered,
            last_registered=taken.last_registered,
        )
        return taken

    def close(self) -> None:
        for worker in self._workers:
            if worker.registered:
                send(worker.sock, p.Goodbye())
        self._epoll.close()
        self._context.destroy(linger=0)

    # ---------------------------------------------------------------------- protocol

    def _hello(self, worker: _Worker, now: float) -> None:
        worker.hello_sent = now
        for slot, sock in zip(worker.slots, worker.slot_socks, strict=True):
            if slot not in worker.welcomed:
                send(sock, p.SlotHello(p.PROTOCOL_VERSION, worker.identity, ""))
                self._touched.add(sock)

    def _register(self, worker: _Worker, now: float) -> None:
        worker.register_sent = now
        send(
            worker.sock,
            p.Register(
                p.PROTOCOL_VERSION,
                worker.name,
                "simulated",
                self._pid,
                len(worker.slots),
                {},
                {},
                "",
                list(worker.slots),
            ),
        )
        self._touched.add(worker.sock)

    def _drain(self, sock: zmq.Socket[Any], worker: _Worker, role: int) -> None:
        # ZMQ_FD signals a change, not a level: read until the socket says it holds nothing.
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            parts = recv_parts(sock, zmq.NOBLOCK)
            try:
                _, body = split_envelope(parts, routed=False)
                message, _ = parse(body)
            except p.ProtocolError as error:
                self.counters.errors.append(f"{worker.name}: malformed: {error}")
                continue
            if role >= 0:
                self._on_slot_message(sock, worker, role, message)
            else:
                self._on_worker_message(worker, message)

    def _on_slot_message(
        self, sock: zmq.Socket[Any], worker: _Worker, role: int, message: p.Message
    ) -> None:
        match message:
            case p.Run(attempts=attempts):
                self.counters.runs += 1
                self.counters.attempts += len(attempts)
                results = [
                    p.AttemptResult(a.attempt_id, "ok", self._none, seconds=_NOOP_SECONDS)
                    for a in attempts
                ]
                send(sock, p.Done(results))
            case p.SlotWelcome():
                worker.welcomed.add(worker.slots[role])
                if len(worker.welcomed) == len(worker.slots) and not worker.register_sent:
                    self._register(worker, time.monotonic())
            case p.Kill() | p.LeaseOpen() | p.LeaseClose():
                pass  # everything it was sent is done already; it has no direct endpoint
            case _:
                self.counters.errors.append(f"{worker.name} slot {role}: {message!r}")

    def _on_worker_message(self, worker: _Worker, message: p.Message) -> None:
        match message:
            case p.Registered(heartbeat_interval=interval):
                now = time.monotonic()
                worker.interval = interval  # again: a new interval (as the real worker takes it)
                if not worker.registered:
                    worker.registered = True
                    self.counters.registered += 1
                    self.counters.first_registered = self.counters.first_registered or now
                    self.counters.last_registered = now
                    self._beat_after(worker, now)
            case p.Reregister():
                if not worker.registered:
                    return  # a Register is on its way (as the real worker reasons)
                self.counters.reregistered += 1
                worker.registered = False
                self.counters.registered -= 1
                self._register(worker, time.monotonic())
            case p.Kill():
                pass
            case _:
                self.counters.errors.append(f"{worker.name}: {message!r}")


# --------------------------------------------------------------------- processes


def _serve(
    address: str, count: int, slots: int, prefix: str, conn: multiprocessing.connection.Connection
) -> None:
    workers = SimulatedWorkers(address, count, slots=slots, prefix=prefix)
    conn.send("ready")
    conn.recv()  # "go": every simulator process connects at the same moment
    workers.connect()
    next_retry = time.monotonic() + 1.0
    try:
        while True:
            workers.run_once(0.02)
            if conn.poll():
                command = conn.recv()
                if command == "counters":
                    conn.send(workers.take_counters())
                elif command == "stop":
                    break
            if time.monotonic() >= next_retry:
                workers.retry_due()
                next_retry = time.monotonic() + 1.0
    finally:
        workers.close()
        conn.send(workers.take_counters())


class SimulatorFleet:
    """The simulator processes of :func:`start_simulators`."""

    def __init__(
        self,
        processes: list[multiprocessing.process.BaseProcess],
        conns: list[multiprocessing.connection.Connection],
        count: int,
    ) -> None:
        self._processes = processes
        self._conns = conns
        self.count = count

    def go(self) -> float:
        """Connect every simulated worker; returns when (``time.monotonic()``) it started."""
        started = time.monotonic()
        for conn in self._conns:
            conn.send("go")
        return started

    def counters(self) -> Counters:
        """The simulators' counters since the last call, summed (registered: the current)."""
        total = Counters()
        for conn in self._conns:
            conn.send("counters")
        for conn in self._conns:
            total.add(conn.recv())
        return total

    def wait_registered(self, deadline: float) -> Counters:
        """Counters once every worker is registered (or at ``deadline``, monotonic)."""
        while True:
            counters = self.counters()
            if counters.registered >= self.count or time.monotonic() > deadline:
                return counters
            time.sleep(0.05)

    def stop(self) -> Counters:
        total = Counters()
        for conn in self._conns:
            try:
                conn.send("stop")
            except OSError:
                continue
        for conn, process in zip(self._conns, self._processes, strict=True):
            try:
                if conn.poll(10):
                    total.add(conn.recv())
            except (EOFError, OSError):
                pass
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        return total


def start_simulators(
    address: str, count: int, *, slots: int = 2, per_process: int = _MAX_PER_PROCESS
) -> SimulatorFleet:
    """Start processes simulating ``count`` workers (``per_process`` each at most), ready to
    :meth:`~SimulatorFleet.go`."""
    context = multiprocessing.get_context("spawn")
    processes: list[multiprocessing.process.BaseProcess] = []
    conns: list[multiprocessing.connection.Connection] = []
    left, index = count, 0
    while left > 0:
        share = min(per_process, left)
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_serve, args=(address, share, slots, f"sim{index}", theirs), daemon=True
        )
        process.start()
        processes.append(process)
        conns.append(ours)
        left -= share
        index += 1
    fleet = SimulatorFleet(processes, conns, count)
    for conn in conns:
        if not conn.poll(60) or conn.recv() != "ready":
            fleet.stop()
            raise RuntimeError("a simulator process did not start")
    return fleet
