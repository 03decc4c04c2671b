"""One placement round of greedy_best_fit against the scan it replaced, measured in the same run.

The baseline is the tests' frozen copy of the old implementation
(``tests/_support/placement_reference.py``), so the code being beaten is the code the tests check
the new answers against.

Run:

    PYTHONPATH=src:bench python -m pytest bench/bench_placement.py -s -q --benchmark-disable-gc

A round is 400 requests (about a dispatcher's free slots) in the scheduler's mix: 80 % plain,
10 % with a label selector, 10 % with cpu and memory demands; workers have 1-8 free slots, a
zone label (one in five also a gpu label), 0-16 cpus and 0-64 GiB free.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from _support.placement_reference import reference_greedy_best_fit
from conftest import Recorder
from pydispatch.scheduling.placer import PlacementRequest, WorkerCapacity, greedy_best_fit

GiB = 2**30
ZONES = ("a", "b", "c", "d")
N_REQUESTS = 400

Placer = Callable[[Sequence[PlacementRequest], Sequence[WorkerCapacity]], list[tuple[int, int]]]
PLACERS: dict[str, tuple[Placer, bool]] = {
    "scan (before)": (reference_greedy_best_fit, True),
    "indexed": (greedy_best_fit, False),
}


def round_instance(
    n_workers: int, *, plain: float = 0.8, labelled: float = 0.1, seed: int = 0
) -> tuple[list[PlacementRequest], list[WorkerCapacity]]:
    rng = random.Random(seed)
    workers = []
    for _ in range(n_workers):
        labels = {"zone": rng.choice(ZONES)}
        if rng.random() < 0.2:
            labels["gpu"] = "a100"
        free = {"cpu": float(rng.randint(0, 16)), "memory": float(rng.randint(0, 64) * GiB)}
        workers.append(WorkerCapacity(rng.randint(1, 8), free, labels))
    requests = []
    for _ in range(N_REQUESTS):
        kind = rng.random()
        if kind < plain:
            requests.append(PlacementRequest({}, {}))
        elif kind < plain + labelled:
            requests.append(PlacementRequest({}, {"zone": rng.choice(ZONES)}))
        else:
            demand = {"cpu": float(rng.randint(1, 4)), "memory": float(rng.randint(1, 16) * GiB)}
            requests.append(PlacementRequest(demand, {}))
    return requests, workers


def _bench_round(
    benchmark: Any,
    record: Recorder,
    group: str,
    name: str,
    requests: list[PlacementRequest],
    workers: list[WorkerCapacity],
) -> None:
    placer, baseline = PLACERS[name]
    result = benchmark(placer, requests, workers)
    assert result == greedy_best_fit(requests, workers)  # same answer, or the ratio is moot
    record(group, name, len(requests), baseline=baseline)


@pytest.mark.parametrize("name", PLACERS)
@pytest.mark.parametrize("n_workers", [100, 1_000])
def bench_round_scheduler_mix(benchmark: Any, record: Recorder, n_workers: int, name: str) -> None:
    """400 requests, 80 % plain / 10 % labelled / 10 % cpu+memory."""
    requests, workers = round_instance(n_workers)
    group = f"round of {N_REQUESTS} requests (80/10/10), {n_workers} workers"
    _bench_round(benchmark, record, group, name, requests, workers)


@pytest.mark.parametrize("name", PLACERS)
def bench_round_all_resources(benchmark: Any, record: Recorder, name: str) -> None:
    """The index's least favourable common case: every request demands cpu and memory."""
    requests, workers = round_instance(1_000, plain=0.0, labelled=0.0)
    group = f"round of {N_REQUESTS} cpu+memory requests, 1000 workers"
    _bench_round(benchmark, record, group, name, requests, workers)
