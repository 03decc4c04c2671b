"""A worker slot: a subprocess that runs one task at a time for its worker.

Each slot is its own process so that a running task can be force-cancelled (the worker kills
the slot with SIGKILL and starts a fresh one) and so that a task that crashes its interpreter
takes only its slot down. The worker talks to it over a PAIR socket on ``ipc://`` using the
same messages as the dispatcher (``Run`` in, ``Done`` out), forwarding frames without copies.

Run as ``python -m pydispatch._slot ENDPOINT WORKER_PID``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import zmq

from . import protocol as p
from .errors import RemoteError
from .transport import FrameLike, dumps, loads, make_socket, parse

READY = b"ready"  # the first message a slot sends once connected


def _watch_parent(worker_pid: int) -> None:
    # If the worker dies (even by SIGKILL) its slots must not outlive it.
    while True:
        time.sleep(0.25)
        if os.getppid() != worker_pid:
            os._exit(1)


def _run_one(
    spec: p.RunSpec, frames: list[zmq.Frame], functions: dict[bytes, Callable[..., Any]]
) -> tuple[p.AttemptResult, list[FrameLike]]:
    out: list[FrameLike] = []
    try:
        key = spec.fn.data if spec.fn.frame == p.INLINE else frames[spec.fn.frame].bytes
        fn = functions.get(key)
        if fn is None:
            if len(functions) > 256:
                functions.clear()
            fn = functions[key] = loads(spec.fn, frames)
        args = loads(spec.args, frames)
        if spec.kind == p.KIND_MAP1:
            value: object = [fn(item) for item in args]
        elif spec.kind == p.KIND_CHUNK:
            value = [fn(*item) for item in args]
        else:
            positional, keywords = args
            value = fn(*positional, **keywords)
        return p.AttemptResult(spec.attempt_id, "ok", dumps(value, out)), out
    except BaseException as exc:  # the task's failure, whatever it is, goes back to the client
        text = "".join(traceback.format_exception(exc))
        out = []
        try:
            blob = dumps(exc, out)
        except Exception:
            out = []
            blob = dumps(RemoteError(f"{type(exc).__name__}: {exc}"), out)
        error = f"{type(exc).__name__}: {exc}"
        return p.AttemptResult(spec.attempt_id, "error", blob, error, text), out


def main(endpoint: str, worker_pid: int) -> None:
    # The worker decides when a slot ends; a terminal's Ctrl-C or a SIGTERM to the process
    # group must not kill tasks that a draining worker wants to finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(worker_pid,), daemon=True).start()
    context: zmq.Context[Any] = zmq.Context()
    sock = make_socket(context, zmq.PAIR)
    sock.connect(endpoint)
    sock.send(READY)
    functions: dict[bytes, Callable[..., Any]] = {}
    skip: set[int] = set()
    while True:
        message, frames = parse(sock.recv_multipart(copy=False))
        if isinstance(message, p.Kill):
            skip.update(message.attempt_ids)
            continue
        if not isinstance(message, p.Run):
            continue
        for spec in message.attempts:
            # While a batch runs the worker sends only Kill: attempts of this batch that must
            # not start. (A running one is stopped by killing this process instead.)
            while sock.poll(0):
                control, _ = parse(sock.recv_multipart(copy=False))
                if isinstance(control, p.Kill):
                    skip.update(control.attempt_ids)
            if spec.attempt_id in skip:
                skip.discard(spec.attempt_id)
                cancelled = p.AttemptResult(spec.attempt_id, "cancelled", None, "cancelled")
                sock.send_multipart([p.encode(p.Done([cancelled]))])
                continue
            # Each result goes back at once: if the worker must kill this process for a
            # running attempt, no finished result is held here to be lost (and re-run).
            result, out = _run_one(spec, frames, functions)
            sock.send_multipart([p.encode(p.Done([result])), *out], copy=False)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
