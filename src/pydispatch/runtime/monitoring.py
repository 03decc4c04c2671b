"""The dispatcher's side of the monitor (issue 16): what its handlers count, and the views of it
the HTTP thread gets.

Owned by :class:`~pydispatch.runtime.dispatcher.Dispatcher` and used by its loop thread only,
except :attr:`Monitoring.views`, the exchange through which other threads ask for a
:class:`~pydispatch.monitor.view.DispatcherView`. With metrics off (``recorder`` None) the
dispatcher skips the counting calls; views still work (the JSON API needs no counters).
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..monitor.exchange import ViewExchange
from ..monitor.recorder import Recorder
from ..monitor.view import DispatcherView, SolverView, TaskCounts, WorkerView
from ..scheduling import scheduler as s
from ..scheduling.solver_placer import SolverStats
from ..wire import protocol as p

__all__ = ["Monitoring"]

# The dispatcher's logger: these lines are about what the dispatcher did.
log = logging.getLogger("pydispatch.runtime.dispatcher")


class Monitoring:
    """Counting helpers and the view exchange of one dispatcher."""

    def __init__(self, recorder: Recorder | None) -> None:
        self.recorder = recorder
        self.views: ViewExchange[DispatcherView] = ViewExchange()
        #: Per worker identity: (CPU seconds, resident bytes) of its processes, as its last
        #: heartbeat said.
        self.usage: dict[bytes, tuple[float, int]] = {}
        self._started = time.monotonic()

    # ------------------------------------------------------------ counting (loop thread)

    def submitted(self, tasks: Sequence[s.NewTask], now: float) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        recorder.submitted += len(tasks)
        by_priority = recorder.submitted_by_priority
        for task in tasks:
            by_priority[task.priority] = by_priority.get(task.priority, 0) + 1

    def placed(self, attempts: Sequence[tuple[int, Any]], now: float) -> None:
        """Attempts sent to a slot: each one's wait since its task was submitted."""
        recorder = self.recorder
        if recorder is None:
            return
        recorder.placed += len(attempts)
        # One pass, no list (half the cost of observe_many over a comprehension: this runs
        # for every attempt). Every payload is the dispatcher's _Payload, with queued_at.
        waits = recorder.queue_wait
        counts, bounds, total = waits.counts, waits.bounds, 0.0
        for _, payload in attempts:
            wait = now - payload.queued_at
            counts[bisect.bisect_left(bounds, wait)] += 1
            total += wait
        waits.total += total

    def ran(self, outcomes: Sequence[s.AttemptOutcome]) -> None:
        """Attempts reported done: how long each ran, as its slot measured (0: unmeasured)."""
        recorder = self.recorder
        if recorder is None:
            return
        runs = recorder.run_time
        counts, bounds, total = runs.counts, runs.bounds, 0.0
        for outcome in outcomes:
            seconds = outcome.seconds
            if seconds > 0:
                counts[bisect.bisect_left(bounds, seconds)] += 1
                total += seconds
        runs.total += total

    @staticmethod
    def task_failed(resolve: s.Resolve) -> None:
        """The cluster failed a task (not the user's error): said in the log, with its id."""
        log.info(
            "task %d failed: %s",
            resolve.task_id,
            resolve.error,
            extra={"task_id": resolve.task_id, "client": resolve.client.hex()},
        )

    def worker_removed(self, worker: bytes, reason: str) -> None:
        self.usage.pop(worker, None)
        if self.recorder is not None:
            self.recorder.worker_removed(reason)

    # ----------------------------------------------------------------- views (loop thread)

    def view(
        self,
        snapshot: s.Snapshot,
        worker_names: dict[bytes, str],
        jobs: list[p.JobInfo],
        solver: SolverStats,
        endpoint: str,
        epoch: str,
        protocol_errors: int,
    ) -> DispatcherView:
        """A view from the scheduler's snapshot and copies of everything else."""
        recorder = self.recorder.copy() if self.recorder is not None else Recorder()
        usage = {worker_names.get(w, ""): u for w, u in self.usage.items()}
        workers = [WorkerView(w, *usage.get(w.name, (0.0, 0))) for w in snapshot.workers]
        c = snapshot.counters
        tasks = TaskCounts(
            submitted=recorder.submitted,
            queued=snapshot.queued,
            running=snapshot.running,
            finished=c.finished,
            failed=c.failed,
            cancelled=c.cancelled,
            retried=c.retried,
            discarded_late_results=c.discarded_late_results,
            protocol_errors=protocol_errors,
        )
        solver_view = SolverView(
            solver.rounds,
            solver.solves,
            solver.solve_seconds,
            solver.placed_by_solver,
            solver.last_gap,
        )
        return DispatcherView(
            endpoint=endpoint,
            epoch=epoch,
            uptime=time.monotonic() - self._started,
            tasks=tasks,
            workers=workers,
            jobs=jobs,
            solver=solver_view,
            recorder=recorder,
        )
