"""The scheduler's records: a task as queued or running, and a worker with its slots.

Kept apart from :mod:`scheduler`, which owns the decisions (and from :mod:`workers` and
:mod:`task_queue`, which hold these records for it): what is here only keeps a worker's
capacity consistent (free slots = the sum over its open slots of capacity - attempts held, free
resources = its totals - what its attempts hold) as attempts are placed and released and as
slots are added, closed, leased, measured and removed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from .snapshots import WorkerSnapshot

__all__ = ["Task", "Worker", "worker_snapshot"]


@dataclass(slots=True, eq=False)
class Task:
    client: bytes
    task_id: int
    payload: object
    resources: Mapping[str, float]  # read-only: most tasks share one empty mapping
    labels: Mapping[str, str]
    priority: int
    retries: int
    seq: int
    state: Literal["queued", "running", "cancelling", "done"] = "queued"
    attempts: int = 0
    attempt_id: int = -1
    worker: bytes = b""
    started: bool = False  # its attempt counts as running (see Scheduler.cancel)
    # Its slot reported it running: that slot then waits for the Kills sent before it starts
    # the next attempt (Done.sync), so attempts behind it can be counted cancelled at once.
    reported: bool = False


@dataclass(slots=True, eq=False)
class Worker:
    id: bytes
    name: str
    node: str
    pid: int
    slots: int
    resources: dict[str, float]
    labels: dict[str, str]
    last_seen: float
    free_slots: int = 0  # attempts it can still take: the sum of its slots' capacities - placed
    free: dict[str, float] = field(default_factory=dict)
    attempts: dict[int, Task] = field(default_factory=dict)
    # Its slot processes that can take work, each with its attempts placed and not reported,
    # how many it may hold (1 running + what prefetch allows) and how long its tasks last.
    slot_attempts: dict[bytes, dict[int, Task]] = field(default_factory=dict)
    slot_capacity: dict[bytes, int] = field(default_factory=dict)
    slot_seconds: dict[bytes, float] = field(default_factory=dict)
    # Slots the dispatcher could not reach: given nothing more, their capacity kept equal to
    # what they hold (so they add no free capacity) until their worker reports them lost.
    closed: set[bytes] = field(default_factory=set)
    # Slots reserved for a lease holder's direct attempts (see ``leases``), with the capacity each
    # would have: like closed ones, given nothing more (their capacity follows what they hold).
    leased: dict[bytes, int] = field(default_factory=dict)
    # Slots whose lease closed but that may still run a direct attempt, until they confirm
    # (LeaseClosed): never idle, not leased again, and one place less than usual (the target
    # kept here); their capacity is never below what they hold, so a slot that still holds
    # the lone task that got it the lease hides no other slot's room.
    direct_busy: dict[bytes, int] = field(default_factory=dict)
    attempt_slot: dict[int, bytes] = field(default_factory=dict)
    draining: bool = False
    data_address: str = ""
    # Told after every change to a slot's room or idleness (the table's free-capacity index,
    # see ``free_index``), so that a placement round finds free slots without a scan; while
    # ``deferred`` is not None, the slots changed are collected there and told at
    # :meth:`tell_changes` (once per slot for a Run or Done of many attempts).
    on_slot_change: Callable[[Worker, bytes], None] | None = None
    deferred: set[bytes] | None = None

    def _open(self, slot: bytes) -> bool:
        return slot not in self.closed and slot not in self.leased

    def is_idle(self, slot: bytes) -> bool:
        """Whether ``slot`` holds nothing and can start a task at once."""
        return not self.slot_attempts[slot] and self._open(slot) and slot not in self.direct_busy

    def room(self, slot: bytes) -> int:
        """How many more attempts ``slot`` may take now."""
        return self.slot_capacity[slot] - len(self.slot_attempts[slot])

    def measured(self, slot: bytes) -> bool:
        """Whether ``slot`` has reported how long its tasks take (its room is a time budget)."""
        return slot in self.slot_seconds

    def _changed(self, slot: bytes) -> None:
        if self.deferred is not None:
            self.deferred.add(slot)
        elif self.on_slot_change is not None:
            self.on_slot_change(self, slot)

    def defer_changes(self) -> None:
        """Collect slot changes until :meth:`tell_changes` (nothing may read the index
        meanwhile)."""
        if self.deferred is None:
            self.deferred = set()

    def tell_changes(self) -> None:
        """Tell the changes collected since :meth:`defer_changes`, and stop collecting."""
        changed, self.deferred = self.deferred, None
        if changed and self.on_slot_change is not None:
            for slot in changed:
                self.on_slot_change(self, slot)

    def has_idle_slot(self) -> bool:
        return any(self.is_idle(s) for s in self.slot_attempts)

    def idle_slot(self) -> bytes:
        return next(s for s in self.slot_attempts if self.is_idle(s))

    def roomiest_slot(self) -> bytes:
        """The slot with the most room (idle first among equals, then the first)."""
        return max(
            (s for s in self.slot_attempts if self._open(s)),
            key=lambda s: (
                self.slot_capacity[s] - len(self.slot_attempts[s]),
                -len(self.slot_attempts[s]),
            ),
        )

    def add_slot(self, slot: bytes, capacity: int) -> None:
        self.slot_attempts[slot] = {}
        self.slot_capacity[slot] = capacity
        self.free_slots += capacity
        self._changed(slot)

    def remove_slot(self, slot: bytes) -> None:
        """Forget an empty slot (its attempts were released)."""
        del self.slot_attempts[slot]
        self.free_slots -= self.slot_capacity.pop(slot)
        self.slot_seconds.pop(slot, None)
        self.closed.discard(slot)
        self.leased.pop(slot, None)
        self.direct_busy.pop(slot, None)
        self._changed(slot)

    @property
    def drained(self) -> bool:
        return self.draining and not self.attempts and not self.leased and not self.direct_busy

    def _set_capacity(self, slot: bytes, capacity: int) -> None:
        if capacity == self.slot_capacity[slot]:
            return
        self.free_slots += capacity - self.slot_capacity[slot]
        self.slot_capacity[slot] = capacity
        self._changed(slot)

    def place(self, attempt_id: int, task: Task, slot: bytes | None = None) -> bytes:
        """Place an attempt of ``task`` on ``slot`` (by default: a constrained task on an idle
        slot, where it starts at once; a plain one on the roomiest), which has room; returns
        the slot."""
        if slot is None:
            slot = self.idle_slot() if task.resources or task.labels else self.roomiest_slot()
        self.slot_attempts[slot][attempt_id] = task
        self.attempt_slot[attempt_id] = slot
        self.attempts[attempt_id] = task
        self.free_slots -= 1
        for name, amount in task.resources.items():
            self.free[name] = self.free.get(name, 0.0) - amount
        self._changed(slot)
        return slot

    def release(self, attempt_id: int) -> Task:
        """An attempt placed here ended; returns its task."""
        task = self.attempts.pop(attempt_id)
        slot = self.attempt_slot.pop(attempt_id)
        del self.slot_attempts[slot][attempt_id]
        self._release_place(slot)
        for name, amount in task.resources.items():
            self.free[name] = self.free.get(name, 0.0) + amount
        return task

    def _release_place(self, slot: bytes) -> None:
        """An attempt held by ``slot`` ended (it is no longer in ``slot_attempts``)."""
        if not self._open(slot):
            self.slot_capacity[slot] -= 1  # a closed or leased slot adds no free capacity
        elif slot in self.direct_busy and self.slot_capacity[slot] > self.direct_busy[slot]:
            self.slot_capacity[slot] -= 1  # above its target only for what it held
        else:
            self.free_slots += 1
        self._changed(slot)

    def lease_slot(self, slot: bytes) -> bool:
        if slot not in self.slot_capacity or not self._open(slot) or slot in self.direct_busy:
            return False
        held = len(self.slot_attempts[slot])
        self.leased[slot] = self.slot_capacity[slot]
        self.free_slots -= self.slot_capacity[slot] - held
        self.slot_capacity[slot] = held
        self._changed(slot)
        return True

    def close_lease(self, slot: bytes) -> None:
        capacity = self.leased.pop(slot, None)
        if capacity is None or slot in self.closed:
            return  # gone, or closed meanwhile (then it stays closed)
        self.direct_busy[slot] = capacity - 1
        self._set_capacity(slot, max(capacity - 1, len(self.slot_attempts[slot])))
        self._changed(slot)  # its idleness changed, if not its capacity

    def unlease_slot(self, slot: bytes) -> None:
        target = self.direct_busy.pop(slot, None)
        if target is not None and slot not in self.closed:
            self._set_capacity(slot, target + 1)
            self._changed(slot)

    def close_slot(self, slot: bytes) -> None:
        if slot in self.slot_capacity and slot not in self.closed:
            self.closed.add(slot)
            held = len(self.slot_attempts[slot])
            self.free_slots -= self.slot_capacity[slot] - held
            self.slot_capacity[slot] = held
            self._changed(slot)

    def observe(self, slot: bytes, seconds: float, prefetch: int, budget: float) -> None:
        """A task took ``seconds`` on ``slot``: let it queue about ``budget`` seconds of such
        tasks (at most ``prefetch``) behind the running one."""
        if slot not in self.slot_capacity or slot in self.closed:
            return
        mean = self.slot_seconds.get(slot, seconds)
        mean = self.slot_seconds[slot] = 0.75 * mean + 0.25 * seconds
        queued = prefetch if mean <= 0 else min(prefetch, int(budget / mean))
        if slot in self.leased:
            self.leased[slot] = 1 + queued  # what it gets back when the lease closes
        elif slot in self.direct_busy:
            self.direct_busy[slot] = queued
            self._set_capacity(slot, max(queued, len(self.slot_attempts[slot])))
        else:
            self._set_capacity(slot, 1 + queued)


def worker_snapshot(w: Worker, now: float) -> WorkerSnapshot:
    return WorkerSnapshot(
        name=w.name,
        node=w.node,
        pid=w.pid,
        slots=w.slots,
        slots_used=sum(1 for held in w.slot_attempts.values() if held),
        resources=dict(w.resources),
        free_resources=dict(w.free),
        labels=dict(w.labels),
        seconds_since_heartbeat=max(0.0, now - w.last_seen),
        draining=w.draining,
        data_address=w.data_address,
    )
