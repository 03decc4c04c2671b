"""greedy_best_fit as it was before the placer's index: the tests' frozen reference and the
benchmark's baseline (``bench/bench_placement.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from pydispatch.scheduling.placer import PlacementRequest, WorkerCapacity, fits

__all__ = ["reference_greedy_best_fit"]


def reference_greedy_best_fit(
    requests: Sequence[PlacementRequest], workers: Sequence[WorkerCapacity]
) -> list[tuple[int, int]]:
    """greedy_best_fit as it was before the index: every open worker scanned per request."""
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
