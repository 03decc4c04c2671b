"""The client: a ``concurrent.futures.Executor`` backed by a pydispatch dispatcher.

:class:`Client` is the executor's facade: it checks arguments where the caller can be told,
chunks ``map``, and keeps the executor's contract (no new work after ``shutdown``, what
``cancel`` may stop). Everything that talks to the dispatcher is its :class:`ClientIO`
(``client_io``): the sockets and the I/O thread, hello, heartbeat and reconnect, batching of
``Submit`` messages, the table of outstanding futures and their results, and the direct lane of
a lease. :class:`TaskFuture` is defined there too (it is made and resolved there) and
re-exported here.

Cancellation:

* ``future.cancel()`` works while the task is pending (queued at the dispatcher): the future is
  cancelled at once and the dispatcher drops the task. Once the dispatcher has placed it on a
  worker the future is RUNNING and ``cancel()`` returns False, as for any executor.
* ``client.cancel(future, force=True)`` also stops a running task: the dispatcher tells its
  worker, which kills the slot subprocess running it (SIGKILL) and starts a fresh slot; the
  future is then cancelled and the slot is free again. Anything the task did so far stays done.
  A task placed on a worker but not started yet (prefetch) is cancelled at once and skipped.
  A forced cancel that races with the task's own end may arrive too late: the future then
  gets the task's result (or exception) instead; it resolves exactly once either way.
"""

from __future__ import annotations

import itertools
import math
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_futures
from typing import Any, Final

from .._exports import publish
from ..wire import protocol as p
from ..wire.transport import DEFAULT_MAX_MESSAGE_SIZE, FrameLike, dumps, frame_sizes, request
from .client_io import ClientIO, TaskFuture
from .lane import Lane

__all__ = ["Client", "TaskFuture", "fetch_status"]

_CHUNK_BYTES: Final = 1 << 20  # auto-batching: at most about this many pickled bytes per chunk
_CHUNKS_PER_SLOT: Final = 4  # ...and at least this many chunks per slot, to balance load


class Client(Executor):
    """Submit work to the dispatcher at ``address`` (``tcp://host:port`` or ``ipc://path``)."""

    def __init__(
        self,
        address: str,
        *,
        name: str = "",
        connect_timeout: float = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.address = address
        self._io = ClientIO(self, address, name, max_message_size)
        # A plain attribute, not a property: a future's result() reaches the lane through it.
        self._lane: Lane = self._io.lane
        reply = self._io.welcome(connect_timeout)
        if reply is None:
            self._abort()
            raise ConnectionError(f"no dispatcher answered at {address}")
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
        resources: dict[str, float] | None = None,
        labels: dict[str, str] | None = None,
        priority: int = 0,
        retries: int = 3,
    ) -> Iterator[Any]:
        """Like ``Executor.map``; items are sent in chunks, sized automatically by default.

        With ``chunksize=None`` chunks hold at most about 1 MiB of pickled arguments and there
        are at least four per slot of the cluster, so large maps need few messages while every
        slot still gets work. An exception in a chunk is raised when iteration reaches it.
        """
        end = None if timeout is None else time.monotonic() + timeout
        kind = p.KIND_MAP1 if len(iterables) == 1 else p.KIND_CHUNK
        items: list[Any] = (
            list(iterables[0]) if kind == p.KIND_MAP1 else list(zip(*iterables, strict=False))
        )
        if not items:
            return iter(())
        size = chunksize if chunksize is not None else self._auto_chunksize(items)
        if size < 1:
            raise ValueError("chunksize must be >= 1")
        futures = [
            self._submit(kind, fn, items[i : i + size], resources, labels, priority, retries)
            for i in range(0, len(items), size)
        ]
        return self._chunk_results(futures, end)

    @staticmethod
    def _chunk_results(futures: list[TaskFuture], end: float | None) -> Iterator[Any]:
        # Items are handed out by chain in C: a generator resumed once per item cost more
        # than the whole map of a cheap function (3-4 ms per 100k items, measured).
        return itertools.chain.from_iterable(Client._chunk_lists(futures, end))

    @staticmethod
    def _chunk_lists(futures: list[TaskFuture], end: float | None) -> Iterator[list[Any]]:
        try:
            futures.reverse()
            while futures:
                future = futures.pop()
                left = None if end is None else end - time.monotonic()
                yield future.result(timeout=left)
        finally:  # iteration stopped early (or timed out): the rest is not wanted
            for future in futures:
                future.cancel()

    def _auto_chunksize(self, items: list[Any]) -> int:
        slots = max(1, self.total_slots)
        by_balance = math.ceil(len(items) / (slots * _CHUNKS_PER_SLOT))
        sample = items[: min(len(items), 32)]
        frames: list[FrameLike] = []
        dumps(sample, frames)
        per_item = max(1, sum(frame_sizes(frames)) // len(sample))
        by_bytes = max(1, _CHUNK_BYTES // per_item)
        return max(1, min(by_balance, by_bytes))

    def cancel(self, future: Future[Any], force: bool = False) -> bool:
        """Cancel a task; with ``force`` a running one is killed (its slot process is replaced).

        Returns whether a cancellation was requested; the future ends cancelled once the
        dispatcher confirms (at once when it was still pending).
        """
        if not isinstance(future, TaskFuture) or future._client is not self:
            raise ValueError("not a future of this client")
        if future.done():
            return False
        if future.cancel() and not force:
            return True
        if force:
            self._io.force_cancel(future)
        return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        futures = self._io.start_closing()
        if cancel_futures:
            for future in futures:
                future.cancel()
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

    def _send_cancel(self, task_ids: list[int], force: bool) -> None:
        self._io.send_control(p.Cancel(task_ids, force))

    def _send_control(self, message: p.Message) -> None:
        """Send ``message`` to the dispatcher, after the tasks submitted before it (a job
        master's reports go this way)."""
        self._io.send_control(message)

    def _abort(self) -> None:
        self.terminate("the client could not connect")


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


def fetch_status(address: str, timeout: float = 5.0) -> p.StatusReply:
    """Ask a dispatcher for its status without becoming a client (used by the CLI)."""
    message = request(address, p.StatusRequest(), timeout)
    if not isinstance(message, p.StatusReply):
        raise p.ProtocolError(f"expected StatusReply, got {type(message).__name__}")
    return message


# Users import these from ``pydispatch``: they carry that name (see ``pydispatch._exports``).
publish("pydispatch", globals(), ["Client", "TaskFuture"])
