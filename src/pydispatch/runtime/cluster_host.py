"""A LocalCluster's host: one interpreter that forks the cluster's dispatcher and every
worker, so that what they import is imported once.

Each of them used to be a fresh interpreter (``python -c``): ~0.03 s of CPU for the
interpreter, ~0.05 s for what they all import (zmq, msgspec, cloudpickle, the protocol), then
their own modules (~0.1 s for the dispatcher's, ~0.05 s for the worker's and the slot's) and,
for a dataflow environment, the slices' (numpy, the plan, the operators: ~0.12 s), paid again
by the slot that ran the first slice. On two cores that was most of the seed example's time.
The host imports the shared modules and forks the dispatcher at once (it imports its own
while the host goes on), then the workers' modules and the ``preload``, and forks each worker
from them (its slots are forked from it: ``runtime.slot_process``).

Forking is safe here for the reasons ``runtime.slot_process`` gives for slots: the host has
no thread of its own and no ZeroMQ context (each child makes its own), and a child ends with
``os._exit``. One library thread may exist: numpy's OpenBLAS starts its pool when imported (a
``preload`` of numpy); OpenBLAS registers a ``pthread_atfork`` handler that stops the pool
around a fork and the child starts its own on first use (what makes numpy usable under
``multiprocessing``'s fork), and an idle pool holds no lock a child could need.

The host and the cluster (its parent) talk over pipes, one JSON line a request (fork a
``dispatcher`` or a ``worker`` with these options and this environment), one line an event:
``started PID`` in answer to each request, ``exited PID CODE`` when a child ended (the host
reaps its children; ``CODE`` as ``Popen.returncode``). The dispatcher's standard output (the
address it bound) goes to a pipe of its own. :class:`HostedProcess` gives the cluster
``Popen``'s ``pid``, ``poll``, ``wait``, ``kill``, ``send_signal`` of a process it did not
fork. The host ends when the cluster closes its request pipe or its parent is gone; its
children, whose ``exit_with_parent`` names the host, stop when it is gone.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Final

from .slot_process import fork_process

__all__ = ["HOST_MAIN", "ClusterHost", "HostedProcess", "serve"]

#: The host's command: ``python -c HOST_MAIN REQUESTS_FD EVENTS_FD DISPATCHER_STDOUT_FD
#: PARENT_PID PRELOAD``.
HOST_MAIN: Final = """\
import logging
logging.basicConfig(level="WARNING", format="%(asctime)s %(name)s %(levelname)s %(message)s")
from pydispatch.runtime.cluster_host import serve
serve()
"""

# How long the host waits for a dispatcher's ipc endpoint before it forks a worker anyway:
# a worker connecting before the dispatcher binds retries only after its reconnect interval
# (100-400 ms and a random part; see runtime.reconnect), the longest wait of a cluster's start.
_ENDPOINT_WAIT_S: Final = 10.0
_ENDPOINT_STEP_S: Final = 0.002
_PARENT_CHECK_S: Final = 1.0
_LOST_STEP_S: Final = 0.01


# ------------------------------------------------------------------------- in the host


def serve() -> None:
    """The host's main: fork a dispatcher or a worker on request, report their ends."""
    from ..wire import security, transport  # noqa: F401  (what every child imports)

    requests_fd, events_fd, dispatcher_out, parent = (int(arg) for arg in sys.argv[1:5])
    preload: list[str] = json.loads(sys.argv[5])
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler: waking select
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    pending = b""
    host_fds = (requests_fd, events_fd, dispatcher_out, wake_read, wake_write)
    while os.getppid() == parent:
        readable, _, _ = select.select([requests_fd, wake_read], [], [], _PARENT_CHECK_S)
        if wake_read in readable:
            os.read(wake_read, 4096)
        _report_ended(events_fd)
        if requests_fd not in readable:
            continue
        data = os.read(requests_fd, 65536)
        if not data:  # the cluster closed it (or is gone): done
            break
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            if request["kind"] == "dispatcher":
                pid = _start_dispatcher(request, dispatcher_out, host_fds)
            else:
                # The worker's modules and the preload, once, after the dispatcher's fork:
                # it starts meanwhile.
                for name in ["pydispatch.runtime.worker", *preload]:
                    importlib.import_module(name)
                pid = _start_worker(request, parent, host_fds)
            os.write(events_fd, b"started %d\n" % pid)
    _report_ended(events_fd)
    os._exit(0)  # nothing to tidy: skip the interpreter's exit (its numpy, its modules)


def _report_ended(events_fd: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
        with contextlib.suppress(OSError):  # the cluster gone: nobody to tell
            os.write(events_fd, b"exited %d %d\n" % (pid, os.waitstatus_to_exitcode(status)))


def _as_child(host_fds: tuple[int, ...], stdout: int | None = None) -> None:
    """In a forked child, first: none of the host's signal handling and pipes; a session of
    its own (ended with its children by killpg)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if stdout is not None:
        os.dup2(stdout, 1)
    for fd in host_fds:
        os.close(fd)
    os.setsid()


def _start_dispatcher(request: dict[str, Any], stdout: int, host_fds: tuple[int, ...]) -> int:
    address: str = request["address"]
    options = {**request["options"], "exit_with_parent": os.getpid()}

    def run() -> None:
        _as_child(host_fds, stdout)
        # The dispatcher's own modules: imported here, while the host imports the workers'.
        from ..wire.security import resolve_keys
        from .dispatcher import run_dispatcher

        run_dispatcher(address, keys=resolve_keys(), **options)

    return fork_process(run, request["environment"]).pid


def _start_worker(request: dict[str, Any], parent: int, host_fds: tuple[int, ...]) -> int:
    from .worker import WorkerOptions, run_worker

    address: str = request["address"]
    if address.startswith("ipc://"):
        _wait_for_endpoint(address[len("ipc://") :], parent)
    options = WorkerOptions(**{**request["options"], "exit_with_parent": os.getpid()})

    def run() -> None:
        _as_child(host_fds)
        run_worker(address, options)

    return fork_process(run, request["environment"]).pid


def _wait_for_endpoint(path: str, parent: int) -> None:
    """Until the dispatcher has bound ``path`` (bounded: a worker knocks by itself later)."""
    deadline = time.monotonic() + _ENDPOINT_WAIT_S
    while not os.path.exists(path) and time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(_ENDPOINT_STEP_S)


# ---------------------------------------------------------------------- in the cluster


class ClusterHost:
    """The cluster's side of a host process: ask it for a dispatcher and workers, hear of
    their ends."""

    def __init__(self, preload: list[str], environment: dict[str, str]) -> None:
        requests_read, self._requests = os.pipe()
        self._events, events_write = os.pipe()
        dispatcher_read, dispatcher_write = os.pipe()
        command = [
            sys.executable, "-c", HOST_MAIN, str(requests_read), str(events_write),
            str(dispatcher_write), str(os.getpid()), json.dumps(preload),
        ]  # fmt: skip
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                pass_fds=(requests_read, events_write, dispatcher_write),
                start_new_session=True,
                env=environment,
            )
        except BaseException:
            for fd in (self._requests, self._events, dispatcher_read):
                os.close(fd)
            raise
        finally:
            for fd in (requests_read, events_write, dispatcher_write):
                os.close(fd)
        #: What the dispatchers it forks write on their standard output (the address bound).
        self.dispatcher_output = dispatcher_read
        os.set_blocking(self._events, False)
        self._buffer = b""
        self._children: dict[int, HostedProcess] = {}
        self._awaiting: list[HostedProcess] = []  # requested, in order; pid not told yet
        self._lock = threading.Lock()  # poll() may be called from any thread
        self._closed = False

    def start(
        self, kind: str, address: str, options: dict[str, Any], environment: dict[str, str]
    ) -> HostedProcess:
        """Ask for a ``"dispatcher"`` or a ``"worker"``; return at once (its ``pid`` waits for
        the host's answer: the host may be importing, and the caller has better to do)."""
        request = {"kind": kind, "address": address, "options": options}
        line = json.dumps({**request, "environment": environment}).encode() + b"\n"
        with self._lock:
            if self._closed:
                raise RuntimeError("the cluster's host process exited")
            try:
                os.write(self._requests, line)  # < 64 KiB: one write into an empty pipe
            except OSError:
                raise RuntimeError("the cluster's host process exited") from None
            process = HostedProcess(self)
            self._awaiting.append(process)
        return process

    def update(self, timeout: float | None = 0.0) -> bool:
        """Read what the host said (waiting up to ``timeout`` for something, None: forever);
        False once the host is gone. The wait holds no lock: another thread's ``poll`` does
        not wait for it."""
        if not self._closed:
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile
                select.select([self._events], [], [], timeout)
        with self._lock:
            return self._read()

    def _read(self) -> bool:
        """Read the events there are (without waiting); False once the host is gone."""
        while not self._closed:
            try:
                data = os.read(self._events, 65536)
            except BlockingIOError:  # nothing (more) to read
                return True
            except OSError:
                data = b""
            if not data:
                self._closed = True
                break
            self._buffer += data
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                words = line.split()
                if words[0] == b"started":
                    process = self._awaiting.pop(0)
                    process.known_as(int(words[1]))
                    self._children[process.pid] = process
                elif words[0] == b"exited" and int(words[1]) in self._children:
                    self._children[int(words[1])].returncode = int(words[2])
        for process in [*self._children.values(), *self._awaiting]:
            process.lost_host()
        return False

    def close(self, timeout: float = 5.0) -> None:
        """End the host (its children, if any are left, stop when they see it gone)."""
        with contextlib.suppress(OSError):
            os.close(self._requests)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with self._lock:
            self._closed = True
            for fd in (self._events, self.dispatcher_output):
                with contextlib.suppress(OSError):
                    os.close(fd)


class HostedProcess:
    """A process forked by a :class:`ClusterHost`, with ``Popen``'s ``pid``, ``returncode``,
    ``poll``, ``wait``, ``kill``, ``terminate`` and ``send_signal``."""

    def __init__(self, host: ClusterHost) -> None:
        self._pid: int | None = None
        self.returncode: int | None = None
        self._host = host

    @property
    def pid(self) -> int:
        """Its process id (once the host has forked it: waits for that)."""
        while self._pid is None:
            if not self._host.update(None) and self._pid is None:
                raise RuntimeError("the cluster's host process exited before it started this")
        return self._pid

    def known_as(self, pid: int) -> None:
        self._pid = pid

    def poll(self) -> int | None:
        if self.returncode is None:
            self._host.update()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"pid {self._pid}", timeout or 0.0)
            if not self._host.update(left):  # gone: look at the pid now and then
                time.sleep(min(_LOST_STEP_S, left if left is not None else _LOST_STEP_S))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # until the host reports it reaped, the pid is the child's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def lost_host(self) -> None:
        """The host is gone, and with it the exit code: only whether the pid still lives."""
        if self.returncode is None:
            if self._pid is None:  # never started
                self.returncode = -signal.SIGKILL
                return
            try:
                os.kill(self._pid, 0)
            except ProcessLookupError:
                self.returncode = -signal.SIGKILL
