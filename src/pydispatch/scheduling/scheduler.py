"""The dispatcher's scheduling state: a pure state machine, events in, instructions out.

No sockets, no clocks: the server feeds events (a message arrived, the timer fired) with the
current time and performs the instructions returned. Task payloads are opaque here; results
pass through (the scheduler keeps no result after handing it out).

:class:`Scheduler` is the entry point, one method per event kind (as dask's worker state
machine). It keeps the table of live tasks and their attempts (starting, settling, retrying,
resolving and counting them) and runs the placement rounds; two parts of the state belong to
collaborators it holds:

* :class:`~pydispatch.scheduling.workers.WorkerTable` (:mod:`.workers`): the registered
  workers and their slots, how much a slot may queue (prefetch), the cluster's capacity, and
  why a task could never run on any worker;
* :class:`~pydispatch.scheduling.task_queue.TaskQueue` (:mod:`.task_queue`): the tasks
  waiting, per client by priority, and the fair-share order in which a round takes them.

Two rule sets that only read that state live in their own modules: where a round places the
tasks it takes (:mod:`.placement_round`) and what a cancel does to a task in each state
(:mod:`.cancellation`); the scheduler starts and resolves the attempts they decide on.

A worker's free slots and resources are kept consistent by its record
(:class:`~pydispatch.scheduling.records.Worker`) as attempts are placed and released. The
vocabulary (instructions, inputs, snapshots) is :mod:`.vocabulary`'s, re-exported here.

Invariants the tests pin:

* every submitted task resolves exactly once (one :class:`Resolve`), unless its client left;
* a worker's free slots/resources equal its totals minus what its running attempts hold;
* an attempt is placed on one slot (a slot process of a worker, with its own socket to the
  dispatcher); its result is accepted only from that slot, or from its worker, while the
  attempt is theirs; anything else (a late result from a worker removed for silence or from
  a slot reported lost, a second result) is counted and discarded;
* a slot reported lost settles every attempt it held: the one it was running with the
  outcome its worker reports, the others (queued on it, never started) go back to the queue
  without using up a retry;
* a task whose demand no registered worker could ever meet fails at once with the reason; one
  that only has to wait for busy workers waits (so does everything while no worker is
  registered: workers may still be starting).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from .cancellation import cancel_tasks, note_started
from .orphans import OrphanOutcomes
from .placement_round import place_round
from .placer import Placer, greedy_best_fit
from .records import Task as _Task
from .records import Worker as _Worker
from .task_queue import TaskKey, TaskQueue
from .vocabulary import (
    AskToReregister,
    AttemptOutcome,
    Counters,
    ForgetWorker,
    Instruction,
    KillAttempts,
    NewTask,
    NotifyStarted,
    Outcome,
    ReleaseWorker,
    Resolve,
    RunAttempts,
    Snapshot,
    WorkerSnapshot,
)
from .workers import WorkerTable

__all__ = [
    "AskToReregister",
    "AttemptOutcome",
    "Counters",
    "ForgetWorker",
    "Instruction",
    "KillAttempts",
    "NewTask",
    "NotifyStarted",
    "Outcome",
    "ReleaseWorker",
    "Resolve",
    "RunAttempts",
    "Scheduler",
    "Snapshot",
    "WorkerSnapshot",
]

# The demands of a plain task: one shared empty mapping rather than two dicts per queued task
# (128 of the ~900 bytes a queued task costs).
_NONE: Final[Mapping[str, Any]] = MappingProxyType({})


class Scheduler:
    """The scheduling state machine: one method per event, each returning instructions.

    It owns the live tasks and their attempts; workers and slots are its
    :class:`WorkerTable`'s, waiting tasks and their order its :class:`TaskQueue`'s.
    """

    def __init__(
        self,
        *,
        heartbeat_timeout: float = 10.0,
        placer: Placer = greedy_best_fit,
        round_factor: int = 4,
        prefetch: int = 0,
        queue_budget: float = 0.002,
        first_attempt_id: int = 1,
    ) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self._placer = placer
        # prefetch and queue_budget: how much a slot may queue (see WorkerTable).
        self._workers = WorkerTable(prefetch=prefetch, queue_budget=queue_budget)
        # round_factor: extra candidates a round may look at per constrained task.
        self._queue = TaskQueue(round_factor=round_factor)
        self._tasks: dict[TaskKey, _Task] = {}  # every live task: queued, running, cancelling
        self._running = 0
        # A restarted dispatcher starts above its predecessor's ids (the runtime passes one
        # from the clock): slots may still report attempts the previous one placed.
        self._attempt_ids = itertools.count(first_attempt_id)
        self._first_attempt_id = first_attempt_id
        self.counters = Counters()
        self._orphans = OrphanOutcomes()  # outcomes of attempts we did not place (see there)

    # ------------------------------------------------------------------------ queries

    @property
    def total_slots(self) -> int:
        return self._workers.total_slots

    @property
    def worker_table(self) -> WorkerTable:
        """The registered workers and the index of their free capacity (to inspect: events
        go through the scheduler's methods)."""
        return self._workers

    def knows_worker(self, worker: bytes) -> bool:
        return worker in self._workers

    def knows_slot(self, identity: bytes) -> bool:
        return self._workers.knows_slot(identity)

    def knows_peer(self, identity: bytes) -> bool:
        """Whether ``identity`` is a registered worker or one of its slots."""
        return identity in self._workers or self._workers.knows_slot(identity)

    def task_ids_of(self, client: bytes) -> list[int]:
        """The ids of a client's live tasks (queued, running or being cancelled)."""
        return [t.task_id for t in self._tasks.values() if t.client == client]

    @property
    def waiting(self) -> int:
        """Tasks queued here (not placed yet)."""
        return self._queue.queued

    def snapshot(self, now: float, *, by_client: bool = False) -> Snapshot:
        """The workers and the counters; with ``by_client``, the live tasks counted by client
        and priority too (a walk over them all: for the monitor's views, not every status)."""
        workers = self._workers.snapshots(now)
        live: dict[tuple[bytes, int], list[int]] = {}
        if by_client:
            for task in self._tasks.values():
                key = (task.client, task.priority)
                counts = live.get(key)
                if counts is None:
                    counts = live[key] = [0, 0]
                counts[task.state != "queued"] += 1
        return Snapshot(workers, self._queue.queued, self._running, self.counters, live)

    # ------------------------------------------------------------------------- leases

    def lease_slot(self, worker: bytes, slot: bytes) -> bool:
        """Reserve ``slot`` for a lease holder's direct attempts (see ``leases``): nothing
        more is placed on it until :meth:`unlease_slot`. Refused while tasks wait here (they
        need slots more than a lone caller needs a shortcut) or if the worker drains."""
        known = self._workers.get(worker)
        if known is None or known.draining or self._queue.queued:
            return False
        return known.lease_slot(slot)

    def close_lease(self, worker: bytes, slot: bytes) -> None:
        """The slot's lease closed: it takes work again, one place less while it may still run
        a direct attempt (and it is not idle) until :meth:`unlease_slot`."""
        known = self._workers.get(worker)
        if known is not None:
            known.close_lease(slot)

    def unlease_slot(self, worker: bytes, slot: bytes) -> list[Instruction]:
        """The slot ran every direct attempt of its closed lease."""
        known = self._workers.get(worker)
        if known is None:
            return []
        known.unlease_slot(slot)
        if known.drained:
            return [*self._remove_worker(worker, "drained"), ReleaseWorker(worker)]
        return []

    def count_direct(self, finished: int = 0, cancelled: int = 0, failed: int = 0) -> None:
        """Tasks slots ran for lease holders: counted here, never scheduled here."""
        self.counters.finished += max(0, finished)
        self.counters.cancelled += max(0, cancelled)
        self.counters.failed += max(0, failed)

    # ------------------------------------------------------------------------ workers

    def register_worker(
        self,
        worker: bytes,
        *,
        now: float,
        name: str = "",
        node: str = "",
        pid: int = 0,
        slots: int = 1,
        resources: Mapping[str, float] | None = None,
        labels: Mapping[str, str] | None = None,
        data_address: str = "",
        slot_ids: Iterable[bytes] | None = None,
    ) -> list[Instruction]:
        """A worker and its ready slots (``slot_ids``; by default ``slots`` made-up ones)."""
        out: list[Instruction] = []
        if worker in self._workers:
            # A new incarnation under the same identity: whatever the old one ran is lost.
            out += self._remove_worker(worker, "registered again", recheck=False)
        self._workers.add(
            worker,
            now=now,
            name=name,
            node=node,
            pid=pid,
            slots=slots,
            resources=resources,
            labels=labels,
            data_address=data_address,
            slot_ids=slot_ids,
        )
        return out

    def slot_ready(self, worker: bytes, slot: bytes, now: float) -> list[Instruction]:
        """A slot process (a lost one's replacement) can take work."""
        known = self._workers.get(worker)
        if known is None:
            return [AskToReregister(worker)]
        known.last_seen = now
        if len(known.slot_attempts) < known.slots and not self._workers.knows_slot(slot):
            self._workers.add_slot(known, slot)
        return []

    def slot_lost(
        self, worker: bytes, slot: bytes, running: int, status: Outcome, error: str, now: float
    ) -> list[Instruction]:
        """A slot process is gone; ``running`` (0: none) was its attempt in progress."""
        known = self._workers.get(worker)
        if known is None:
            return [AskToReregister(worker)]
        known.last_seen = now
        held = known.slot_attempts.get(slot)
        if held is None:
            return []
        out: list[Instruction] = []
        for attempt_id in list(held):
            task = self._release(known, attempt_id)
            if task.state == "done":  # cancelled before it started (see cancel)
                continue
            if task.state == "cancelling":
                out.append(self._resolve(task, "cancelled", error=f"cancelled; {error}"))
            elif attempt_id != running:
                task.attempts -= 1  # it never started: not an attempt
                self._queue.push(task)  # its seq keeps it ahead of later tasks
            elif status in ("lost", "cancelled"):  # "cancelled": killed for another attempt
                out += self._attempt_lost(task, error)
            else:
                out.append(self._resolve(task, "failed", error=error, worker=known.name))
        self._workers.remove_slot(known, slot)
        if known.drained:
            out += [*self._remove_worker(worker, "drained"), ReleaseWorker(worker)]
        return out

    def slot_unreachable(self, worker: bytes, slot: bytes) -> list[Instruction]:
        """The dispatcher could not send to ``slot``: place nothing more on it. What it holds
        stays its until its worker reports it lost (with the attempt it was running)."""
        known = self._workers.get(worker)
        if known is not None:
            known.close_slot(slot)
        return []

    def heartbeat(self, worker: bytes, now: float) -> list[Instruction]:
        known = self._workers.get(worker)
        if known is None:
            return [AskToReregister(worker)]
        known.last_seen = now
        return []

    def drain_worker(self, worker: bytes, now: float) -> list[Instruction]:
        known = self._workers.get(worker)
        if known is None:
            return [AskToReregister(worker)]
        known.last_seen = now
        self._workers.drain(known)
        if known.drained:
            return [*self._remove_worker(worker, "drained"), ReleaseWorker(worker)]
        return []

    def deregister_worker(self, worker: bytes, now: float) -> list[Instruction]:
        del now  # time is irrelevant: removal is immediate
        if worker not in self._workers:
            return []
        return self._remove_worker(worker, "deregistered")

    def dispatcher_paused(self, seconds: float, now: float) -> list[Instruction]:
        """The dispatcher itself did not run for ``seconds`` (stopped, swapped out, starved
        of CPU): its workers' heartbeats of that time wait unread in its socket, so that time
        is not counted as their silence (else a pause longer than the heartbeat timeout
        would remove every worker at once, and fail over all their work)."""
        self._workers.excuse(seconds, now)
        return []

    def tick(self, now: float) -> list[Instruction]:
        """The timer: remove workers silent for longer than the heartbeat timeout."""
        self._orphans.expire(now)
        out: list[Instruction] = []
        for worker in self._workers.silent(now, self.heartbeat_timeout):
            out += self._remove_worker(worker, "heartbeat timeout")
        return out

    def _remove_worker(self, worker: bytes, reason: str, recheck: bool = True) -> list[Instruction]:
        gone = self._workers.remove(worker)
        out: list[Instruction] = [ForgetWorker(worker, reason)]
        for attempt_id in list(gone.attempts):
            task = self._release(gone, attempt_id)
            out += self._attempt_lost(task, f"worker {gone.name} lost ({reason})", recheck)
        self._workers.refresh_capacity()  # only now: see WorkerTable.remove
        if recheck:
            out += self._fail_impossible()
        return out

    # -------------------------------------------------------------------------- tasks

    def submit(self, client: bytes, tasks: Iterable[NewTask]) -> list[Instruction]:
        out: list[Instruction] = []
        for new in tasks:
            key = (client, new.task_id)
            if key in self._tasks:
                continue  # a duplicate id would resolve the original's future twice
            adopted = self._orphans.take(key)
            if adopted is not None:  # it ran before a restart: resolved, not run again
                out.append(self._adopt_resolve(client, adopted, new.priority))
                continue
            task = _Task(
                client=client,
                task_id=new.task_id,
                payload=new.payload,
                resources={k: float(v) for k, v in new.resources.items()}
                if new.resources
                else _NONE,
                labels=dict(new.labels) if new.labels else _NONE,
                priority=new.priority,
                retries=max(0, new.retries),
                seq=self._queue.next_seq(),
            )
            reason = self._workers.why_impossible(task)
            if reason:
                self.counters.failed += 1
                out.append(
                    Resolve(client, task.task_id, "failed", error=reason, priority=task.priority)
                )
                continue
            self._tasks[key] = task
            self._queue.push(task)
        return out

    def cancel(self, client: bytes, task_ids: Iterable[int], force: bool) -> list[Instruction]:
        """Cancel queued tasks, and placed ones their slot has not started (it skips them);
        with ``force``, kill running ones too (the rules: :mod:`.cancellation`)."""
        return cancel_tasks(
            client,
            task_ids,
            force,
            tasks=self._tasks,
            queue=self._queue,
            workers=self._workers,
            resolve_cancelled=self._resolve_cancelled,
        )

    def attempts_started(self, slot: bytes, attempt_ids: Iterable[int]) -> list[Instruction]:
        """A slot reports attempts it has been running for a while: their futures go RUNNING
        (and a plain cancel no longer stops them)."""
        return note_started(self._workers, slot, attempt_ids, self._resolve_cancelled)

    def drop_queued(self, client: bytes) -> int:
        """Drop a client's queued tasks, telling it nothing (it fell silent: presumed gone; one
        that was only cut off sends them again when it is back); running ones finish. Returns
        how many were dropped (counted as cancelled)."""
        dropped = self._queue.take_client(client)
        for task in dropped:
            task.state = "done"
            del self._tasks[(task.client, task.task_id)]
        self.counters.cancelled += len(dropped)
        return len(dropped)

    def client_gone(self, client: bytes) -> list[Instruction]:
        """Drop a departed client's queued tasks; its running ones finish unobserved."""
        for task in [t for t in self._tasks.values() if t.client == client]:
            if task.state == "queued":
                self._queue.dequeue(task)
                del self._tasks[(client, task.task_id)]
                self.counters.cancelled += 1
        self._queue.forget_client(client)
        return []

    def attempts_finished(
        self, sender: bytes, outcomes: Iterable[AttemptOutcome], now: float
    ) -> list[Instruction]:
        """Outcomes reported by a slot (of its own attempts) or a worker (of its slots')."""
        worker = self._workers.owner(sender)
        known = self._workers.get(worker)
        if known is None:
            adopted = [i for outcome in outcomes for i in self._adopt(outcome, now)]
            return [*adopted, AskToReregister(sender)]
        if sender == worker:
            known.last_seen = now
        known.defer_changes()  # the index hears of each slot once, not once an attempt
        try:
            return self._settle(known, sender, outcomes, now)
        finally:
            known.tell_changes()

    def _settle(
        self, known: _Worker, sender: bytes, outcomes: Iterable[AttemptOutcome], now: float
    ) -> list[Instruction]:
        """``attempts_finished`` for a known worker (whose changes the index hears after)."""
        worker = known.id
        out: list[Instruction] = []
        for outcome in outcomes:
            if outcome.attempt_id not in known.attempts:
                out += self._adopt(outcome, now)  # placed by another incarnation, or removed
                continue
            if sender != worker and known.attempt_slot[outcome.attempt_id] != sender:
                self.counters.discarded_late_results += 1
                continue
            task = self._release(known, outcome.attempt_id)
            if task.state == "done":  # cancelled before it started (see cancel): it is free
                continue
            if outcome.seconds > 0:
                slot = sender if sender != worker else b""
                self._workers.observe(known, slot, outcome.seconds)
            if outcome.status == "lost":
                out += self._attempt_lost(task, outcome.error or "abandoned by a draining worker")
            elif task.state == "cancelling" and outcome.status not in ("ok", "error"):
                out.append(self._resolve(task, "cancelled", error="cancelled while running"))
            else:
                out.append(
                    self._resolve(
                        task,
                        outcome.status,
                        value=outcome.value,
                        error=outcome.error,
                        traceback=outcome.traceback,
                        worker=known.name,
                    )
                )
        if known.drained:
            out += [*self._remove_worker(worker, "drained"), ReleaseWorker(worker)]
        return out

    def _adopt(self, outcome: AttemptOutcome, now: float) -> list[Instruction]:
        """An outcome of an attempt this scheduler does not hold: it resolves its task if the
        task is still wanted and not running again (its client resubmitted it after a
        restart, or it was re-queued when its worker was removed); one of a predecessor's
        attempts whose task is not here (yet) waits for it (see OrphanOutcomes). Anything
        else is discarded."""
        if not outcome.owner or outcome.status not in ("ok", "error"):
            self.counters.discarded_late_results += 1
            return []
        key = (outcome.owner, outcome.task_id)
        task = self._tasks.get(key)
        if task is None:
            if outcome.attempt_id < self._first_attempt_id:  # a predecessor placed it
                self._orphans.add(key, outcome, now)
            else:  # ours, removed: its task resolved already
                self.counters.discarded_late_results += 1
            return []
        if task.state != "queued":  # running again: that attempt answers
            self.counters.discarded_late_results += 1
            return []
        self._queue.dequeue(task)
        self.counters.adopted_results += 1
        return [
            self._resolve(
                task,
                outcome.status,
                value=outcome.value,
                error=outcome.error,
                traceback=outcome.traceback,
            )
        ]

    def _adopt_resolve(self, client: bytes, outcome: AttemptOutcome, priority: int) -> Resolve:
        self.counters.adopted_results += 1
        self.counters.finished += 1
        o = outcome
        return Resolve(client, o.task_id, o.status, o.value, o.error, o.traceback, "", priority)

    # ---------------------------------------------------------------------- placement

    def schedule(self) -> list[Instruction]:
        """One placement round over the free slots (how: :mod:`.placement_round`)."""
        return place_round(self._queue, self._workers, self._placer, self._start)

    # ----------------------------------------------------------------------- attempts

    def _start(self, task: _Task, worker: _Worker, slot: bytes | None = None) -> int:
        """Start an attempt of ``task`` on ``worker`` (on ``slot``, or where the worker
        places it); returns the attempt's id."""
        attempt_id = next(self._attempt_ids)
        task.state = "running"
        task.attempts += 1
        task.attempt_id = attempt_id
        task.worker = worker.id
        task.started = task.reported = False
        worker.place(attempt_id, task, slot)
        self._queue.started(task)
        self._running += 1
        return attempt_id

    def _release(self, worker: _Worker, attempt_id: int) -> _Task:
        task = worker.release(attempt_id)
        self._queue.released(task)
        self._running -= 1
        return task

    def _resolve(
        self,
        task: _Task,
        status: Outcome,
        *,
        value: object = None,
        error: str = "",
        traceback: str = "",
        worker: str = "",
    ) -> Resolve:
        task.state = "done"
        del self._tasks[(task.client, task.task_id)]
        if status in ("ok", "error"):
            self.counters.finished += 1
        elif status == "cancelled":
            self.counters.cancelled += 1
        else:
            self.counters.failed += 1
        return Resolve(
            task.client, task.task_id, status, value, error, traceback, worker, task.priority
        )

    def _resolve_cancelled(self, task: _Task, error: str) -> Resolve:
        return self._resolve(task, "cancelled", error=error)

    def _attempt_lost(self, task: _Task, reason: str, recheck: bool = True) -> list[Instruction]:
        if task.state == "done":  # cancelled before it started (see cancel)
            return []
        if task.state == "cancelling":
            return [self._resolve(task, "cancelled", error=f"cancelled; {reason}")]
        if task.attempts > task.retries:
            message = f"{reason}; gave up after {task.attempts} attempt(s)"
            return [self._resolve(task, "failed", error=message)]
        impossible = self._workers.why_impossible(task) if recheck else ""
        if impossible:
            return [self._resolve(task, "failed", error=f"{reason}; {impossible}")]
        self.counters.retried += 1
        self._queue.push(task)
        return []

    def _fail_impossible(self) -> list[Instruction]:
        """Fail the queued tasks no worker left could ever run."""
        if not self._workers.any_active:
            return []
        out: list[Instruction] = []
        for task in self._queue.constrained(self._tasks):
            reason = self._workers.why_impossible(task)
            if reason:
                self._queue.dequeue(task)
                out.append(self._resolve(task, "failed", error=reason))
        return out
