"""The dispatcher's solver-backed placer: greedy's answer when greedy places everything, the
solver's where greedy strands a task that fits."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pydispatch.scheduling.placer import PlacementRequest, WorkerCapacity, fits, greedy_best_fit
from pydispatch.scheduling.solver_placer import solver_placer


def request(labels: dict[str, str] | None = None, **resources: float) -> PlacementRequest:
    return PlacementRequest(resources, labels or {})


def worker(slots: int, labels: dict[str, str] | None = None, **free: float) -> WorkerCapacity:
    return WorkerCapacity(slots, free, labels or {})


def check_valid(
    requests: list[PlacementRequest], workers: list[WorkerCapacity], result: list[tuple[int, int]]
) -> None:
    free_slots = [w.free_slots for w in workers]
    free = [dict(w.free) for w in workers]
    seen = set()
    for r, w in result:
        assert r not in seen
        seen.add(r)
        req = requests[r]
        assert fits(req.resources, req.labels, free_slots[w], free[w], workers[w].labels)
        free_slots[w] -= 1
        for name, amount in req.resources.items():
            free[w][name] -= amount


def test_easy_rounds_return_greedys_answer() -> None:
    requests = [request() for _ in range(5)]
    workers = [worker(2), worker(3)]
    assert solver_placer(requests, workers) == greedy_best_fit(requests, workers)


def test_solver_places_what_greedy_strands() -> None:
    # Best-fit puts the 3 GiB task on the 5 GiB worker (2 GiB left over beats 5), then one
    # 5 GiB task on the 8 GiB worker, and the other finds 3 and 2 GiB: stranded. Exactly:
    # 3 + 5 on the 8 GiB worker and 5 on the 5 GiB one.
    requests = [request(memory=3.0), request(memory=5.0), request(memory=5.0)]
    workers = [worker(2, memory=8.0), worker(2, memory=5.0)]
    greedy = greedy_best_fit(requests, workers)
    assert len(greedy) < 3  # greedy: 3 GiB on the 5 GiB worker (2 left), strands a 5 GiB task
    result = solver_placer(requests, workers)
    check_valid(requests, workers, result)
    assert sorted(r for r, _ in result) == [0, 1, 2]


def test_labels_are_honoured_and_impossible_requests_left() -> None:
    requests = [request({"zone": "b"}, cpu=1.0), request({"zone": "c"}), request(cpu=2.0)]
    workers = [worker(1, {"zone": "a"}, cpu=2.0), worker(1, {"zone": "b"}, cpu=1.0)]
    result = solver_placer(requests, workers)
    check_valid(requests, workers, result)
    assert dict(result) == {0: 1, 2: 0}


def test_random_rounds_are_valid_and_never_worse_than_greedy() -> None:
    rng = random.Random(5)
    for _ in range(60):
        workers = [
            worker(rng.randint(0, 3), {"zone": rng.choice("ab")}, cpu=float(rng.randint(0, 8)))
            for _ in range(rng.randint(1, 4))
        ]
        requests = [
            request(
                {"zone": rng.choice("ab")} if rng.random() < 0.3 else None,
                cpu=float(rng.randint(0, 5)),
            )
            for _ in range(rng.randint(1, 8))
        ]
        result = solver_placer(requests, workers)
        check_valid(requests, workers, result)
        greedy = greedy_best_fit(requests, workers)
        assert len(result) >= len(greedy)
        placed = {r for r, _ in result}
        prefix = 0
        while prefix in placed:
            prefix += 1
        greedy_placed = {r for r, _ in greedy}
        greedy_prefix = 0
        while greedy_prefix in greedy_placed:
            greedy_prefix += 1
        assert prefix >= greedy_prefix  # earlier requests are never traded for later ones


def test_busy_queues_never_call_the_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    # More candidates than slots, homogeneous demands: greedy's prefix is the longest possible,
    # so no exact solve may run (it would cost the dispatcher's loop time on every round).
    import pydispatch.scheduling.solver_placer as placement

    solves: list[int] = []
    real = placement._exact

    def counting(*args: Any, **kwargs: Any) -> list[int] | None:
        solves.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(placement, "_exact", counting)
    workers = [worker(4, cpu=4.0), worker(4, cpu=4.0)]
    assert len(solver_placer([request() for _ in range(50)], workers)) == 8
    assert len(solver_placer([request(cpu=1.0) for _ in range(50)], workers)) == 8
    assert len(solver_placer([request(cpu=3.0) for _ in range(50)], workers)) == 2
    assert solves == []
    # ...while a round where greedy strands work does solve.
    solver_placer(
        [request(memory=3.0), request(memory=5.0), request(memory=5.0)],
        [worker(2, memory=8.0), worker(2, memory=5.0)],
    )
    assert solves


def test_the_dispatcher_places_with_the_solver_by_default() -> None:
    import inspect

    from pydispatch.runtime.dispatcher import Dispatcher

    assert inspect.signature(Dispatcher).parameters["placer"].default is solver_placer
