"""greedy_best_fit's indexed round gives the scan's answer, assignment for assignment.

``reference_greedy_best_fit`` (``tests/_support/placement_reference.py``) is the implementation
the index replaced, copied unchanged: the tests compare against this frozen copy (not against
``placement._best_fit_scan``, the fallback, which could drift with the code under test). The
benchmark imports it as its baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _support.placement_reference import reference_greedy_best_fit
from pydispatch.scheduling import placer as placement
from pydispatch.scheduling.placer import PlacementRequest, WorkerCapacity, fits, greedy_best_fit


def check_capacities(
    requests: Sequence[PlacementRequest],
    workers: Sequence[WorkerCapacity],
    result: list[tuple[int, int]],
) -> None:
    """Each request placed at most once, in order, where it fits what is left: no worker's slots,
    resources or labels are ever exceeded."""
    free_slots = [w.free_slots for w in workers]
    free = [dict(w.free) for w in workers]
    assert [r for r, _ in result] == sorted({r for r, _ in result})
    for r, w in result:
        req = requests[r]
        assert fits(req.resources, req.labels, free_slots[w], free[w], workers[w].labels)
        free_slots[w] -= 1
        for name, amount in req.resources.items():
            free[w][name] = free[w].get(name, 0.0) - amount
            assert free[w][name] >= 0


def same_as_reference(
    requests: Sequence[PlacementRequest], workers: Sequence[WorkerCapacity]
) -> list[tuple[int, int]]:
    result = greedy_best_fit(requests, workers)
    assert result == reference_greedy_best_fit(requests, workers)
    return result


# Few names, labels and amounts, so that ties (equal leftovers, equal slots) are the rule; the
# 1e16 and 0.5/1.0 amounts make leftovers that differ exactly round to the same float.
NAMES = st.sampled_from(["cpu", "memory", "gpu"])
KEYS = st.sampled_from(["zone", "rack"])
VALUES = st.sampled_from(["a", "b", "c"])
TIED = st.sampled_from([0, 1, 2, 4, 0.0, 0.5, 1.0, 1.5, 2.0, 2**30, 3 * 2**30, 1e16, 2e16])
ANY_FINITE = st.floats(allow_nan=False, allow_infinity=False)
DEMAND = TIED | st.floats(0.0, 1e6) | st.integers(0, 2**40)
FREE = TIED | ANY_FINITE | st.integers(-8, 2**52)
LABELS = st.dictionaries(KEYS, VALUES, max_size=2)


def workers_of(free: st.SearchStrategy[float]) -> st.SearchStrategy[list[WorkerCapacity]]:
    worker = st.builds(
        WorkerCapacity,
        free_slots=st.integers(-1, 4),
        free=st.dictionaries(NAMES, free, max_size=3),
        labels=LABELS,
    )
    return st.lists(worker, max_size=30)


def requests_of(demand: st.SearchStrategy[float]) -> st.SearchStrategy[list[PlacementRequest]]:
    plain = st.just(PlacementRequest({}, {}))
    labelled = st.builds(PlacementRequest, st.just({}), LABELS)
    sized = st.builds(PlacementRequest, st.dictionaries(NAMES, demand, max_size=3), LABELS)
    return st.lists(plain | labelled | sized, max_size=60)


@pytest.mark.slow
@settings(max_examples=600)
@given(requests=requests_of(DEMAND), workers=workers_of(FREE))
def test_same_assignments_as_the_scan(
    requests: list[PlacementRequest], workers: list[WorkerCapacity]
) -> None:
    check_capacities(requests, workers, same_as_reference(requests, workers))


@settings(max_examples=300)
@given(requests=requests_of(TIED), workers=workers_of(TIED))
def test_same_assignments_when_everything_ties(
    requests: list[PlacementRequest], workers: list[WorkerCapacity]
) -> None:
    check_capacities(requests, workers, same_as_reference(requests, workers))


SMALL = st.integers(0, 4) | st.sampled_from([0.5, 1.5, 2.5])


@settings(max_examples=150)
@given(
    requests=st.lists(
        st.builds(
            PlacementRequest,
            st.dictionaries(st.sampled_from(["cpu", "memory"]), SMALL, min_size=1),
            LABELS,
        ),
        min_size=20,
        max_size=80,
    ),
    workers=st.lists(
        st.builds(
            WorkerCapacity,
            free_slots=st.integers(0, 4),
            free=st.fixed_dictionaries({"cpu": SMALL, "memory": SMALL.map(lambda x: x * 4)}),
            labels=LABELS,
        ),
        min_size=20,
        max_size=120,
    ),
)
@pytest.mark.slow
def test_same_assignments_when_resources_run_out(
    requests: list[PlacementRequest], workers: list[WorkerCapacity]
) -> None:
    # Long rounds of resource requests over many workers: the free-amount order is updated
    # request after request until workers fill up, and labelled requests take either the
    # selector's list or the resource order depending on which is shorter.
    check_capacities(requests, workers, same_as_reference(requests, workers))


ODD_AMOUNT = st.sampled_from([math.inf, -math.inf, -1.0, -1, 2**60, 2**53 + 1, 1e308])


@settings(max_examples=200)
@given(
    requests=requests_of(DEMAND | ODD_AMOUNT),
    workers=workers_of(FREE | ODD_AMOUNT),
)
def test_rounds_the_index_cannot_order_keep_the_scans_answer(
    requests: list[PlacementRequest], workers: list[WorkerCapacity]
) -> None:
    # Infinities, ints past 2**52 and negative demands take the scan (the fallback): same answer.
    same_as_reference(requests, workers)


def test_odd_values_fall_back_to_the_scan() -> None:
    workers = [WorkerCapacity(2, {"cpu": 4.0}, {"zone": "a"}), WorkerCapacity(2, {}, {})]
    for requests, odd_workers in [
        ([PlacementRequest({"cpu": math.nan}, {})], workers),
        ([PlacementRequest({"cpu": -1.0}, {})], workers),
        ([PlacementRequest({"cpu": 1.0}, {})], [WorkerCapacity(1, {"cpu": math.nan}, {})]),
        ([PlacementRequest({"cpu": 1.0}, {})], [WorkerCapacity(1, {"cpu": math.inf}, {})]),
        ([PlacementRequest({}, {"zone": "a"})], [WorkerCapacity(1, {}, {"zone": 1})]),
        ([PlacementRequest({}, {})], [WorkerCapacity(True, {}, {})]),
    ]:
        assert placement._RoundIndex.build(requests, odd_workers) is None
        same_as_reference(requests, odd_workers)


def test_ordinary_rounds_are_indexed(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_scan(*_: object) -> list[tuple[int, int]]:
        raise AssertionError("an ordinary round fell back to the scan")

    monkeypatch.setattr(placement, "_best_fit_scan", no_scan)
    workers = [
        WorkerCapacity(3, {"cpu": 8, "memory": 16 * 2**30}, {"zone": "a"}),
        WorkerCapacity(0, {"cpu": 8.0}, {"zone": "b"}),
        WorkerCapacity(2, {}, {}),
    ]
    requests = [
        PlacementRequest({}, {}),
        PlacementRequest({}, {"zone": "a"}),
        PlacementRequest({"cpu": 2, "memory": 2.0**30}, {}),
    ]
    assert greedy_best_fit(requests, workers) == [(0, 0), (1, 0), (2, 0)]


def test_rounding_ties_go_to_more_slots() -> None:
    # Exactly, worker 0 leaves 1e16 + 0.5 and worker 1 leaves 1e16 + 1; as floats both are 1e16,
    # so the tie goes to worker 1's extra slots: the early exit must not stop at worker 0.
    workers = [
        WorkerCapacity(1, {"memory": 1e16, "cpu": 0.5}, {}),
        WorkerCapacity(3, {"memory": 1e16, "cpu": 1.0}, {}),
    ]
    assert same_as_reference([PlacementRequest({"memory": 0.0, "cpu": 0.0}, {})], workers) == [
        (0, 1)
    ]


@pytest.mark.parametrize(
    ("workers", "requests", "expected"),
    [
        # Plain requests spread: most free slots first, the lower index on ties.
        ([(2, {}), (3, {}), (3, {})], [{}] * 4, [(0, 1), (1, 2), (2, 0), (3, 1)]),
        # Zero and negative slots are never used.
        ([(0, {"cpu": 9}), (-1, {"cpu": 9}), (1, {"cpu": 1})], [{"cpu": 1}] * 2, [(0, 2)]),
        # Equal leftovers: more slots, then the lower index.
        ([(1, {"cpu": 2}), (2, {"cpu": 2}), (2, {"cpu": 2})], [{"cpu": 1}], [(0, 1)]),
        # Least leftover over the sum of the demanded resources, whatever their scales.
        (
            [(1, {"cpu": 1, "memory": 9 * 2**30}), (1, {"cpu": 64, "memory": 8 * 2**30})],
            [{"cpu": 1, "memory": 2**30}],
            [(0, 1)],
        ),
    ],
)
def test_tie_rules(
    workers: list[tuple[int, Mapping[str, float]]],
    requests: list[Mapping[str, float]],
    expected: list[tuple[int, int]],
) -> None:
    round_workers = [WorkerCapacity(slots, free, {}) for slots, free in workers]
    round_requests = [PlacementRequest(resources, {}) for resources in requests]
    assert same_as_reference(round_requests, round_workers) == expected


def test_selectors_intersect_their_labels() -> None:
    workers = [
        WorkerCapacity(1, {}, {"zone": "a", "rack": "1"}),
        WorkerCapacity(5, {}, {"zone": "a", "rack": "2"}),
        WorkerCapacity(5, {}, {"zone": "b", "rack": "1"}),
        WorkerCapacity(2, {}, {"zone": "a", "rack": "1"}),
    ]
    requests = [PlacementRequest({}, {"zone": "a", "rack": "1"})] * 4 + [
        PlacementRequest({}, {"zone": "c"})
    ]
    assert same_as_reference(requests, workers) == [(0, 3), (1, 0), (2, 3)]
