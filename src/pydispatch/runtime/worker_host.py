"""A LocalCluster's worker host: one interpreter that imports the worker's modules once and
forks every worker of the cluster from them.

Each worker used to be a fresh interpreter (``python -c``): ~0.1 s of CPU for the interpreter
and its imports (zmq, msgspec, cloudpickle, the worker and the slot), and with ``preload``
(a dataflow environment: numpy, the plan, the slices' operators) another ~0.15 s, paid again
by the slot that ran the first slice. On two cores that was most of the seed example's time.
The host pays it once; a fork costs a few milliseconds.

Forking is safe here for the reasons ``runtime.slot_process`` gives for slots: the host has
no thread of its own and no ZeroMQ context (a worker makes its own after the fork), and the
child ends with ``os._exit``. One library thread may exist: numpy's OpenBLAS starts its pool
when imported (a ``preload`` of numpy); OpenBLAS registers a ``pthread_atfork`` handler that
stops the pool around a fork and the child starts its own on first use (what makes numpy
usable under ``multiprocessing``'s fork), and an idle pool holds no lock a child could need.

The host and the cluster (its parent) talk over two pipes, one JSON line a request
(``{"address", "options", "environment"}``: fork a worker), one line an event: ``started PID``
in answer to each request, ``exited PID CODE`` when a worker ended (the host reaps its
children; ``CODE`` as ``Popen.returncode``). :class:`HostedProcess` gives the cluster
``Popen``'s ``pid``, ``poll``, ``wait``, ``kill``, ``send_signal`` of a worker it did not fork.
The host ends when the cluster closes its request pipe or its parent is gone; its workers,
whose ``exit_with_parent`` names the host, stop when it is gone.
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

__all__ = ["HOST_MAIN", "HostedProcess", "WorkerHost", "serve"]

#: The host's command (``python -c HOST_MAIN REQUESTS_FD EVENTS_FD PARENT_PID PRELOAD``).
HOST_MAIN: Final = """\
import logging
logging.basicConfig(level="WARNING", format="%(asctime)s %(name)s %(levelname)s %(message)s")
from pydispatch.runtime.worker_host import serve
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
    """The host's main: preload, then fork workers on request and report their ends."""
    from . import worker  # noqa: F401  (imported here: the cluster's side needs none of it)

    requests_fd, events_fd, parent = (int(arg) for arg in sys.argv[1:4])
    for name in json.loads(sys.argv[4]):
        importlib.import_module(name)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler: waking select
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    pending = b""
    host_fds = (requests_fd, events_fd, wake_read, wake_write)
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
            pid = _start_worker(json.loads(line), parent, host_fds)
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


def _start_worker(request: dict[str, Any], parent: int, host_fds: tuple[int, ...]) -> int:
    from .worker import WorkerOptions, run_worker

    address: str = request["address"]
    if address.startswith("ipc://"):
        _wait_for_endpoint(address[len("ipc://") :], parent)
    options = WorkerOptions(**{**request["options"], "exit_with_parent": os.getpid()})

    def run() -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in host_fds:
            os.close(fd)
        os.setsid()  # a group of its own with its slots: ended together by killpg
        run_worker(address, options)

    return fork_process(run, request["environment"]).pid


def _wait_for_endpoint(path: str, parent: int) -> None:
    """Until the dispatcher has bound ``path`` (bounded: a worker knocks by itself later)."""
    deadline = time.monotonic() + _ENDPOINT_WAIT_S
    while not os.path.exists(path) and time.monotonic() < deadline and os.getppid() == parent:
        time.sleep(_ENDPOINT_STEP_S)


# ---------------------------------------------------------------------- in the cluster


class WorkerHost:
    """The cluster's side of a host process: ask it for workers, hear of their ends."""

    def __init__(self, preload: list[str], environment: dict[str, str]) -> None:
        requests_read, self._requests = os.pipe()
        self._events, events_write = os.pipe()
        command = [
            sys.executable, "-c", HOST_MAIN,
            str(requests_read), str(events_write), str(os.getpid()), json.dumps(preload),
        ]  # fmt: skip
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                pass_fds=(requests_read, events_write),
                start_new_session=True,
                env=environment,
            )
        finally:
            os.close(requests_read)
            os.close(events_write)
        os.set_blocking(self._events, False)
        self._buffer = b""
        self._workers: dict[int, HostedProcess] = {}
        self._started: list[int] = []  # answers not yet taken by start_worker
        self._exits: dict[int, int] = {}  # exit codes of pids start_worker has not taken yet
        self._lock = threading.Lock()  # poll() may be called from any thread
        self._requesting = threading.Lock()
        self._closed = False

    def start_worker(
        self, address: str, options: dict[str, Any], environment: dict[str, str]
    ) -> HostedProcess:
        """Ask for a worker; return it once the host says its pid."""
        request = {"address": address, "options": options, "environment": environment}
        line = json.dumps(request).encode() + b"\n"
        with self._requesting:  # one request at a time: the answers come in order
            try:
                os.write(self._requests, line)  # < 64 KiB: one write into an empty pipe
            except (BrokenPipeError, OSError):
                raise RuntimeError("the cluster's worker host exited") from None
            while not self._started:
                if not self.update(None):
                    raise RuntimeError("the cluster's worker host exited")
            with self._lock:
                process = HostedProcess(self._started.pop(0), self)
                process.returncode = self._exits.pop(process.pid, None)
                self._workers[process.pid] = process
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
                    self._started.append(int(words[1]))
                elif words[0] == b"exited":
                    pid, code = int(words[1]), int(words[2])
                    if pid in self._workers:
                        self._workers[pid].returncode = code
                    else:  # reported before start_worker made its object
                        self._exits[pid] = code
        for process in self._workers.values():
            process.lost_host()
        return False

    def close(self, timeout: float = 5.0) -> None:
        """End the host (its workers, if any are left, stop when they see it gone)."""
        with contextlib.suppress(OSError):
            os.close(self._requests)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with self._lock:
            self._closed = True
            with contextlib.suppress(OSError):
                os.close(self._events)


class HostedProcess:
    """A worker forked by a :class:`WorkerHost`, with ``Popen``'s ``pid``, ``returncode``,
    ``poll``, ``wait``, ``kill``, ``terminate`` and ``send_signal``."""

    def __init__(self, pid: int, host: WorkerHost) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._host = host

    def poll(self) -> int | None:
        if self.returncode is None:
            self._host.update()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            if not self._host.update(left):  # gone: look at the pid now and then
                time.sleep(min(_LOST_STEP_S, left if left is not None else _LOST_STEP_S))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # until the host reports it reaped, the pid is the worker's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def lost_host(self) -> None:
        """The host is gone, and with it the exit code: only whether the pid still lives."""
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = -signal.SIGKILL
