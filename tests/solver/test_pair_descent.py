"""Pair re-optimisation (``SolverKernel.pair_descent``): the free tasks of two workers re-split
between the two, exactly, by dynamic programming or branch and bound; and its place in
``solve(..., "cpsat")`` without traffic (CP-SAT, then the local search and the pair step
polish the better of its placement and the local search's).

The exactness is checked against brute force over every split; no assertion is on a duration.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from pydispatch.solver import PlacementProblem, solve
from pydispatch.solver import _native as native
from pydispatch.solver._result import verify


def gap(cost: np.ndarray, weight: np.ndarray, capacity: np.ndarray) -> PlacementProblem:
    """A generalised assignment problem (agents x jobs) as a placement: agent i is worker i
    with resource i of capacity b_i (every other resource unlimited); job j demands r_ij of
    resource i."""
    m = cost.shape[0]
    cap = np.full((m, m), np.inf)
    np.fill_diagonal(cap, capacity)
    return PlacementProblem(weight.T.copy(), cap, cost=cost.T.copy())


def random_gap(rng: np.random.Generator, m: int, n: int, integer: bool = True) -> PlacementProblem:
    """Type-D-like: costs fall as weights rise, capacities 80% of the mean load per agent."""
    weight = rng.integers(1, 40, (m, n)).astype(float)
    if not integer:
        weight += rng.random((m, n)).round(3)
    cost = 120.0 - weight + rng.integers(-10, 11, (m, n))
    capacity = np.floor(0.8 * weight.sum(axis=1) / m)
    return gap(cost, weight, capacity)


def _feasible(p: PlacementProblem) -> Iterator[tuple[float, np.ndarray]]:
    """Every assignment that fits, with its cost (tiny problems only)."""
    cost = p.compute_cost_matrix()
    for combo in itertools.product(range(p.n_workers), repeat=p.n_tasks):
        a = np.array(combo, dtype=np.int32)
        use = np.zeros_like(p.capacity)
        np.add.at(use, a, p.demand)
        if (use <= p.capacity + 1e-9).all():
            yield float(cost[np.arange(p.n_tasks), a].sum()), a


def brute_force(p: PlacementProblem) -> tuple[float, np.ndarray] | None:
    """The optimum over every assignment (tiny problems only), or None if none fits."""
    return min(_feasible(p), key=lambda found: found[0], default=None)


def worst_feasible(p: PlacementProblem) -> np.ndarray:
    """The most expensive assignment that fits: a start with room to improve."""
    return max(_feasible(p), key=lambda found: found[0])[1]


@pytest.mark.parametrize("exact_by", ["dynamic programme", "branch and bound"])
def test_two_workers_reach_the_optimum_from_the_worst_start(exact_by: str) -> None:
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(60):
        p = random_gap(rng, 2, int(rng.integers(3, 11)))
        opt = brute_force(p)
        if opt is None:
            continue
        nat = native.build(p)
        start = worst_feasible(p)
        before = sum(nat.evaluate(start))
        nat.kernel.set_assignment(start)
        dp = 2**20 if exact_by == "dynamic programme" else 0
        improved, moved, nodes, cut_short, dp_runs = nat.kernel.pair_descent(60.0, 0, 10**7, dp, dp)
        after = nat.kernel.assignment
        verify(p, after)
        assert sum(nat.evaluate(after)) == pytest.approx(opt[0])
        assert moved == pytest.approx(opt[0] - before)
        assert cut_short == 0
        assert (dp_runs > 0) == (exact_by == "dynamic programme")
        assert (nodes > 0) == (exact_by == "branch and bound")
        assert improved == (1 if opt[0] < before else 0)
        checked += 1
    assert checked >= 30


def test_fractional_demands_take_the_branch_and_bound_and_stay_exact() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = random_gap(rng, 2, 8, integer=False)
        opt = brute_force(p)
        if opt is None:
            continue
        nat = native.build(p)
        nat.kernel.set_assignment(worst_feasible(p))
        result = nat.kernel.pair_descent(60.0, 0, 10**7, 2**20, 2**20)
        assert result[4] == 0  # no dynamic programme: its table needs integer demands
        assert sum(nat.evaluate(nat.kernel.assignment)) == pytest.approx(opt[0])


def test_every_pair_is_optimal_at_the_end_and_the_seed_fixes_the_result() -> None:
    rng = np.random.default_rng(11)
    p = random_gap(rng, 4, 24)
    nat = native.build(p)
    nat.kernel.set_assignment(nat.construct())  # type: ignore[arg-type]
    start = nat.kernel.assignment
    nat.kernel.pair_descent(60.0, 5, 10**6, 2**20, 2**22)
    first = nat.kernel.assignment
    nat.kernel.set_assignment(start)
    nat.kernel.pair_descent(60.0, 5, 10**6, 2**20, 2**22)
    np.testing.assert_array_equal(nat.kernel.assignment, first)
    verify(p, first)
    assert sum(nat.evaluate(first)) <= sum(nat.evaluate(start))
    cost = p.compute_cost_matrix()
    for a, b in itertools.combinations(range(4), 2):
        mine = np.flatnonzero((first == a) | (first == b))
        current = cost[mine, first[mine]].sum()
        sub = PlacementProblem(p.demand[mine], p.capacity[[a, b]], cost=cost[mine][:, [a, b]])
        best = brute_force(sub)
        assert best is not None
        assert current <= best[0] + 1e-9, (a, b)


def test_pinned_and_restricted_tasks_stay_where_they_may() -> None:
    rng = np.random.default_rng(5)
    base = random_gap(rng, 3, 12)
    pinned = np.full(12, -1)
    pinned[0] = 2
    allowed = np.ones((12, 3), dtype=bool)
    allowed[1] = [False, True, False]  # task 1 may only go to worker 1
    p = PlacementProblem(
        base.demand,
        base.capacity,
        cost=base.compute_cost_matrix(),
        pinned=pinned,
        allowed=allowed,
    )
    nat = native.build(p)
    nat.kernel.set_assignment(nat.construct())  # type: ignore[arg-type]
    nat.kernel.pair_descent(60.0, 0, 10**6, 2**20, 2**22)
    after = nat.kernel.assignment
    verify(p, after)
    assert after[0] == 2
    assert after[1] == 1


def test_pair_descent_refuses_an_incomplete_assignment() -> None:
    p = random_gap(np.random.default_rng(1), 3, 6)
    nat = native.build(p)
    nat.kernel.clear()
    with pytest.raises(ValueError, match="every task placed"):
        nat.kernel.pair_descent(1.0, 0, 100)


def test_cpsat_hinted_without_traffic_is_polished_by_the_pair_step() -> None:
    rng = np.random.default_rng(2)
    p = random_gap(rng, 10, 100)
    placed = solve(p, "cpsat", time_limit=3.0, num_workers=2, warm_start=True)
    names = [s.name for s in placed.steps]
    steps = {s.name: s for s in placed.steps}
    searched = float(steps["local-search"].outcome.split()[-1])
    cpsat_cost = float(steps["cpsat"].outcome.split("cost ")[1].split(",")[0])
    # hinted with the local search's placement, CP-SAT's best (if it has one) is no worse
    assert cpsat_cost <= searched or cpsat_cost == float("inf")
    if "polish" in steps:  # CP-SAT did not close the gap: the polish ran, pairs within it
        assert names.index("cpsat") < names.index("pairs") < names.index("polish")
        assert "pairs improved" in steps["pairs"].outcome
    assert placed.objective <= min(cpsat_cost, searched)
    assert placed.lower_bound <= placed.objective
    verify(p, placed.assignment)


def test_by_default_cpsat_without_traffic_is_unhinted_and_still_polished() -> None:
    p = random_gap(np.random.default_rng(4), 8, 60)
    placed = solve(p, "cpsat", time_limit=2.0, num_workers=2)
    names = [s.name for s in placed.steps]
    assert names[:4] == ["build", "construct", "local-search", "cpsat"]
    searched = float(placed.steps[2].outcome.split()[-1])
    assert placed.objective <= searched
    verify(p, placed.assignment)
