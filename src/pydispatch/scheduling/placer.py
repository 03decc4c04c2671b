"""Placement: which pending task goes to which worker, and in which order tasks are considered.

The scheduler asks a :class:`Placer` for assignments in batches ("placement rounds"). The
default, :func:`greedy_best_fit`, is pure Python and needs nothing native; the OR-Tools solver
(``pydispatch.solver``) plugs in through the same protocol once merged.

Fair sharing between clients is Dominant Resource Fairness (:class:`FairShare`): candidates for a
round are taken from the client whose dominant share (its largest fraction of any cluster
resource, counting slots as a resource) is smallest. NOTE: this is a small stand-in for the
solver's ``fair_share``; the lead may swap it for that once the branches meet.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "SLOTS",
    "FairShare",
    "PlacementRequest",
    "Placer",
    "WorkerCapacity",
    "amount_text",
    "fits",
    "greedy_best_fit",
]

SLOTS = "slots"  # the implicit resource every task needs one of

_BINARY_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20))


def amount_text(value: float) -> str:
    """A resource amount for people: ``8GiB``, ``512MiB``, ``1.5``, ``3,000,000``.

    Whole numbers of MiB and up take their binary unit (as ``pydispatch worker --resources``
    reads them back); other large amounts get thousands separators rather than an exponent.
    """
    for unit, size in _BINARY_UNITS:
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:,.0f}" if value >= 1e6 else f"{value:g}"


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """What one pending task needs: resource amounts and a label selector (exact matches)."""

    resources: Mapping[str, float]
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class WorkerCapacity:
    """What one worker can still take right now."""

    free_slots: int
    free: Mapping[str, float]
    labels: Mapping[str, str]


class Placer(Protocol):
    """Return ``(request index, worker index)`` pairs; each request at most once.

    Requests come in fairness/priority order: a placer that cannot place everything should
    prefer earlier ones. The scheduler re-checks every assignment, so a wrong placer cannot
    overcommit a worker.
    """

    def __call__(
        self, requests: Sequence[PlacementRequest], workers: Sequence[WorkerCapacity]
    ) -> list[tuple[int, int]]: ...


def fits(
    resources: Mapping[str, float],
    labels: Mapping[str, str],
    free_slots: int,
    free: Mapping[str, float],
    worker_labels: Mapping[str, str],
) -> bool:
    if free_slots < 1:
        return False
    for name, amount in resources.items():
        if free.get(name, 0.0) < amount:
            return False
    return all(worker_labels.get(key) == value for key, value in labels.items())


def greedy_best_fit(
    requests: Sequence[PlacementRequest], workers: Sequence[WorkerCapacity]
) -> list[tuple[int, int]]:
    """Place requests in order; each on the feasible worker it fits best.

    A request with resource demands goes where it leaves the least of those resources unused
    (so big workers stay free for big tasks); a request with none goes to the worker with the
    most free slots (spreading load over workers). Ties go to the worker with more free slots,
    then to the lower worker index.

    The workers are indexed for the round (:class:`_RoundIndex`) so that a request does not scan
    every worker; the answer is the same, assignment for assignment, as :func:`_best_fit_scan`'s
    (the tests check it on random rounds). Rounds whose numbers or labels the index cannot order
    exactly (see :meth:`_RoundIndex.build`) take the scan.
    """
    index = _RoundIndex.build(requests, workers)
    if index is None:
        return _best_fit_scan(requests, workers)
    slots = index.slots
    everyone = index.everyone
    assignments: list[tuple[int, int]] = []
    for request_index, request in enumerate(requests):
        if not index.open_count:
            break
        resources = request.resources
        if resources:
            best = index.best_for_resources(resources, request.labels)
        elif request.labels:
            best = _most_slots(index.selector(request.labels).heap, slots)
        else:
            best = _most_slots(everyone, slots)
        if best < 0:
            continue
        assignments.append((request_index, best))
        index.take(best, resources)
    return assignments


def _best_fit_scan(
    requests: Sequence[PlacementRequest], workers: Sequence[WorkerCapacity]
) -> list[tuple[int, int]]:
    """:func:`greedy_best_fit` by scanning every open worker per request: O(requests x workers).

    The definition the index must agree with, and the fallback for rounds it cannot index.
    """
    free_slots = [worker.free_slots for worker in workers]
    free = [dict(worker.free) for worker in workers]
    open_workers = [index for index, slots in enumerate(free_slots) if slots > 0]
    assignments: list[tuple[int, int]] = []
    for request_index, request in enumerate(requests):
        if not open_workers:
            break
        best = -1
        best_key = (0.0, 0)
        for worker_index in open_workers:
            if not fits(
                request.resources,
                request.labels,
                free_slots[worker_index],
                free[worker_index],
                workers[worker_index].labels,
            ):
                continue
            leftover = sum(
                free[worker_index].get(name, 0.0) - amount
                for name, amount in request.resources.items()
            )
            key = (leftover, -free_slots[worker_index])
            if best < 0 or key < best_key:
                best, best_key = worker_index, key
        if best < 0:
            continue
        assignments.append((request_index, best))
        free_slots[best] -= 1
        for name, amount in request.resources.items():
            free[best][name] = free[best].get(name, 0.0) - amount
        if free_slots[best] == 0:
            open_workers.remove(best)
    return assignments


# Ints up to 2**52 in magnitude, and differences of two of them, are exact as floats: with these
# (and finite floats) ``free - amount`` is the same monotone function of ``free`` whatever mix
# of int and float a round holds, which the early exit of ``best_for_resources`` relies on.
_EXACT_INT = 2**52


def _orderable(value: object) -> bool:
    """A resource amount the index can order exactly (see ``_EXACT_INT``): no NaN, no infinity."""
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int and -_EXACT_INT <= value <= _EXACT_INT


def _most_slots(heap: list[tuple[int, int]], slots: list[int]) -> int:
    """The open worker of ``heap`` with the most free slots (lowest index on ties), or -1.

    Entries are ``(-free slots, worker)`` as of when they were pushed. Slots only go down during
    a round, so an out-of-date entry sorts too early, never too late: refreshing such entries
    as they reach the top makes the top, once current, the true best.
    """
    while heap:
        negative, worker = heap[0]
        now = slots[worker]
        if -negative == now:
            return worker
        if now > 0:
            heapq.heapreplace(heap, (-now, worker))
        else:
            heapq.heappop(heap)
    return -1


@dataclass(slots=True)
class _Selector:
    """The workers whose labels match one selector: in index order, and as a lazy slot heap."""

    candidates: list[int]
    heap: list[tuple[int, int]]


@dataclass(slots=True)
class _RoundIndex:
    """One round's workers, indexed three ways:

    * ``everyone``: a heap of ``(-free slots, worker)`` over the open workers, for plain requests;
    * ``buckets``: the workers carrying each ``(label, value)`` a request selects on; a
      selector's matching workers (and their slot heap) are cached per selector;
    * ``by_free``: per requested resource, the open workers as ``(free amount, worker)`` in
      ascending order, for best-fit with early exit.
    """

    slots: list[int]
    free: list[dict[str, float]]
    labels: list[Mapping[str, str]]
    open_count: int
    everyone: list[tuple[int, int]]
    by_free: dict[str, list[tuple[float, int]]]
    # The largest free amount of each resource at the round's start: which resource's leftover
    # bounds a request's leftover most tightly (see ``best_for_resources``).
    scale: dict[str, float]
    buckets: dict[tuple[str, str], list[int]]
    selectors: dict[frozenset[tuple[str, str]], _Selector]

    @classmethod
    def build(
        cls, requests: Sequence[PlacementRequest], workers: Sequence[WorkerCapacity]
    ) -> _RoundIndex | None:
        """The index, or None when the round holds something it cannot order exactly.

        That is: a demand that is not a finite non-negative float or an int within
        ``_EXACT_INT``; a free amount of a requested resource that is not a finite float or
        such an int; a label value (selected on) that is not a str; a slot count that is not
        an int. Such rounds (none the dispatcher makes) keep the scan's exact answer.
        """
        names: set[str] = set()
        keys: set[str] = set()
        for request in requests:
            for name, amount in request.resources.items():
                if not _orderable(amount) or amount < 0:
                    return None
                names.add(name)
            for key, value in request.labels.items():
                if type(value) is not str:
                    return None
                keys.add(key)
        slots = [worker.free_slots for worker in workers]
        if any(type(count) is not int for count in slots):
            return None
        free = [dict(worker.free) for worker in workers]
        labels = [worker.labels for worker in workers]
        open_workers = [index for index, count in enumerate(slots) if count > 0]

        by_free: dict[str, list[tuple[float, int]]] = {}
        scale: dict[str, float] = {}
        for name in names:
            column = [(free[index].get(name, 0.0), index) for index in open_workers]
            if not all(_orderable(amount) for amount, _ in column):
                return None
            column.sort()
            by_free[name] = column
            scale[name] = column[-1][0] if column else 0.0

        buckets: dict[tuple[str, str], list[int]] = {}
        for key in keys:
            for index in open_workers:
                label: object = labels[index].get(key)
                if label is None:
                    continue
                if type(label) is not str:
                    return None
                buckets.setdefault((key, label), []).append(index)

        everyone = [(-slots[index], index) for index in open_workers]
        heapq.heapify(everyone)
        return cls(slots, free, labels, len(open_workers), everyone, by_free, scale, buckets, {})

    def selector(self, selector: Mapping[str, str]) -> _Selector:
        items = frozenset(selector.items())
        cached = self.selectors.get(items)
        if cached is not None:
            return cached
        # The smallest bucket, filtered by the other labels, is the intersection of them all.
        smallest = min((self.buckets.get(pair, []) for pair in items), key=len)
        slots, labels = self.slots, self.labels
        candidates = [
            index
            for index in smallest
            if slots[index] > 0 and all(labels[index].get(k) == v for k, v in items)
        ]
        heap = [(-slots[index], index) for index in candidates]
        heapq.heapify(heap)
        self.selectors[items] = cached = _Selector(candidates, heap)
        return cached

    def best_for_resources(
        self, resources: Mapping[str, float], selector: Mapping[str, str]
    ) -> int:
        """The open worker with the least leftover of ``resources`` (then most slots, then lowest
        index) among those that fit and match ``selector``; -1 if none.

        Candidates come in ascending free amount of the request's largest-scale resource ``r``
        (memory over cpu: its leftover dominates the sum), from the first with enough of it.
        A fitting worker leaves ``free[r] - demand[r] >= 0`` of ``r`` and of every other
        resource, and a float sum of non-negative terms is at least each term, so once
        ``free[r] - demand[r]`` exceeds the best leftover found no later worker can beat it.
        Equal bounds keep scanning: rounding can tie leftovers that differ exactly, and a tie
        goes to the worker with more slots. (The bound is exact for 3.11's left-to-right float
        sum; ``limit`` adds one ulp of slack for 3.12's compensated one.)
        """
        dominant = max(resources, key=self.scale.__getitem__)
        demand = resources[dominant]
        column = self.by_free[dominant]
        start = bisect.bisect_left(column, (demand, -1))
        if selector:
            candidates = self.selector(selector).candidates
            if len(candidates) < len(column) - start:
                return self._scan(candidates, resources)
        slots, free, labels = self.slots, self.free, self.labels
        best = -1
        best_key: tuple[float, int, int] = (0.0, 0, 0)
        limit = math.inf
        for position in range(start, len(column)):
            amount, worker = column[position]
            if amount - demand > limit:
                break
            have = free[worker]
            if not fits(resources, selector, slots[worker], have, labels[worker]):
                continue
            leftover = sum(have.get(name, 0.0) - need for name, need in resources.items())
            key = (leftover, -slots[worker], worker)
            if best < 0 or key < best_key:
                best, best_key = worker, key
                # One ulp of slack: since 3.12 sum() compensates its rounding, which moves the
                # sum by far less than an ulp of its largest term, but not by nothing.
                limit = math.nextafter(leftover, math.inf)
        return best

    def _scan(self, candidates: list[int], resources: Mapping[str, float]) -> int:
        """``best_for_resources`` over a selector's (few) matching workers, in index order."""
        slots, free = self.slots, self.free
        best = -1
        best_key: tuple[float, int] = (0.0, 0)
        for worker in candidates:
            count = slots[worker]
            have = free[worker]
            if count < 1 or any(have.get(name, 0.0) < need for name, need in resources.items()):
                continue
            leftover = sum(have.get(name, 0.0) - need for name, need in resources.items())
            key = (leftover, -count)
            if best < 0 or key < best_key:
                best, best_key = worker, key
        return best

    def take(self, worker: int, resources: Mapping[str, float]) -> None:
        """Book one slot and ``resources`` on ``worker``, keeping ``by_free`` sorted.

        The slot heaps are not touched: they refresh lazily (see :func:`_most_slots`). A demand
        is orderable, non-negative and at most what is free, so the amounts left stay orderable.
        """
        slots, have = self.slots, self.free[worker]
        slots[worker] -= 1
        if not slots[worker]:
            self.open_count -= 1
            for name, column in self.by_free.items():
                del column[bisect.bisect_left(column, (have.get(name, 0.0), worker))]
            for name, need in resources.items():
                have[name] = have.get(name, 0.0) - need
            return
        for name, need in resources.items():
            before = have.get(name, 0.0)
            have[name] = after = before - need
            column = self.by_free[name]
            del column[bisect.bisect_left(column, (before, worker))]
            bisect.insort(column, (after, worker))


@dataclass(slots=True)
class FairShare:
    """Dominant Resource Fairness bookkeeping: what each client holds of the cluster."""

    capacity: dict[str, float] = field(default_factory=dict)
    held: dict[bytes, dict[str, float]] = field(default_factory=dict)

    def dominant_share(self, client: bytes) -> float:
        held = self.held.get(client)
        if not held:
            return 0.0
        share = 0.0
        for name, amount in held.items():
            total = self.capacity.get(name, 0.0)
            if total > 0:
                share = max(share, amount / total)
        return share

    def add(self, client: bytes, resources: Mapping[str, float], sign: float = 1.0) -> None:
        held = self.held.setdefault(client, {})
        held[SLOTS] = held.get(SLOTS, 0.0) + sign
        for name, amount in resources.items():
            held[name] = held.get(name, 0.0) + sign * amount
        if held[SLOTS] <= 0:
            del self.held[client]
