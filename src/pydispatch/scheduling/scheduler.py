"""The dispatcher's scheduling state: a pure state machine, events in, instructions out.

No sockets, no clocks: the server feeds events (a message arrived, the timer fired) with the
current time and performs the instructions returned. Task payloads are opaque here; results
pass through (the scheduler keeps no result after handing it out).

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

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from .placer import (
    SLOTS,
    FairShare,
    PlacementRequest,
    Placer,
    WorkerCapacity,
    amount_text,
    fits,
    greedy_best_fit,
)
from .records import Task as _Task
from .records import Worker as _Worker
from .records import worker_snapshot
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

TaskKey = tuple[bytes, int]  # (client identity, client's task id)
# The demands of a plain task: one shared empty mapping rather than two dicts per queued task
# (128 of the ~900 bytes a queued task costs).
_NONE: Final[Mapping[str, Any]] = MappingProxyType({})
_UNMEASURED_PREFETCH = 2  # tasks queued on a slot before its first task's duration is known


class Scheduler:
    """Owns workers and their free resources, queued tasks and running attempts."""

    def __init__(
        self,
        *,
        heartbeat_timeout: float = 10.0,
        placer: Placer = greedy_best_fit,
        round_factor: int = 4,
        prefetch: int = 0,
        queue_budget: float = 0.002,
    ) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        # Attempts placed on a slot beyond the one it runs: they wait in the slot's own queue
        # (highest priority first) so it never idles for a dispatcher round trip. Only tasks
        # without resource demands or label selectors are prefetched. It buys throughput for
        # small tasks at a price: a later task of another client (fair share), or a more
        # urgent one when the slots are full, can wait behind what a slot holds. So a slot
        # holds at most ``prefetch`` queued tasks and, once it has reported how long its
        # tasks take, about ``queue_budget`` seconds of them: none behind 10 ms tasks, 40
        # behind 50 µs ones (the budget is of measured durations: a task that turns out slow
        # still holds back all that its slot queued). 0 keeps priorities and fair share exact.
        self._prefetch = max(0, prefetch)
        self._queue_budget = queue_budget
        self._placer = placer
        # Extra candidates a round may look at per constrained task (see _candidates).
        self._round_factor = round_factor
        self._workers: dict[bytes, _Worker] = {}
        self._slot_owner: dict[bytes, bytes] = {}  # slot identity -> its worker
        self._tasks: dict[TaskKey, _Task] = {}
        # Per-client heaps of (-priority, seq, task); cancelled tasks are skipped lazily.
        self._queues: dict[bytes, list[tuple[int, int, _Task]]] = {}
        self._queued = 0
        self._running = 0
        self._constrained: set[TaskKey] = set()  # queued tasks with resources or labels
        self._fair = FairShare()
        # Ties in dominant share (common: a client's share drops to 0 the moment its task
        # ends, just before the round that refills the slot) go to the client served least
        # recently, so equal shares take turns instead of the oldest queue winning forever.
        self._serve_clock = itertools.count(1)
        self._last_served: dict[bytes, int] = {}
        self._seq = itertools.count()
        self._attempt_ids = itertools.count(1)
        self.counters = Counters()

    # ------------------------------------------------------------------------ queries

    @property
    def total_slots(self) -> int:
        return sum(w.slots for w in self._workers.values() if not w.draining)

    def knows_worker(self, worker: bytes) -> bool:
        return worker in self._workers

    def knows_slot(self, identity: bytes) -> bool:
        return identity in self._slot_owner

    def knows_peer(self, identity: bytes) -> bool:
        """Whether ``identity`` is a registered worker or one of its slots."""
        return identity in self._workers or identity in self._slot_owner

    # ------------------------------------------------------------------------- leases

    @property
    def waiting(self) -> int:
        """Tasks queued here (not placed yet)."""
        return self._queued

    def lease_slot(self, worker: bytes, slot: bytes) -> bool:
        """Reserve ``slot`` for a lease holder's direct attempts (see ``_leases``): nothing
        more is placed on it until :meth:`unlease_slot`. Refused while tasks wait here (they
        need slots more than a lone caller needs a shortcut) or if the worker drains."""
        known = self._workers.get(worker)
        if known is None or known.draining or self._queued:
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

    def snapshot(self, now: float) -> Snapshot:
        workers = [worker_snapshot(w, now) for w in self._workers.values()]
        return Snapshot(workers, self._queued, self._running, self.counters)

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
        slots = max(0, slots)
        totals = {k: float(v) for k, v in (resources or {}).items()}
        known = _Worker(
            id=worker,
            name=name or worker.hex(),
            node=node,
            pid=pid,
            slots=slots,
            resources=totals,
            labels=dict(labels or {}),
            last_seen=now,
            free=dict(totals),
            data_address=data_address,
        )
        self._workers[worker] = known
        ids = (
            list(slot_ids)
            if slot_ids is not None
            else [b"%s/%d" % (worker, i) for i in range(slots)]
        )
        for slot in ids[:slots]:
            self._add_slot(known, slot)
        self._refresh_capacity()
        return out

    def slot_ready(self, worker: bytes, slot: bytes, now: float) -> list[Instruction]:
        """A slot process (a lost one's replacement) can take work."""
        known = self._workers.get(worker)
        if known is None:
            return [AskToReregister(worker)]
        known.last_seen = now
        if len(known.slot_attempts) < known.slots and slot not in self._slot_owner:
            self._add_slot(known, slot)
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
        for attempt_id, task in list(held.items()):
            self._release(known, attempt_id, task)
            if task.state == "cancelling":
                out.append(self._resolve(task, "cancelled", error=f"cancelled; {error}"))
            elif attempt_id != running:
                task.attempts -= 1  # it never started: not an attempt
                self._requeue_front(task)
            elif status in ("lost", "cancelled"):  # "cancelled": killed for another attempt
                out += self._attempt_lost(task, error)
            else:
                out.append(self._resolve(task, "failed", error=error, worker=known.name))
        known.remove_slot(slot)
        del self._slot_owner[slot]
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

    def _add_slot(self, worker: _Worker, slot: bytes) -> None:
        # Until its first task reports how long it took, a slot queues little: the first
        # tasks of a job may be long ones, and tasks committed to one slot cannot move.
        worker.add_slot(slot, 1 + min(self._prefetch, _UNMEASURED_PREFETCH))
        self._slot_owner[slot] = worker.id

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
        known.draining = True
        self._refresh_capacity()
        if known.drained:
            return [*self._remove_worker(worker, "drained"), ReleaseWorker(worker)]
        return []

    def deregister_worker(self, worker: bytes, now: float) -> list[Instruction]:
        del now  # time is irrelevant: removal is immediate
        if worker not in self._workers:
            return []
        return self._remove_worker(worker, "deregistered")

    def tick(self, now: float) -> list[Instruction]:
        """The timer: remove workers silent for longer than the heartbeat timeout."""
        out: list[Instruction] = []
        silent = [
            w.id for w in self._workers.values() if now - w.last_seen > self.heartbeat_timeout
        ]
        for worker in silent:
            out += self._remove_worker(worker, "heartbeat timeout")
        return out

    def _remove_worker(self, worker: bytes, reason: str, recheck: bool = True) -> list[Instruction]:
        gone = self._workers.pop(worker)
        out: list[Instruction] = [ForgetWorker(worker, reason)]
        for attempt_id, task in list(gone.attempts.items()):
            self._release(gone, attempt_id, task)
            out += self._attempt_lost(task, f"worker {gone.name} lost ({reason})", recheck)
        for slot in gone.slot_attempts:
            self._slot_owner.pop(slot, None)
        self._refresh_capacity()
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
                seq=next(self._seq),
            )
            reason = self._impossible(task)
            if reason:
                self.counters.failed += 1
                out.append(Resolve(client, task.task_id, "failed", error=reason))
                continue
            self._tasks[key] = task
            self._enqueue(task)
        return out

    def cancel(self, client: bytes, task_ids: Iterable[int], force: bool) -> list[Instruction]:
        """Cancel queued tasks; with ``force``, kill running ones too (resolved on report)."""
        out: list[Instruction] = []
        kills: dict[tuple[bytes, bytes], list[int]] = {}
        for task_id in task_ids:
            task = self._tasks.get((client, task_id))
            if task is None:
                continue
            if task.state == "queued":
                self._dequeue(task)
                out.append(self._resolve(task, "cancelled", error="cancelled while queued"))
            elif task.state == "running" and force:
                task.state = "cancelling"
                slot = self._workers[task.worker].attempt_slot[task.attempt_id]
                kills.setdefault((task.worker, slot), []).append(task.attempt_id)
            # Running without force: it finishes; the client has dropped interest already.
        out += [KillAttempts(worker, slot, ids) for (worker, slot), ids in kills.items()]
        return out

    def fail_queued(self, client: bytes, reason: str) -> list[Instruction]:
        """Fail a client's queued tasks (it fell silent: presumed gone); running ones finish."""
        out: list[Instruction] = []
        for _, _, task in self._queues.get(client, []):
            if task.state == "queued":
                self._dequeue(task)
                out.append(self._resolve(task, "failed", error=reason))
        self._queues.pop(client, None)
        return out

    def client_gone(self, client: bytes) -> list[Instruction]:
        """Drop a departed client's queued tasks; its running ones finish unobserved."""
        for task in [t for t in self._tasks.values() if t.client == client]:
            if task.state == "queued":
                self._dequeue(task)
                task.state = "done"
                del self._tasks[(client, task.task_id)]
                self.counters.cancelled += 1
        self._queues.pop(client, None)
        self._last_served.pop(client, None)
        return []

    def attempts_finished(
        self, sender: bytes, outcomes: Iterable[AttemptOutcome], now: float
    ) -> list[Instruction]:
        """Outcomes reported by a slot (of its own attempts) or a worker (of its slots')."""
        worker = self._slot_owner.get(sender, sender)
        known = self._workers.get(worker)
        if known is None:
            self.counters.discarded_late_results += sum(1 for _ in outcomes)
            return [AskToReregister(sender)]
        if sender == worker:
            known.last_seen = now
        out: list[Instruction] = []
        for outcome in outcomes:
            task = known.attempts.get(outcome.attempt_id)
            if task is None or (
                sender != worker and known.attempt_slot[outcome.attempt_id] != sender
            ):
                self.counters.discarded_late_results += 1
                continue
            self._release(known, outcome.attempt_id, task)
            if outcome.seconds > 0:
                slot = sender if sender != worker else b""
                known.observe(slot, outcome.seconds, self._prefetch, self._queue_budget)
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

    # ---------------------------------------------------------------------- placement

    def schedule(self) -> list[Instruction]:
        """One placement round over the free slots."""
        if not self._queued:
            return []
        workers = [w for w in self._workers.values() if not w.draining and w.free_slots > 0]
        free_slots = sum(w.free_slots for w in workers)
        if not free_slots:
            return []
        candidates = self._candidates(free_slots)
        # A worker whose slots are all busy can only take prefetched (plain) tasks: show the
        # placer neither free resources nor labels there, so resource and labelled tasks go
        # where they can start.
        capacities = [
            WorkerCapacity(w.free_slots, w.free, w.labels)
            if w.has_idle_slot()
            else WorkerCapacity(w.free_slots, {}, {})
            for w in workers
        ]
        if any(t.resources or t.labels for t in candidates):
            requests = [PlacementRequest(t.resources, t.labels) for t in candidates]
            assignments = self._placer(requests, capacities)
        else:
            # Slots are all these need: no packing problem, so no placer (the common round
            # of small tasks); the same rule greedy best-fit applies to them.
            assignments = _spread(len(candidates), [c.free_slots for c in capacities])

        runs: dict[tuple[bytes, bytes], list[tuple[int, object]]] = {}
        started: dict[bytes, list[int]] = {}
        placed: set[int] = set()
        for request_index, worker_index in assignments:
            if request_index in placed or not 0 <= request_index < len(candidates):
                continue
            if not 0 <= worker_index < len(workers):
                continue
            task, worker = candidates[request_index], workers[worker_index]
            if worker.free_slots < 1 or (
                (task.resources or task.labels)
                and not fits(
                    task.resources, task.labels, worker.free_slots, worker.free, worker.labels
                )
            ):
                continue  # never trust a placer with the invariants
            if (task.resources or task.labels) and not worker.has_idle_slot():
                # Only plain tasks are prefetched. One holding resources while it waits in a
                # worker's queue would keep them idle; one placed by label was placed on
                # purpose (a dataflow job's slices, pinned to their workers, must all start to
                # make progress: queued behind another job's slice they would wait forever).
                continue
            placed.add(request_index)
            attempt_id, slot = self._start(task, worker)
            runs.setdefault((worker.id, slot), []).append((attempt_id, task.payload))
            started.setdefault(task.client, []).append(task.task_id)
        for index, task in enumerate(candidates):
            if index not in placed:
                self._requeue_front(task)
        out: list[Instruction] = [
            RunAttempts(worker, slot, attempts) for (worker, slot), attempts in runs.items()
        ]
        out += [NotifyStarted(client, ids) for client, ids in started.items()]
        return out

    def _candidates(self, free_slots: int) -> list[_Task]:
        """Pop queued tasks for a round: highest priority first, then DRF between clients.

        As many as there are free slots, plus ``round_factor`` more for every constrained
        task among them (one that may not fit anywhere now must not block the ones behind
        it); a huge queue of plain tasks thus costs nothing but the tasks placed.
        """
        limit = free_slots
        picked: list[_Task] = []
        waiting = [c for c, queue in self._queues.items() if queue]
        if len(waiting) == 1:  # no one to share with: the order is the client's own
            return self._pop_own(waiting[0], limit)
        shares = FairShare(self._fair.capacity, {c: dict(h) for c, h in self._fair.held.items()})
        served = dict(self._last_served)
        heads: list[tuple[int, float, int, int, bytes]] = []
        for client, queue in self._queues.items():
            self._skip_dead(queue)
            if queue:
                priority, seq, _ = queue[0]
                share = shares.dominant_share(client)
                heads.append((priority, share, served.get(client, 0), seq, client))
        heapq.heapify(heads)
        while heads and len(picked) < limit:
            client = heapq.heappop(heads)[-1]
            queue = self._queues[client]
            _, _, task = heapq.heappop(queue)
            limit += self._take(task, picked)
            shares.add(client, task.resources)
            served[client] = next(self._serve_clock)
            self._skip_dead(queue)
            if queue:
                priority, seq, _ = queue[0]
                share = shares.dominant_share(client)
                heapq.heappush(heads, (priority, share, served[client], seq, client))
        return picked

    def _pop_own(self, client: bytes, limit: int) -> list[_Task]:
        """``_candidates`` for a lone client: the same picks, without the fair-share heap."""
        picked: list[_Task] = []
        queue = self._queues[client]
        self._skip_dead(queue)
        while queue and len(picked) < limit:
            _, _, task = heapq.heappop(queue)
            limit += self._take(task, picked)
            self._skip_dead(queue)
        return picked

    def _take(self, task: _Task, picked: list[_Task]) -> int:
        """Take a task popped from its queue into this round; returns how many more tasks the
        round may look at for it (a constrained one may fit nowhere now)."""
        picked.append(task)
        self._queued -= 1
        task.state = "running"  # provisionally: taken out of the queue for this round
        return self._round_factor if task.resources or task.labels else 0

    @staticmethod
    def _skip_dead(queue: list[tuple[int, int, _Task]]) -> None:
        while queue and queue[0][2].state != "queued":
            heapq.heappop(queue)

    def _start(self, task: _Task, worker: _Worker) -> tuple[int, bytes]:
        attempt_id = next(self._attempt_ids)
        task.state = "running"
        task.attempts += 1
        task.attempt_id = attempt_id
        task.worker = worker.id
        # A constrained task is placed only where a slot is idle, and starts there at once.
        slot = worker.idle_slot() if task.resources or task.labels else worker.roomiest_slot()
        worker.slot_attempts[slot][attempt_id] = task
        worker.attempt_slot[attempt_id] = slot
        worker.attempts[attempt_id] = task
        worker.free_slots -= 1
        for name, amount in task.resources.items():
            worker.free[name] = worker.free.get(name, 0.0) - amount
        self._fair.add(task.client, task.resources)
        self._last_served[task.client] = next(self._serve_clock)
        self._running += 1
        if task.resources or task.labels:
            self._constrained.discard((task.client, task.task_id))
        return attempt_id, slot

    def _release(self, worker: _Worker, attempt_id: int, task: _Task) -> None:
        del worker.attempts[attempt_id]
        slot = worker.attempt_slot.pop(attempt_id)
        del worker.slot_attempts[slot][attempt_id]
        worker.release_place(slot)
        for name, amount in task.resources.items():
            worker.free[name] = worker.free.get(name, 0.0) + amount
        self._fair.add(task.client, task.resources, sign=-1.0)
        self._running -= 1

    # ------------------------------------------------------------------------ helpers

    def _enqueue(self, task: _Task) -> None:
        task.state = "queued"
        heapq.heappush(self._queues.setdefault(task.client, []), (-task.priority, task.seq, task))
        self._queued += 1
        if task.resources or task.labels:
            self._constrained.add((task.client, task.task_id))

    _requeue_front = _enqueue  # the original seq keeps a re-queued task ahead of later ones

    def _dequeue(self, task: _Task) -> None:
        task.state = "done"  # lazily skipped in its heap
        self._queued -= 1
        self._constrained.discard((task.client, task.task_id))

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
        return Resolve(task.client, task.task_id, status, value, error, traceback, worker)

    def _attempt_lost(self, task: _Task, reason: str, recheck: bool = True) -> list[Instruction]:
        if task.state == "cancelling":
            return [self._resolve(task, "cancelled", error=f"cancelled; {reason}")]
        if task.attempts > task.retries:
            message = f"{reason}; gave up after {task.attempts} attempt(s)"
            return [self._resolve(task, "failed", error=message)]
        impossible = self._impossible(task) if recheck else ""
        if impossible:
            return [self._resolve(task, "failed", error=f"{reason}; {impossible}")]
        self.counters.retried += 1
        self._enqueue(task)
        return []

    def _refresh_capacity(self) -> None:
        capacity: dict[str, float] = {}
        for worker in self._workers.values():
            if worker.draining:
                continue
            capacity[SLOTS] = capacity.get(SLOTS, 0.0) + worker.slots
            for name, amount in worker.resources.items():
                capacity[name] = capacity.get(name, 0.0) + amount
        self._fair.capacity = capacity

    def _impossible(self, task: _Task) -> str:
        """Why no registered worker could ever run ``task`` ('' if one could, or none yet)."""
        if not task.resources and not task.labels and self._fair.capacity.get(SLOTS):
            return ""  # any slot will do, and there is one
        return _why_impossible(task, [w for w in self._workers.values() if not w.draining])

    def _fail_impossible(self) -> list[Instruction]:
        if not any(not w.draining for w in self._workers.values()):
            return []
        out: list[Instruction] = []
        for key in list(self._constrained):
            task = self._tasks.get(key)
            if task is None or task.state != "queued":
                self._constrained.discard(key)
                continue
            reason = self._impossible(task)
            if reason:
                self._dequeue(task)
                out.append(self._resolve(task, "failed", error=reason))
        return out


def _spread(count: int, free_slots: list[int]) -> list[tuple[int, int]]:
    """Place ``count`` slot-only requests, each on the worker with the most free slots
    (the lowest index among equals), as :func:`.placer.greedy_best_fit` does."""
    heap = [(-free, index) for index, free in enumerate(free_slots) if free > 0]
    heapq.heapify(heap)
    out: list[tuple[int, int]] = []
    for request in range(count):
        if not heap:
            break
        negative_free, index = heap[0]
        out.append((request, index))
        if negative_free == -1:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (negative_free + 1, index))
    return out


def _why_impossible(task: _Task, candidates: list[_Worker]) -> str:
    """Why none of ``candidates`` could ever run ``task`` ('' if one could, or none yet)."""
    for name, amount in task.resources.items():
        # NaN would pass every comparison and poison a worker's free amounts.
        if not math.isfinite(amount) or amount < 0:
            return f"invalid demand: {name}={amount} (must be a finite amount >= 0)"
    if not candidates:
        return ""  # workers may still be starting: wait
    for worker in candidates:
        if worker.slots > 0 and fits(
            task.resources, task.labels, 1, worker.resources, worker.labels
        ):
            return ""
    wanted = ", ".join(f"{k}={amount_text(v)}" for k, v in task.resources.items()) or "no resources"
    selector = ", ".join(f"{k}={v}" for k, v in task.labels.items()) or "no labels"
    offered = "; ".join(
        f"{w.name}: slots={w.slots} "
        + " ".join(f"{k}={amount_text(v)}" for k, v in w.resources.items())
        + (" labels " + ",".join(f"{k}={v}" for k, v in w.labels.items()) if w.labels else "")
        for w in candidates[:8]
    )
    return (
        f"no registered worker could ever run this task: it needs {wanted} with {selector}; "
        f"workers offer {offered}"
    )
