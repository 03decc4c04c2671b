"""The worker table's index of free capacity, kept up to date on events, never rebuilt.

A placement round used to look at every registered worker to find the free ones: 1.4 us a
worker, 1.3 ms a round at 1,000 workers even to place one task. This index is updated when a
slot's room or idleness changes (an attempt placed or released, a slot added, removed, closed,
leased or measured: :class:`~.records.Worker` reports each change) and when a worker registers,
drains or leaves, each in O(1); a round then touches only the slots and workers it places on.

It holds, over the slots of workers that are not draining:

* the idle slots (holding nothing, open, able to start a task at once), oldest idle first;
* the other slots with room (a prefetch window not full), bucketed by how much room they have;
* the free places in all (the sum of their room: what a round may place at most);
* the workers with at least one idle slot, all of them and by each ``(label, value)`` they
  carry and each resource they offer (where a constrained task, which only starts on an idle
  slot, can go);

and, over all workers not draining, by label pair and by resource offered (where a constrained
task could ever go, for :meth:`WorkerTable.why_impossible`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from .records import Worker

__all__ = ["FreeIndex"]

# Insertion-ordered sets (of slots or workers, by identity): OrderedDict, not dict, because
# they are read from the front after deletions there, which a dict does by skipping over every
# deleted entry (O(deleted) until it is resized) and an OrderedDict's linked list in O(1).
_Ordered = OrderedDict[bytes, Worker]


class FreeIndex:
    """Free slots and the workers with an idle one, as :class:`~.records.Worker` changes."""

    def __init__(self) -> None:
        self.free_total = 0  # the room of every indexed slot
        self._idle: _Ordered = OrderedDict()  # slot -> its worker, oldest idle first
        self._rooms: dict[int, _Ordered] = {}  # room -> busy slots with that room
        self._top = 0  # no busy slot has more room than this
        self._where: dict[bytes, tuple[int, bool]] = {}  # indexed slot -> (room, idle)
        self._idle_count: dict[bytes, int] = {}  # worker -> its idle slots (when > 0)
        self.idle_workers: _Ordered = OrderedDict()
        self._idle_by_label: dict[tuple[str, str], _Ordered] = {}
        self._idle_by_resource: dict[str, _Ordered] = {}
        self.by_label: dict[tuple[str, str], _Ordered] = {}  # active workers, idle or not
        self.by_resource: dict[str, _Ordered] = {}

    # ----------------------------------------------------------------------- events

    def add_worker(self, worker: Worker) -> None:
        """A worker not draining joined (its slots are indexed as they are added)."""
        for pair in worker.labels.items():
            self.by_label.setdefault(pair, OrderedDict())[worker.id] = worker
        for name in worker.resources:
            self.by_resource.setdefault(name, OrderedDict())[worker.id] = worker
        worker.on_slot_change = self.slot_changed
        for slot in worker.slot_attempts:
            self.slot_changed(worker, slot)

    def remove_worker(self, worker: Worker) -> None:
        """A worker drains or leaves: none of its slots takes anything more."""
        worker.on_slot_change = None
        for slot in worker.slot_attempts:
            self._unindex(worker, slot)
        for pair in worker.labels.items():
            _discard(self.by_label, pair, worker.id)
        for name in worker.resources:
            _discard(self.by_resource, name, worker.id)

    def slot_changed(self, worker: Worker, slot: bytes) -> None:
        """``slot`` of ``worker`` (not draining) changed: its room, idleness, or existence."""
        self._unindex(worker, slot)
        if slot not in worker.slot_capacity:
            return  # removed
        room = worker.room(slot)
        if room <= 0:
            return
        idle = worker.is_idle(slot)
        self._where[slot] = (room, idle)
        self.free_total += room
        if idle:
            self._idle[slot] = worker
            count = self._idle_count.get(worker.id, 0) + 1
            self._idle_count[worker.id] = count
            if count == 1:
                self._worker_idle(worker)
        else:
            self._rooms.setdefault(room, OrderedDict())[slot] = worker
            self._top = max(self._top, room)

    def _unindex(self, worker: Worker, slot: bytes) -> None:
        where = self._where.pop(slot, None)
        if where is None:
            return
        room, idle = where
        self.free_total -= room
        if not idle:
            del self._rooms[room][slot]
            return
        del self._idle[slot]
        count = self._idle_count[worker.id] - 1
        if count:
            self._idle_count[worker.id] = count
            return
        del self._idle_count[worker.id]
        del self.idle_workers[worker.id]
        for pair in worker.labels.items():
            _discard(self._idle_by_label, pair, worker.id)
        for name in worker.resources:
            _discard(self._idle_by_resource, name, worker.id)

    def _worker_idle(self, worker: Worker) -> None:
        self.idle_workers[worker.id] = worker
        for pair in worker.labels.items():
            self._idle_by_label.setdefault(pair, OrderedDict())[worker.id] = worker
        for name in worker.resources:
            self._idle_by_resource.setdefault(name, OrderedDict())[worker.id] = worker

    # ---------------------------------------------------------------------- queries

    def next_slot(self) -> tuple[Worker, bytes] | None:
        """The slot a plain task should go to: the oldest idle one, else the one with the most
        room (oldest first among equals); None if no slot has room."""
        for slot, worker in self._idle.items():
            return worker, slot
        rooms = self._rooms
        while self._top > 0:
            bucket = rooms.get(self._top)
            if bucket:
                for slot, worker in bucket.items():
                    return worker, slot
            self._top -= 1
        return None

    def idle_count(self, worker: bytes) -> int:
        """How many slots of ``worker`` are idle."""
        return self._idle_count.get(worker, 0)

    def idle_candidates(
        self, resources: Mapping[str, float], labels: Mapping[str, str]
    ) -> _Ordered:
        """Workers with an idle slot that may fit a task demanding ``resources`` and selecting
        ``labels``: those carrying the label pair (or offering the resource) held by the
        fewest; every worker with an idle slot if the task demands nothing positive. A
        superset of those that fit (the caller checks), in the order they became idle; not to
        be changed while iterated."""
        return _smallest(
            self._idle_by_label, self._idle_by_resource, self.idle_workers, resources, labels
        )

    def could_run(
        self, resources: Mapping[str, float], labels: Mapping[str, str], everyone: _Ordered
    ) -> _Ordered:
        """The active workers that may be able to run such a task, ever (a superset, as for
        :meth:`idle_candidates`; ``everyone``: all active workers)."""
        return _smallest(self.by_label, self.by_resource, everyone, resources, labels)

    # ------------------------------------------------------------------- for tests

    def contents(self) -> dict[str, object]:
        """What the index holds, as plain values (the tests compare it with a scan)."""
        return {
            "free_total": self.free_total,
            "idle": list(self._idle),
            "busy": {slot: room for room, b in self._rooms.items() for slot in b},
            "top": self._top,
            "idle_count": dict(self._idle_count),
            "idle_workers": list(self.idle_workers),
            "idle_by_label": {k: set(b) for k, b in self._idle_by_label.items()},
            "idle_by_resource": {k: set(b) for k, b in self._idle_by_resource.items()},
            "by_label": {k: set(b) for k, b in self.by_label.items()},
            "by_resource": {k: set(b) for k, b in self.by_resource.items()},
        }


_NONE: _Ordered = OrderedDict()  # an empty bucket (never changed)


def _discard(buckets: dict[Any, _Ordered], key: object, worker: bytes) -> None:
    bucket = buckets.get(key)
    if bucket is not None:
        bucket.pop(worker, None)
        if not bucket:
            del buckets[key]


def _smallest(
    by_label: dict[tuple[str, str], _Ordered],
    by_resource: dict[str, _Ordered],
    everyone: _Ordered,
    resources: Mapping[str, float],
    labels: Mapping[str, str],
) -> _Ordered:
    """The smallest of the buckets a task's selector and positive demands name (a worker
    outside any of them cannot run it); ``everyone`` if it names none."""
    best: _Ordered | None = None
    for pair in labels.items():
        bucket = by_label.get(pair, _NONE)
        if best is None or len(bucket) < len(best):
            best = bucket
    for name, amount in resources.items():
        if amount > 0:
            bucket = by_resource.get(name, _NONE)
            if best is None or len(bucket) < len(best):
                best = bucket
    return everyone if best is None else best
