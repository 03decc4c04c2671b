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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

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
    most free slots (spreading load over workers).
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
