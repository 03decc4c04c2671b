"""The dispatcher's default placer: greedy first, the allocation solver where greedy strands work.

A placement round gets pending requests in priority/fair-share order and the workers' free
capacity. Most rounds are easy (tasks that need a slot and little else): greedy best-fit places
them all in microseconds, and its answer is returned as is, so the solver never slows the hot
path of small tasks. When greedy leaves requests unplaced although capacity remains, the round
is a packing problem that greedy may get wrong (a large task stranded by small ones placed
first). Then the solver looks for the longest prefix of the requests (earlier ones matter more)
that fits exactly: a binary search over prefix lengths, each an exact ``solve`` under a small
time limit. What capacity is left after that prefix is filled greedily with later requests.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from .placer import SLOTS, PlacementRequest, WorkerCapacity, fits, greedy_best_fit

__all__ = ["DEFAULT_TIME_LIMIT", "MAX_SOLVES_PER_ROUND", "SolverStats", "solver_placer"]

#: Time for one exact solve inside a placement round (seconds), and solves per round: the
#: dispatcher's loop waits for them, so a round costs at most their product.
DEFAULT_TIME_LIMIT = 0.02
MAX_SOLVES_PER_ROUND = 4


@dataclass(slots=True)
class SolverStats:
    """What :func:`solver_placer` did, for the dispatcher's metrics: rounds it was asked
    (constrained ones: rounds of plain tasks need no placer), exact solves with their seconds
    and the last optimality gap one reported, and attempts placed by a solver's answer."""

    rounds: int = 0
    solves: int = 0
    solve_seconds: float = 0.0
    placed_by_solver: int = 0
    last_gap: float = 0.0


def solver_placer(
    requests: Sequence[PlacementRequest],
    workers: Sequence[WorkerCapacity],
    *,
    time_limit: float = DEFAULT_TIME_LIMIT,
    stats: SolverStats | None = None,
) -> list[tuple[int, int]]:
    if stats is not None:
        stats.rounds += 1
    greedy = greedy_best_fit(requests, workers)
    if len(greedy) == len(requests) or not workers:
        return greedy
    placed = {index for index, _ in greedy}
    greedy_prefix = 0
    while greedy_prefix in placed:
        greedy_prefix += 1
    upper = _longest_possible_prefix(requests, workers)
    if upper <= greedy_prefix:
        # Greedy already placed every request that could possibly fit in order: the common
        # case of a busy queue, where no solve is needed.
        return greedy
    best: list[int] | None = None
    low, high = greedy_prefix, upper
    solves = 0
    while low < high and solves < MAX_SOLVES_PER_ROUND:
        solves += 1
        middle = (low + high + 1) // 2
        assignment = _exact(requests[:middle], workers, time_limit, stats)
        if assignment is None:
            high = middle - 1
        else:
            low, best = middle, assignment
    if best is None:
        return greedy
    chosen = list(enumerate(best))
    rest = greedy_best_fit(requests[low:], _left_over(requests, workers, chosen))
    chosen += [(low + index, worker) for index, worker in rest]
    # Keep greedy's answer when it places more of the round (the prefix is never shorter).
    if len(chosen) < len(greedy):
        return greedy
    if stats is not None:
        stats.placed_by_solver += low
    return chosen


def _longest_possible_prefix(
    requests: Sequence[PlacementRequest], workers: Sequence[WorkerCapacity]
) -> int:
    """An upper bound on how many leading requests can run now: not more than the free slots,
    not past a request no worker can take, nor past where their total demand of any resource
    exceeds what all workers have free."""
    free_slots = sum(w.free_slots for w in workers)
    totals: dict[str, float] = {}
    for w in workers:
        for name, amount in w.free.items():
            totals[name] = totals.get(name, 0.0) + amount
    used: dict[str, float] = {}
    for index, request in enumerate(requests[:free_slots]):
        # A plain request fits wherever a slot is free (there are free_slots > index of them):
        # only constrained ones need the scan over workers, which keeps busy rounds of plain
        # tasks at O(requests).
        plain = not request.resources and not request.labels
        if not plain and not any(
            fits(request.resources, request.labels, w.free_slots, w.free, w.labels) for w in workers
        ):
            return index
        for name, amount in request.resources.items():
            used[name] = used.get(name, 0.0) + amount
            if used[name] > totals.get(name, 0.0) + 1e-9:
                return index
    return min(len(requests), free_slots)


def _resource_names(
    requests: Sequence[PlacementRequest], workers: Sequence[WorkerCapacity]
) -> list[str]:
    names = {name for request in requests for name in request.resources}
    return [SLOTS, *sorted(names - {SLOTS})]


def _exact(
    requests: Sequence[PlacementRequest],
    workers: Sequence[WorkerCapacity],
    time_limit: float,
    stats: SolverStats | None = None,
) -> list[int] | None:
    """Every request on a worker within capacity, or None when the solver finds no way."""
    # Imported on the first solve: most dispatchers never need one, and start faster.
    import numpy as np

    from ..solver import InfeasibleError, PlacementProblem, solve

    names = _resource_names(requests, workers)
    demand = np.array(
        [[1.0] + [r.resources.get(name, 0.0) for name in names[1:]] for r in requests]
    )
    capacity = np.array(
        [[float(w.free_slots)] + [w.free.get(name, 0.0) for name in names[1:]] for w in workers]
    )
    allowed = np.array(
        [
            [all(w.labels.get(k) == v for k, v in r.labels.items()) for w in workers]
            for r in requests
        ]
    )
    # Spreading is the tie-break greedy uses too: a worker with more free slots costs less.
    spread = 1.0 / (1.0 + capacity[:, 0])
    problem = PlacementProblem(
        demand,
        capacity,
        names,
        cost=np.broadcast_to(spread, (len(requests), len(workers))),
        allowed=allowed,
    )
    started = time.perf_counter()
    try:
        placement = solve(problem, method="auto", time_limit=time_limit)
    except InfeasibleError:
        return None
    finally:
        if stats is not None:
            stats.solves += 1
            stats.solve_seconds += time.perf_counter() - started
    if stats is not None and placement.objective > 0:
        stats.last_gap = max(0.0, placement.objective - placement.lower_bound) / placement.objective
    return [int(worker) for worker in placement.assignment]


def _left_over(
    requests: Sequence[PlacementRequest],
    workers: Sequence[WorkerCapacity],
    chosen: list[tuple[int, int]],
) -> list[WorkerCapacity]:
    free_slots = [w.free_slots for w in workers]
    free = [dict(w.free) for w in workers]
    for request_index, worker_index in chosen:
        free_slots[worker_index] -= 1
        for name, amount in requests[request_index].resources.items():
            free[worker_index][name] = free[worker_index].get(name, 0.0) - amount
    return [
        WorkerCapacity(slots, left, w.labels)
        for slots, left, w in zip(free_slots, free, workers, strict=True)
    ]
