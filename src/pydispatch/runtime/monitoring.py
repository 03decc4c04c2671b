"""The dispatcher's side of the monitor (issue 16): what its handlers count, and the views of it
the HTTP thread gets.

Owned by :class:`~pydispatch.runtime.dispatcher.Dispatcher` and used by its loop thread only,
except :attr:`Monitoring.views`, the exchange through which other threads ask for a
:class:`~pydispatch.monitor.view.DispatcherView`. With metrics off (``recorder`` None) the
dispatcher skips the counting calls; views still work (the JSON API needs no counters).

Tasks are also counted by client and priority (:attr:`Recorder.client_tasks`), the client by
its name's label (:mod:`~pydispatch.monitor.client_labels`: a bounded set, never its random
identity): submitted, finished, failed and cancelled as their client is told (a silent or
departed client's queued tasks, dropped untold, are in the totals only), retried as attempts
placed again; queued and running ones are counted by a walk over the scheduler's live tasks
(:meth:`Monitoring.walk_due`: about 15 ms for 100,000 of them, so a walk is repeated only
after 100 times its duration, however often views are asked for: under 1 % of the loop).
Tasks a client sends straight to a slot (the direct lane) never pass here: they are in the
finished totals only.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..monitor.client_labels import OTHER, ClientLabels, label_limit
from ..monitor.exchange import ViewExchange
from ..monitor.recorder import (
    CANCELLED,
    FAILED,
    FINISHED,
    RETRIED,
    SUBMITTED,
    TALLY_NAMES,
    Recorder,
)
from ..monitor.view import ClientTasks, DispatcherView, SolverView, TaskCounts, WorkerView
from ..scheduling import scheduler as s
from ..scheduling.solver_placer import SolverStats
from ..wire import protocol as p

__all__ = ["Monitoring"]

# The dispatcher's logger: these lines are about what the dispatcher did.
log = logging.getLogger("pydispatch.runtime.dispatcher")

_UNUSED: list[int] = []
_OUTCOME_INDEX = {"ok": FINISHED, "error": FINISHED, "failed": FAILED, "cancelled": CANCELLED}


class Monitoring:
    """Counting helpers and the view exchange of one dispatcher."""

    def __init__(self, recorder: Recorder | None) -> None:
        self.recorder = recorder
        #: The label of each client's tasks (its book, runtime.client_book, keeps it current).
        self.labels = ClientLabels(label_limit())
        self.views: ViewExchange[DispatcherView] = ViewExchange()
        #: Per worker identity: (CPU seconds, resident bytes) of its processes, as its last
        #: heartbeat said.
        self.usage: dict[bytes, tuple[float, int]] = {}
        self._started = time.monotonic()
        # Live tasks by (client, priority), as the last walk over them counted them.
        self._live: dict[tuple[bytes, int], list[int]] = {}
        self._walk_started = 0.0  # while a view's snapshot walks them (0: it does not)
        self._next_walk = 0.0

    # ------------------------------------------------------------ counting (loop thread)

    def submitted(self, client: bytes, tasks: Sequence[s.NewTask], now: float) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        recorder.submitted += len(tasks)
        label, priority, tally = self.labels.label(client), None, [0]
        for task in tasks:  # a batch is mostly of one priority: one look-up per change
            if task.priority != priority:
                priority = task.priority
                tally = recorder.tally(label, priority)
            tally[SUBMITTED] += 1

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
            if payload.placed:  # placed before: its worker or slot was lost
                label = self.labels.label(payload.owner)
                recorder.tally(label, payload.priority)[RETRIED] += 1
            else:
                payload.placed = True
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

    def resolved(self, client: bytes, resolves: list[s.Resolve]) -> None:
        """Outcomes about to go to ``client`` (from the outbox: a client's at once): counted;
        a failure (the cluster's, not the user's error) said in the log, with its task id."""
        recorder = self.recorder
        label = self.labels.of.get(client, OTHER)
        priority: int | None = None
        tally = _UNUSED  # replaced at the first resolve (no priority is None)
        for resolve in resolves:
            status = resolve.status
            if status == "failed":
                log.info(
                    "task %d failed: %s",
                    resolve.task_id,
                    resolve.error,
                    extra={"task_id": resolve.task_id, "client": client.hex()},
                )
            if recorder is not None:
                if resolve.priority != priority:  # a client's results: mostly one priority
                    priority = resolve.priority
                    tally = recorder.tally(label, priority)
                tally[_OUTCOME_INDEX.get(status, FAILED)] += 1  # never raises: results wait

    def worker_removed(self, worker: bytes, reason: str) -> None:
        self.usage.pop(worker, None)
        if self.recorder is not None:
            self.recorder.worker_removed(reason)

    # ----------------------------------------------------------------- views (loop thread)

    def walk_due(self) -> bool:
        """Whether the next view's snapshot should count the live tasks by client afresh (see
        the module docstring); the view that follows reuses the last count otherwise."""
        now = time.monotonic()
        if now < self._next_walk:
            return False
        self._walk_started = now
        return True

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
            clients=self._client_tasks(recorder, self._live_tasks(snapshot)),
        )

    def _live_tasks(self, snapshot: s.Snapshot) -> dict[tuple[bytes, int], list[int]]:
        if self._walk_started:  # this view's snapshot walked them
            took = time.monotonic() - self._walk_started
            self._next_walk = self._walk_started + 100 * took
            self._live = snapshot.by_client
            self._walk_started = 0.0
        return self._live

    def _client_tasks(
        self, recorder: Recorder, live: dict[tuple[bytes, int], list[int]]
    ) -> list[ClientTasks]:
        """The recorder's tallies and the scheduler's live counts, by label and priority."""
        rows: dict[tuple[str, int], list[int]] = {
            key: [*tally, 0, 0] for key, tally in recorder.client_tasks.items()
        }
        for (client, priority), (queued, running) in live.items():
            key = (self.labels.label(client), priority)
            row = rows.get(key)
            if row is None:
                row = rows[key] = [0] * (len(TALLY_NAMES) + 2)
            row[-2] += queued
            row[-1] += running
        return [ClientTasks(*key, *row) for key, row in sorted(rows.items())]
