"""How the HTTP thread gets a picture of the dispatcher without touching its state.

The HTTP server's threads :meth:`ViewExchange.get` a view; the dispatcher's loop, which alone
owns the scheduler and its tables, sees the request between two rounds (a deque's truth test
per iteration: nothing more on the hot path) and :meth:`ViewExchange.serve` builds one view
for everyone waiting. A view younger than ``max_age`` is handed out again without asking (a
dashboard's refresh makes several API calls; a Prometheus scrape and a page may coincide).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ViewExchange"]

V = TypeVar("V")


class _Request(Generic[V]):
    """One thread's wait for a view (an Event, not a concurrent.futures.Future: the dispatcher
    process does not otherwise import concurrent.futures, and starts faster without it)."""

    __slots__ = ("done", "error", "view")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.view: V | None = None
        self.error: BaseException | None = None

    def result(self, timeout: float) -> V:
        if not self.done.wait(timeout):
            raise TimeoutError("the dispatcher's loop did not answer in time")
        if self.error is not None:
            raise self.error
        assert self.view is not None
        return self.view


class ViewExchange(Generic[V]):
    """Requests for a view from any thread, answered by the thread that calls ``serve``."""

    def __init__(self, max_age: float = 0.25) -> None:
        self.max_age = max_age
        #: Truthy while a request waits: the loop's cheap test.
        self.waiting: collections.deque[_Request[V]] = collections.deque()
        self._latest: tuple[float, V] | None = None
        self._lock = threading.Lock()

    def get(self, timeout: float = 5.0) -> V:
        """The latest view if fresh enough, else a new one from the loop; raises
        ``TimeoutError`` if the loop does not answer within ``timeout`` seconds."""
        with self._lock:
            latest = self._latest
            if latest is not None and time.monotonic() - latest[0] <= self.max_age:
                return latest[1]
            request: _Request[V] = _Request()
            self.waiting.append(request)
        return request.result(timeout)

    def serve(self, build: Callable[[], V]) -> None:
        """Answer every waiting request with one view (call from the owning thread)."""
        try:
            view = build()
        except BaseException as error:  # the askers must hear of it rather than time out
            with self._lock:
                while self.waiting:
                    request = self.waiting.popleft()
                    request.error = error
                    request.done.set()
            raise
        with self._lock:
            self._latest = (time.monotonic(), view)
            while self.waiting:
                request = self.waiting.popleft()
                request.view = view
                request.done.set()
