"""The scheduler's worker table: who is registered, their slots, and what the cluster offers.

A part of :class:`~pydispatch.scheduling.scheduler.Scheduler`'s state with one owner: the
scheduler decides (events in, instructions out), the table keeps the membership it decides on:

* the registered workers by identity, and which worker each slot process belongs to;
* how much a slot may queue (prefetch: little until its tasks have been timed, then about a
  time budget of them);
* the cluster's capacity (the slots and resources of the workers not draining), which is the
  denominator of the fair shares and says whether any slot exists at all;
* which slots and workers a placement round may use (its :class:`~.free_index.FreeIndex`,
  kept up to date on events: a round, and a registration, cost the same at 10 workers as at
  3,000), and why a task could never run on any of them.

It settles no attempt: a removed worker's attempts are the scheduler's to settle. A worker's
own consistency (free slots and resources as attempts are placed and released) is kept by
:class:`~pydispatch.scheduling.records.Worker`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from .free_index import FreeIndex
from .placer import SLOTS, amount_text, fits
from .records import Task, Worker, worker_snapshot
from .snapshots import WorkerSnapshot

__all__ = ["WorkerTable"]

_UNMEASURED_PREFETCH = 2  # tasks queued on a slot before its first task's duration is known
# Workers a round considers for the constrained tasks of one shape (demands and selector), past
# one per task: the placer picks the best fit among them, not among every worker.
_EXTRA_CANDIDATES = 16


class WorkerTable:
    """Registered workers and their slots; the cluster capacity they make up."""

    def __init__(self, *, prefetch: int = 0, queue_budget: float = 0.002) -> None:
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
        self._workers: dict[bytes, Worker] = {}
        self._slot_owner: dict[bytes, bytes] = {}  # slot identity -> its worker
        self._active: OrderedDict[bytes, Worker] = OrderedDict()  # the workers not draining
        self._active_slots = 0
        self.index = FreeIndex()  # the free slots of the active workers, and who has them
        # The slots and resources of the workers not draining, as of the last
        # refresh_capacity() (see remove()): kept by adding and subtracting each worker's.
        self.capacity: dict[str, float] = {}
        self._uncounted: list[Worker] = []  # removed, still in the capacity

    # ------------------------------------------------------------------------ queries

    def __contains__(self, worker: bytes) -> bool:
        return worker in self._workers

    def get(self, worker: bytes) -> Worker | None:
        return self._workers.get(worker)

    def __getitem__(self, worker: bytes) -> Worker:
        return self._workers[worker]

    def records(self) -> list[Worker]:
        """Every registered worker's record."""
        return list(self._workers.values())

    def knows_slot(self, identity: bytes) -> bool:
        return identity in self._slot_owner

    def owner(self, sender: bytes) -> bytes:
        """The worker of slot ``sender``; ``sender`` itself if it is no known slot."""
        return self._slot_owner.get(sender, sender)

    @property
    def total_slots(self) -> int:
        return self._active_slots

    @property
    def any_active(self) -> bool:
        """Whether a registered worker is not draining."""
        return bool(self._active)

    @property
    def free_places(self) -> int:
        """Attempts the active workers' slots may take now (running or queued)."""
        return self.index.free_total

    def excuse(self, seconds: float, now: float) -> None:
        """Count ``seconds`` of every worker's silence as heard (never past ``now``)."""
        for worker in self._workers.values():
            worker.last_seen = min(now, worker.last_seen + seconds)

    def silent(self, now: float, timeout: float) -> list[bytes]:
        """The workers not heard from for longer than ``timeout``."""
        return [w.id for w in self._workers.values() if now - w.last_seen > timeout]

    def constrained_candidates(self, tasks: Iterable[Task]) -> list[Worker]:
        """Workers with an idle slot where some of ``tasks`` (with demands or a selector) fit:
        for each shape of task, as many as there are such tasks plus a few, found through the
        index's buckets (the workers carrying a selected label, or offering a demanded
        resource, in the order they became idle), not by a scan of every worker."""
        wanted: dict[tuple[object, ...], tuple[Task, int]] = {}
        for task in tasks:
            shape = (*sorted(task.resources.items()), None, *sorted(task.labels.items()))
            first, count = wanted.get(shape, (task, 0))
            wanted[shape] = (first, count + 1)
        chosen: dict[bytes, Worker] = {}
        for task, count in wanted.values():
            found, limit = 0, count + _EXTRA_CANDIDATES
            for worker in self.index.idle_candidates(task.resources, task.labels).values():
                if fits(task.resources, task.labels, 1, worker.free, worker.labels):
                    chosen.setdefault(worker.id, worker)
                    found += 1
                    if found >= limit:
                        break
        return list(chosen.values())

    def idle_slots(self, worker: Worker) -> int:
        """How many of ``worker``'s slots are idle (0 if it drains)."""
        return self.index.idle_count(worker.id)

    def snapshots(self, now: float) -> list[WorkerSnapshot]:
        return [worker_snapshot(w, now) for w in self._workers.values()]

    def why_impossible(self, task: Task) -> str:
        """Why no registered worker could ever run ``task`` ('' if one could, or none yet)."""
        if not task.resources and not task.labels and self.capacity.get(SLOTS):
            return ""  # any slot will do, and there is one
        if not _valid_demand(task):
            return _why_impossible(task, [])
        # The workers that might run it first (a bucket of the index); all of them only to
        # explain why none can.
        likely = self.index.could_run(task.resources, task.labels, self._active)
        for worker in likely.values():
            if worker.slots > 0 and fits(
                task.resources, task.labels, 1, worker.resources, worker.labels
            ):
                return ""
        return _why_impossible(task, list(self._active.values()))

    # ----------------------------------------------------------------------- changes

    def add(
        self,
        worker: bytes,
        *,
        now: float,
        name: str,
        node: str,
        pid: int,
        slots: int,
        resources: Mapping[str, float] | None,
        labels: Mapping[str, str] | None,
        data_address: str,
        slot_ids: Iterable[bytes] | None,
    ) -> Worker:
        """Register a worker (not registered now) with its ready slots (``slot_ids``; by
        default ``slots`` made-up ones), and count it in the capacity."""
        slots = max(0, slots)
        totals = {k: float(v) for k, v in (resources or {}).items()}
        known = Worker(
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
            self.add_slot(known, slot)
        self.refresh_capacity()
        self._activate(known)
        return known

    def _activate(self, worker: Worker) -> None:
        self._active[worker.id] = worker
        self._active_slots += worker.slots
        self.index.add_worker(worker)
        self._count(worker, 1.0)

    def _deactivate(self, worker: Worker) -> None:
        del self._active[worker.id]
        self._active_slots -= worker.slots
        self.index.remove_worker(worker)

    def _count(self, worker: Worker, sign: float) -> None:
        """Add ``worker``'s slots and resources to the capacity (``sign`` -1: take them out)."""
        capacity = self.capacity
        capacity[SLOTS] = capacity.get(SLOTS, 0.0) + sign * worker.slots
        for name, amount in worker.resources.items():
            capacity[name] = capacity.get(name, 0.0) + sign * amount
        if sign < 0:
            # What no active worker offers any more is gone (not a rounding residue).
            if not self._active:
                capacity.clear()
            for name in worker.resources:
                if name not in self.index.by_resource:
                    capacity.pop(name, None)

    def add_slot(self, worker: Worker, slot: bytes) -> None:
        # Until its first task reports how long it took, a slot queues little: the first
        # tasks of a job may be long ones, and tasks committed to one slot cannot move.
        worker.add_slot(slot, 1 + min(self._prefetch, _UNMEASURED_PREFETCH))
        self._slot_owner[slot] = worker.id

    def remove_slot(self, worker: Worker, slot: bytes) -> None:
        """Forget a slot of ``worker`` whose attempts were released."""
        worker.remove_slot(slot)
        del self._slot_owner[slot]

    def observe(self, worker: Worker, slot: bytes, seconds: float) -> None:
        """A task took ``seconds`` on ``slot`` of ``worker`` (b"": the worker reported it)."""
        worker.observe(slot, seconds, self._prefetch, self._queue_budget)

    def drain(self, worker: Worker) -> None:
        """``worker`` takes nothing more; it no longer counts in the capacity."""
        if worker.draining:
            return
        worker.draining = True
        self._deactivate(worker)
        self.refresh_capacity()
        self._count(worker, -1.0)

    def remove(self, worker: bytes) -> Worker:
        """Take a registered worker and its slots out of the table, its attempts still on it.

        The capacity still counts it until :meth:`refresh_capacity`, which the scheduler
        calls once those attempts are settled: a retry among them is checked against the
        capacity as it was with the worker (and against the workers left).
        """
        gone = self._workers.pop(worker)
        for slot in gone.slot_attempts:
            self._slot_owner.pop(slot, None)
        if not gone.draining:
            self._deactivate(gone)
            self._uncounted.append(gone)
        return gone

    def refresh_capacity(self) -> None:
        """Take the workers removed since the last call out of the capacity."""
        while self._uncounted:
            self._count(self._uncounted.pop(), -1.0)


def _valid_demand(task: Task) -> bool:
    return all(math.isfinite(amount) and amount >= 0 for amount in task.resources.values())


def _why_impossible(task: Task, candidates: list[Worker]) -> str:
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
