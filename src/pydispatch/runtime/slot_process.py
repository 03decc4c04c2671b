"""How a worker starts a slot process: forked from the worker when that is safe, else a fresh
interpreter (``python -m pydispatch.runtime.slot``).

A fresh interpreter costs about 0.1 s of CPU before the slot can say hello (the interpreter,
``site`` and the slot's imports: zmq, msgspec, cloudpickle), and a worker had to pay it for each
slot at start. The worker has imported all of that already (it imports ``runtime.slot``
itself), so a fork costs a few milliseconds. Forking is safe here because of what the child
does and does not do:

* it uses nothing of the worker's ZeroMQ context (it makes its own, as the slot's ``main``
  always did) and closes the worker's sockets' file descriptors, so that the dispatcher sees
  the worker's connections close when the worker dies, not when its slots notice it;
* the worker forks only from its main thread while it has no other thread: its first slots,
  before its heartbeat thread starts. A slot replaced later (a force-cancel, a slot that died)
  and the slots of a worker inside someone else's program with threads of its own (a test, an
  embedding application) are fresh interpreters: another thread may hold a lock (in libzmq, in
  the allocator of a library) that the child would wait for forever;
* the child ends with ``os._exit``: nothing of the worker (its atexit handlers, its finally
  blocks, its temporary directory) runs twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Protocol

__all__ = ["ForkedProcess", "SlotProcess", "fork_process"]

_WAIT_STEP = 0.002  # seconds between two looks at a forked child that is ending


class SlotProcess(Protocol):
    """What a worker needs of a slot's process (a ``subprocess.Popen`` is one)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


class ForkedProcess:
    """A child made by :func:`fork_process`, with ``Popen``'s ``poll``/``kill``/``wait``
    (``returncode`` negative for a signal, as ``Popen``'s)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): gone all the same
                self.returncode = -signal.SIGKILL
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(_WAIT_STEP)
        return code


def fork_process(run: Callable[[], None], environment: dict[str, str]) -> ForkedProcess:
    """Run ``run()`` in a forked child with ``environment`` as its ``os.environ`` and
    ``/dev/null`` as its stdin; its exit code is ``SystemExit``'s, 1 on any other exception
    (its traceback printed, as an interpreter would), 0 when ``run`` returns."""
    for stream in (sys.stdout, sys.stderr):  # else the child would write them out again
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid:
        return ForkedProcess(pid)
    code = 1
    try:
        _close_inherited_sockets()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.environ.clear()
        os.environ.update(environment)
        run()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _close_inherited_sockets() -> None:
    """Close the parent's sockets (its ZeroMQ connections): not stdin/out/err, whatever they
    are, nor the parent's other files (a log file its logging still writes to)."""
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []:
        fd = int(name)
        if fd <= 2:
            continue
        with contextlib.suppress(OSError):  # the directory's own descriptor, closed by now
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
