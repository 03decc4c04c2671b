"""The client: a ``concurrent.futures.Executor`` backed by a pydispatch dispatcher.

:class:`Client` is the executor's facade: it checks arguments where the caller can be told,
chunks ``map``, and keeps the executor's contract (no new work after ``shutdown``, what
``cancel`` may stop). Everything that talks to the dispatcher is its :class:`ClientIO`
(``client_io``): the sockets and the I/O thread, hello, heartbeat and reconnect, batching of
``Submit`` messages, the table of outstanding futures and their results, and the direct lane of
a lease. :class:`TaskFuture` is defined there too (it is made and resolved there) and
re-exported here.

Cancellation, as for the standard library's executors:

* A future is RUNNING once its task has started in its slot: the slot reports a task that has
  run for about a millisecond (a task that ends sooner is known started by its result). A task
  prefetched to a slot, waiting there behind the slot's current task, is not running.
  ``future.cancel()`` on a task that has not started returns True, the future is cancelled at
  once (CANCELLED_AND_NOTIFIED: ``wait()`` and ``as_completed()`` count it done) and the task
  never runs: the dispatcher drops it from its queue, or tells the slot holding it to skip it.
  On a running or finished task it returns False.
* So ``future.cancel()`` asks: a task not sent yet is dropped at once; for one sent, it waits
  for the dispatcher's answer (a round trip; two when the task waits in a slot's queue, which
  skips it), so that True always means the task never runs. From a done-callback (the client's
  I/O thread, which cannot wait for that answer) it cancels the future at once: a task that
  started meanwhile then runs and its result is discarded. The future resolves exactly once.
* A lone task sent on the direct lane (see ``client_io``) goes to an idle slot reserved for it
  and starts at once: it is RUNNING when sent.
* ``client.cancel(future, force=True)`` also stops a running task: the dispatcher tells its
  worker, which kills the slot subprocess running it (SIGKILL) and starts a fresh slot; the
  future is then cancelled and the slot is free again. Anything the task did so far stays done.
  A forced cancel that races with the task's own end may arrive too late: the future then
  gets the task's result (or exception) instead; it resolves exactly once either way.

Interpreter exit, as ``concurrent.futures.thread``: a client never closed still gets its
outstanding futures done before it closes (a hook run when the main thread ends, before
``atexit`` handlers), and ``submit`` then raises ``RuntimeError``. A dispatcher that stops
answering is logged within a few seconds, and after ``reconnect_timeout`` every unresolved
future fails with ``ConnectionError`` (see ``client_io``).
"""

from __future__ import annotations

import collections
import itertools
import math
import operator
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_futures
from typing import Any, Final

from .._exports import publish
from ..wire import protocol as p
from ..wire.security import Keys, resolve_keys
from ..wire.transport import DEFAULT_MAX_MESSAGE_SIZE, FrameLike, dumps, frame_sizes, request
from .client_io import DEFAULT_RECONNECT_TIMEOUT, ClientIO, TaskFuture, interpreter_exiting
from .lane import Lane

__all__ = ["Client", "TaskFuture", "fetch_status"]

_CHUNK_BYTES: Final = 1 << 20  # auto-batching: at most about this many pickled bytes per chunk
_CHUNKS_PER_SLOT: Final = 4  # ...and at least this many chunks per slot, to balance load
_SAMPLE: Final = 32  # items pickled to size the chunks
# Items per chunk of an input of unknown length at most (a generator): its chunks cannot be
# balanced over the slots by count, so they are kept small enough to balance by number.
_UNSIZED_CHUNK: Final = 1024
# How long shutdown(cancel_futures=True) and a map dropped early wait for the dispatcher to
# answer their cancel (one round trip for all; a dispatcher gone must not hold them).
_CANCEL_ANSWER_WAIT: Final = 5.0
# Chunks in flight per slot by default (map's buffersize): twice what balancing asks for.
_BUFFER_PER_SLOT: Final = 2 * _CHUNKS_PER_SLOT


class Client(Executor):
    """Submit work to the dispatcher at ``address`` (``tcp://host:port`` or ``ipc://path``).

    ``reconnect_timeout`` (seconds, default 60): with work outstanding, a dispatcher that does
    not answer for this long is given up on, and every unresolved future fails with a
    ``ConnectionError`` naming its address and how long the client waited (a warning is logged
    after a few seconds of silence already).

    ``keys`` (a keys directory made by ``pydispatch keys``) and ``identity`` (whose key there):
    talk CurveZMQ as that identity; by default ``PYDISPATCH_KEYS`` and ``PYDISPATCH_IDENTITY``
    (neither set: plain text, as a LocalCluster without keys speaks).

    ``name``: what the dispatcher's task metrics count this client's tasks under (the first 20
    names a dispatcher hears get a ``client`` label each, later ones count as ``other``); by
    default the name of the script or ``-m`` module the process runs.
    """

    def __init__(
        self,
        address: str,
        *,
        name: str = "",
        connect_timeout: float = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
        keys: str | Keys | None = None,
        identity: str | None = None,
    ) -> None:
        if not reconnect_timeout > 0:
            raise ValueError("reconnect_timeout must be > 0")
        self.address = address
        self.keys = keys = resolve_keys(keys, identity)
        self._io = ClientIO(
            self, address, name or _default_name(), max_message_size, reconnect_timeout, keys=keys
        )
        # A plain attribute, not a property: a future's result() reaches the lane through it.
        self._lane: Lane = self._io.lane
        reply = self._io.welcome(connect_timeout)
        if reply is None:
            self._abort()
            why = f" (or it refused the key of {self.keys.name!r})" if self.keys else ""
            raise ConnectionError(f"no dispatcher answered at {address}{why}")
        if isinstance(reply, p.Error):
            self._abort()
            raise ConnectionError(f"the dispatcher refused this client: {reply.message}")

    @property
    def total_slots(self) -> int:
        """The cluster's slots, as the dispatcher last said (in its welcome)."""
        return self._io.total_slots

    @property
    def _thread(self) -> threading.Thread:
        """The I/O thread (it ends after shutdown or terminate)."""
        return self._io.thread

    # ----------------------------------------------------------------- executor API

    def submit(  # type: ignore[override]
        self,
        fn: Callable[..., Any],
        /,
        *args: Any,
        resources: dict[str, float] | None = None,
        labels: dict[str, str] | None = None,
        priority: int = 0,
        retries: int = 3,
        **kwargs: Any,
    ) -> TaskFuture:
        """Run ``fn(*args, **kwargs)`` on a worker.

        ``resources`` (amounts a worker must have free, e.g. ``{"gpu": 1}``), ``labels`` (exact
        matches on the worker's labels, e.g. ``{"zone": "a"}``), ``priority`` (higher first) and
        ``retries`` (re-runs after losing a worker; a task's own exception is not retried) are
        taken by pydispatch and not passed to ``fn``.
        """
        return self._submit(p.KIND_CALL, fn, (args, kwargs), resources, labels, priority, retries)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        buffersize: int | None = None,
        resources: dict[str, float] | None = None,
        labels: dict[str, str] | None = None,
        priority: int = 0,
        retries: int = 3,
        progress: bool = False,
    ) -> Iterator[Any]:
        """Like ``Executor.map``; items are sent in chunks, sized automatically by default.
        ``progress=True``: a ``tqdm`` bar counts the results as they are yielded (in a
        terminal or Jupyter; its total is the input's length when it has one).

        The input is read lazily: at most ``buffersize`` chunks are out (submitted, their
        results not yielded yet) at a time, the first of them submitted at once, and one more
        is taken from the input as each is yielded (as ``ProcessPoolExecutor.map``'s
        ``buffersize`` in Python 3.14, where it counts chunks too). ``buffersize=None``: a
        bound of its own, 8 chunks per slot of the cluster.

        With ``chunksize=None`` chunks hold at most about 1 MiB of pickled arguments and, for an
        input of known length, there are at least four per slot of the cluster (an input of
        unknown length, e.g. a generator, gets chunks of at most 1024 items), so large maps
        need few messages while every slot still gets work. An exception in a chunk is raised
        when iteration reaches it. Items already yielded are not kept.
        """
        if buffersize is not None:
            if type(buffersize) is not int:
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        if chunksize is not None and chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        end = None if timeout is None else time.monotonic() + timeout
        kind = p.KIND_MAP1 if len(iterables) == 1 else p.KIND_CHUNK
        hint = min((operator.length_hint(i) for i in iterables), default=0)
        source: Iterator[Any] = (
            iter(iterables[0]) if kind == p.KIND_MAP1 else zip(*iterables, strict=False)
        )
        # Only as much is read ahead as sizing the chunks needs (nothing with a chunksize).
        sample = list(itertools.islice(source, 1 if chunksize is not None else _SAMPLE))
        if not sample:
            return iter(())
        size = chunksize if chunksize is not None else self._auto_chunksize(sample, hint)
        window = buffersize or max(1, self.total_slots) * _BUFFER_PER_SLOT
        source = itertools.chain(sample, source)
        del sample  # (held by the chain only until it is taken)
        chunks = iter(lambda: list(itertools.islice(source, size)), [])

        def submit(chunk: list[Any]) -> TaskFuture:
            return self._submit(kind, fn, chunk, resources, labels, priority, retries)

        futures = collections.deque(map(submit, itertools.islice(chunks, window)))
        results = itertools.chain.from_iterable(self._chunk_results(futures, chunks, submit, end))
        if progress:
            from tqdm.auto import tqdm

            return iter(tqdm(results, total=hint or None, unit="item"))
        return results

    def _chunk_results(
        self,
        futures: collections.deque[TaskFuture],
        chunks: Iterator[list[Any]],
        submit: Callable[[list[Any]], TaskFuture],
        end: float | None,
    ) -> Iterator[Iterator[Any]]:
        # Items are handed out by map objects in C: a generator resumed once per item cost
        # more than the whole map of a cheap function (3-4 ms per 100k items, measured). Each
        # item is popped from its chunk's list as it goes: none is kept once yielded.
        try:
            while futures:
                future = futures.popleft()
                left = None if end is None else end - time.monotonic()
                values: list[Any] = future.result(timeout=left)
                del future
                for chunk in itertools.islice(chunks, 1):  # the window stays full
                    futures.append(submit(chunk))
                values.reverse()
                yield map(values.pop, itertools.repeat(-1, len(values)))
        finally:  # iteration stopped early (or timed out): the rest is not wanted
            # One request for all, its answer awaited briefly (the dispatcher may be what
            # timed out).
            pending = [f for f in futures if f._state == "PENDING"]
            if pending:
                self._io.cancel_and_await(pending, _CANCEL_ANSWER_WAIT)

    def _auto_chunksize(self, sample: list[Any], length: int) -> int:
        slots = max(1, self.total_slots)
        if length > 0:
            by_balance = math.ceil(length / (slots * _CHUNKS_PER_SLOT))
        else:
            by_balance = _UNSIZED_CHUNK
        frames: list[FrameLike] = []
        dumps(sample, frames)
        per_item = max(1, sum(frame_sizes(frames)) // len(sample))
        by_bytes = max(1, _CHUNK_BYTES // per_item)
        return max(1, min(by_balance, by_bytes))

    def cancel(self, future: Future[Any], force: bool = False) -> bool:
        """Cancel a task; with ``force`` a running one is killed (its slot process is replaced).

        Without ``force`` this is ``future.cancel()``: True if the task had not started (the
        future is cancelled now and the task never runs, whether it waited at the dispatcher or
        in a slot's queue), False if it is running or done (it goes on; nothing is asked of the
        dispatcher). With ``force``, True
        if a cancellation was requested: the future ends cancelled once the dispatcher confirms
        it (a queued task at once; a running one once its slot process is killed), or gets the
        task's outcome if the task ended first. False if the future is done already.
        """
        if not isinstance(future, TaskFuture) or future._client is not self:
            raise ValueError("not a future of this client")
        if future.done():
            return False
        if not force:
            return future.cancel()
        self._io.force_cancel(future)
        return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        futures = self._io.start_closing()
        if cancel_futures:
            # One request for all; each future is then cancelled, or runs if it started.
            pending = [f for f in futures if f._state == "PENDING"]
            self._io.cancel_and_await(pending, _CANCEL_ANSWER_WAIT)
        self._io.wake()
        if wait:
            wait_futures(futures)
            self._io.thread.join()

    close = shutdown

    def status(self, timeout: float = 5.0) -> p.StatusReply:
        """Workers, slots and task counts as the dispatcher sees them."""
        return self._io.status(timeout)

    def terminate(self, reason: str = "the client was terminated") -> None:
        """Close now: every unfinished future fails with ``ConnectionError(reason)``.

        For when the dispatcher is gone for good (``LocalCluster.close`` does this), where
        ``shutdown`` would wait for results that can no longer come.
        """
        self._io.terminate(reason)

    # ------------------------------------------------------------------ internals

    def _submit(
        self,
        kind: int,
        fn: Callable[..., Any],
        args: object,
        resources: dict[str, float] | None,
        labels: dict[str, str] | None,
        priority: int,
        retries: int,
    ) -> TaskFuture:
        io = self._io
        if interpreter_exiting():
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        if io.closing:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        # Checked here, where the caller can be told: the wire takes exact types only.
        if type(priority) is not int:
            priority = _integer("priority", priority)
        if type(retries) is not int:
            retries = _integer("retries", retries)
        resources = _checked_resources(resources) if resources else None
        labels = _checked_labels(labels) if labels else None
        return io.submit(kind, fn, args, resources, labels, priority, retries)

    def _send_control(self, message: p.Message) -> None:
        """Send ``message`` to the dispatcher, after the tasks submitted before it (a job
        master's reports go this way)."""
        self._io.send_control(message)

    def _abort(self) -> None:
        self.terminate("the client could not connect")


def _default_name() -> str:
    """The running script's name (``etl`` for ``python etl.py``), the ``-m`` module's, or
    ``client`` (an interactive session, a notebook)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name).removesuffix(".__main__")
    path = getattr(main, "__file__", None)
    return os.path.splitext(os.path.basename(path))[0] if isinstance(path, str) else "client"


def _integer(name: str, value: object) -> int:
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None


def _checked_resources(resources: Mapping[str, float]) -> dict[str, float]:
    # Types only: whether an amount makes sense (finite, >= 0) the dispatcher judges, for
    # every client alike (the task then fails with "invalid demand").
    checked = {}
    for name, amount in resources.items():
        if not isinstance(name, str):
            raise TypeError(f"resource names must be strings, not {type(name).__name__}")
        try:
            checked[name] = float(amount)
        except (TypeError, ValueError):
            raise TypeError(f"resource {name}={amount!r} is not a number") from None
    return checked


def _checked_labels(labels: Mapping[str, str]) -> dict[str, str]:
    for name, value in labels.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"labels must map strings to strings, not {name!r}: {value!r}")
    return dict(labels)


def fetch_status(
    address: str, timeout: float = 5.0, keys: str | Keys | None = None
) -> p.StatusReply:
    """Ask a dispatcher for its status without becoming a client (used by the CLI)."""
    message = request(address, p.StatusRequest(), timeout, keys)
    if isinstance(message, p.Error):
        raise PermissionError(f"the dispatcher at {address} refused: {message.message}")
    if not isinstance(message, p.StatusReply):
        raise p.ProtocolError(f"expected StatusReply, got {type(message).__name__}")
    return message


def admin_request(
    address: str,
    message: p.DrainWorker | p.CancelTasksOf,
    timeout: float = 5.0,
    keys: str | Keys | None = None,
) -> p.AdminReply:
    """Send a dispatcher an admin's request (used by the CLI); PermissionError if its key is
    not an admin's, LookupError if the request named nothing there."""
    message_back = request(address, message, timeout, keys)
    if isinstance(message_back, p.Error):
        raise PermissionError(f"the dispatcher at {address} refused: {message_back.message}")
    if not isinstance(message_back, p.AdminReply):
        raise p.ProtocolError(f"expected AdminReply, got {type(message_back).__name__}")
    if not message_back.found:
        raise LookupError(message_back.detail)
    return message_back


# Users import these from ``pydispatch``: they carry that name (see ``pydispatch._exports``).
publish("pydispatch", globals(), ["Client", "TaskFuture"])
