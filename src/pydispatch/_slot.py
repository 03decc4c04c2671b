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
from .transport import FrameLike, dumps, loads, make_socket, parse, rebase

READY = b"ready"  # the first message a slot sends once connected
_HOLD = 0.002  # seconds a finished result may wait for the rest of its batch


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
    while True:
        message, frames = parse(sock.recv_multipart(copy=False))
        if not isinstance(message, p.Run):
            continue
        # Results of a batch go back together, but never held longer than _HOLD seconds:
        # small tasks cost one message per batch, a slow task's result is not delayed.
        results: list[p.AttemptResult] = []
        out: list[FrameLike] = []
        since = time.monotonic()
        for index, spec in enumerate(message.attempts):
            result, own = _run_one(spec, frames, functions)
            value = rebase(result.value, own, out) if result.value is not None else None
            results.append(
                p.AttemptResult(
                    result.attempt_id, result.status, value, result.error, result.traceback
                )
            )
            last = index == len(message.attempts) - 1
            if last or time.monotonic() - since > _HOLD:
                sock.send_multipart([p.encode(p.Done(results)), *out], copy=False)
                results, out, since = [], [], time.monotonic()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
