"""What the dispatcher tells its clients about their tasks, coalesced: one message per client
per round.

Results (``Resolve`` instructions of the scheduler) and "started" notices pile up here while a
round runs and go out at its end (:meth:`Outbox.flush`): one :class:`~pydispatch.wire.protocol.
Results` per client, carrying every task of that client that ended and every one that started
(up to ``_RESULTS_PER_MESSAGE`` results a message). A started notice alone waits up to
:data:`STARTED_DELAY` for a result to ride with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, cast

from ..scheduling import scheduler as s
from ..wire import protocol as p
from ..wire.transport import FrameLike, rebase

__all__ = ["STARTED_DELAY", "Outbox"]

_RESULTS_PER_MESSAGE: Final = 2048
# "Started" notices wait this long for a result to ride with: a short task then costs its
# client one message, not two (``future.running()`` turns true up to this much later).
STARTED_DELAY: Final = 0.002

Send = Callable[[bytes, p.Message, list[FrameLike]], bool]  # False: that peer is unreachable


class Outbox:
    """Per-round buffers of results and started notices, by client. ``send`` sends a message
    with its frames; ``unreachable`` is called with a client that a message could not reach
    (what is left for it this round is dropped); ``resolved`` is told each client's results
    before they go (the monitor counts them: once a client, not once a task)."""

    def __init__(
        self,
        send: Send,
        unreachable: Callable[[bytes], None],
        resolved: Callable[[bytes, list[s.Resolve]], None] | None = None,
    ) -> None:
        self._send = send
        self._unreachable = unreachable
        self._resolved = resolved
        self._results: dict[bytes, list[s.Resolve]] = {}
        # Per client: when its oldest pending notice came, and the task ids started since.
        self._started: dict[bytes, tuple[float, list[int]]] = {}

    @property
    def started_waiting(self) -> bool:
        """Whether a started notice waits (the loop must wake up within ``STARTED_DELAY``)."""
        return bool(self._started)

    def result(self, resolve: s.Resolve) -> None:
        self._results.setdefault(resolve.client, []).append(resolve)

    def started(self, client: bytes, task_ids: list[int]) -> None:
        self._started.setdefault(client, (time.monotonic(), []))[1].extend(task_ids)

    def flush(self) -> None:
        # One message per client per round: what started and what ended travel together.
        due = time.monotonic() - STARTED_DELAY
        for client in [c for c, (since, _) in self._started.items() if since <= due]:
            if client not in self._results:
                self._send(client, p.Started(self._started.pop(client)[1]), [])
        for client, pending in self._results.items():
            if self._resolved is not None:
                self._resolved(client, pending)
            started = self._started.pop(client, (0.0, []))[1]
            for start in range(0, len(pending), _RESULTS_PER_MESSAGE):
                frames: list[FrameLike] = []
                placed: dict[int, int] = {}
                results = []
                for resolve in pending[start : start + _RESULTS_PER_MESSAGE]:
                    blob = None
                    if resolve.value is not None:
                        value, own = cast(tuple[p.Blob, list[FrameLike]], resolve.value)
                        blob = rebase(value, own, frames, placed)
                    results.append(
                        p.TaskResult(
                            resolve.task_id,
                            resolve.status,
                            blob,
                            resolve.error,
                            resolve.traceback,
                            resolve.worker,
                        )
                    )
                if not self._send(client, p.Results(results, started), frames):
                    self._unreachable(client)
                    break
                started = []
        self._results.clear()
