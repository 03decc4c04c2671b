"""The lower bounds of pydispatch.solver (_bounds): never above the optimum, found by brute
force on tiny instances and by CP-SAT (proven optimal, its own best bound) on small ones; and
strong where they are meant to be (the Lagrangian near the LP bound, the shuffle bound above the
per-task knapsack bound)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydispatch.solver import PlacementProblem, lower_bound, solve
from pydispatch.solver import _bounds as bounds
from pydispatch.solver import _exact as exact
from pydispatch.solver import _native as native


def brute_force(p: PlacementProblem) -> tuple[float, float]:
    """(least total cost, least network cost) over every feasible assignment, from the raw
    arrays: the distance matrix is rebuilt from the locations, not taken from the solver."""
    T, W = p.n_tasks, p.n_workers
    grid = np.indices((W,) * T).reshape(T, -1).T  # every assignment, one a row
    usage = np.zeros((grid.shape[0], W, p.n_resources))
    for t in range(T):
        usage[np.arange(grid.shape[0]), grid[:, t]] += p.demand[t]
    ok = (usage <= p.capacity[None] + 1e-9).all(axis=(1, 2))
    ok &= p.allowed_matrix()[np.arange(T)[None, :], grid].all(axis=1)
    grid = grid[ok]
    assert grid.shape[0] > 0, "test instance must be feasible"
    cost = p.compute_cost_matrix()[np.arange(T)[None, :], grid].sum(axis=1)
    loc = p.locations if p.locations is not None else np.zeros((W, 0), np.int64)
    ld = p.level_distance
    L = loc.shape[1]
    D = np.empty((W, W))
    for a in range(W):
        for b in range(W):
            shared = 0
            while shared < L and loc[a, shared] == loc[b, shared]:
                shared += 1
            D[a, b] = ld[0] if a == b else ld[L + 1 - shared]
    net = (p.traffic_volume[None, :] * D[grid[:, p.traffic_src], grid[:, p.traffic_dst]]).sum(
        axis=1
    )
    return float((cost + net).min()), float(net.min())


def gap_problem(
    rng: np.random.Generator, T: int, W: int, R: int, slack: float = 1.25
) -> PlacementProblem:
    """Generalised assignment with R resources per worker, capacity `slack` x a fair share."""
    dem = rng.integers(1, 10, (T, R)).astype(float)
    cap = np.tile(np.ceil(dem.sum(axis=0) / W * slack), (W, 1)) + rng.integers(0, 3, (W, R))
    cost = rng.integers(1, 30, (T, W)).astype(float)
    return PlacementProblem(dem, cap, cost=cost)


# ----------------------------------------------------------------- Lagrangian (capacities)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    T=st.integers(2, 7),
    W=st.integers(2, 3),
    R=st.integers(1, 3),
)
def test_lagrangian_never_above_brute_force(seed: int, T: int, W: int, R: int) -> None:
    rng = np.random.default_rng(seed)
    p = gap_problem(rng, T, W, R)
    try:
        best, _ = brute_force(p)
    except AssertionError:
        return  # an infeasible draw: nothing to bound
    nat = native.build(p)
    value, lam = bounds.lagrangian_bound(p, nat, best, 1.0)
    assert value <= best + 1e-9
    assert (lam >= 0).all()
    assert lam.shape == (W, R)
    comp, method, _ = bounds.compute_bound(p, nat, 1.0, best)
    assert comp <= best + 1e-9
    assert comp >= float(p.cost.min(axis=1).sum()) - 1e-9  # type: ignore[union-attr]
    assert lower_bound(p) <= best + 1e-9
    assert method in ("capacity-free", "lagrangian", "lagrangian-knapsack", "lp")


def test_lagrangian_against_cpsat_and_lp() -> None:
    """Five small GAP instances solved to proven optimality by CP-SAT: our bound is below its
    best objective bound (the optimum), above the capacity-free bound, and within 0.5% of the
    LP relaxation, which the capacity relaxation equals at its best multipliers."""
    rng = np.random.default_rng(7)
    binding = 0
    for _ in range(5):
        p = gap_problem(rng, 24, 4, 2, slack=1.05)
        nat = native.build(p)
        r = exact.cpsat(p, deadline=math.inf, gap_limit=0.0, seed=0, num_workers=1, hint=None)
        assert r.proven_optimal
        assert r.assignment is not None
        optimum = sum(nat.evaluate(r.assignment))
        value, _ = bounds.lagrangian_bound(p, nat, optimum, 5.0)
        assert value <= r.lower_bound + 1e-9  # CP-SAT's BestObjectiveBound, here the optimum
        assert value <= optimum + 1e-9
        lp = exact.lp_bound(p, 10.0)
        free = float(nat.kernel.min_cost().sum())
        cheapest = p.compute_cost_matrix().argmin(axis=1)
        usage = np.zeros_like(p.capacity)
        np.add.at(usage, cheapest, p.demand)
        if (usage > p.capacity).any():  # the capacities bind: the bound must see it
            assert value > free + 1e-6
            binding += 1
        assert value >= lp - 0.005 * abs(lp)
    assert binding >= 3


def test_lagrangian_counts_kinds_once_and_handles_pins_and_masks() -> None:
    """Identical tasks are one kind with a count; pins and allowed masks restrict the relaxed
    choice: the bound must stay below the brute-force optimum."""
    dem = np.array([[2.0], [2.0], [2.0], [2.0], [3.0], [1.0]])
    cap = np.array([[4.0], [5.0], [6.0]])
    cost = np.array([[1, 5, 9], [1, 5, 9], [1, 5, 9], [1, 5, 9], [2, 2, 8], [7, 1, 3]], float)
    allowed = np.ones((6, 3), bool)
    allowed[5, 1] = False
    p = PlacementProblem(dem, cap, cost=cost, allowed=allowed, pinned=[-1, -1, -1, -1, 2, -1])
    reps, counts, _kind = bounds.task_kinds(p)
    assert counts.sum() == 6
    assert reps.size == 3
    best, _ = brute_force(p)
    value, _ = bounds.lagrangian_bound(p, native.build(p), best, 1.0)
    free = 4 * 1.0 + 8.0 + 3.0  # each on its cheapest allowed worker (task 4 pinned to 2)
    assert free < value <= best + 1e-9


def test_lagrangian_is_deterministic_and_ignores_infinite_capacities() -> None:
    rng = np.random.default_rng(3)
    p = gap_problem(rng, 40, 5, 2)
    cap = p.capacity.copy()
    cap[:, 1] = np.inf
    q = PlacementProblem(p.demand, cap, cost=p.cost)
    a = bounds.lagrangian_bound(q, native.build(q), 1e4, 5.0)
    b = bounds.lagrangian_bound(q, native.build(q), 1e4, 5.0)
    assert a[0] == b[0]
    assert np.array_equal(a[1], b[1])
    assert (a[1][:, 1] == 0).all()  # no price on a capacity that cannot bind


# ----------------------------------------------------------------- network (shuffle-aware)


def job_problem(
    rng: np.random.Generator, par: int, W: int, *, work: bool, shape: str, integral: bool = False
) -> PlacementProblem:
    """A small job: a keyed pipeline (source -> map => window -> sink, => all-to-all) or an
    all-to-all between two operators, on workers in two racks (one or two zones)."""
    if shape == "keyed":
        ops_dem = np.array([[0.5, 1.0], [1.0, 2.0], [1.5, 4.0], [0.5, 1.0]])
        n_ops = 4
    else:
        ops_dem = np.array([[1.0, 2.0], [2.0, 6.0]])
        n_ops = 2
    op = np.repeat(np.arange(n_ops), par)
    i = np.arange(par)
    a, b = (x.ravel() for x in np.meshgrid(i, i, indexing="ij"))
    if shape == "keyed":
        src = np.concatenate([i, par + a, 2 * par + i])
        dst = np.concatenate([par + i, 2 * par + b, 3 * par + i])
        vol = np.concatenate(
            [np.full(par, 10.0), np.full(par * par, 10.0 / par), np.full(par, 10.0)]
        )
    else:
        src, dst, vol = a, par + b, np.full(par * par, 20.0 / par)
    vol = vol * rng.uniform(0.5, 1.5)
    cpu = rng.choice([2.0, 3.0, 4.0])
    cap = np.tile([cpu, 4.0 * cpu], (W, 1))
    if integral:  # CP-SAT proves optima only of integer models
        vol, ops_dem, cap = np.ceil(vol * 3), ops_dem * 2, cap * 2
    loc = np.column_stack([np.arange(W) // max(W // 2, 1) // 2, np.arange(W) // max(W // 2, 1)])
    kw: dict[str, Any] = {}
    if work:
        kw = {"work": rng.uniform(0.5, 2.0, n_ops)[op], "speed": rng.uniform(0.8, 1.2, W)}
    return PlacementProblem(
        ops_dem[op],
        cap,
        ["cpu", "memory"],
        traffic=(src, dst, vol),
        locations=loc,
        level_distance=[0.0, 1.0, 4.0, 10.0],
        **kw,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    shape=st.sampled_from(["keyed", "all2all"]),
    W=st.integers(3, 4),
    work=st.booleans(),
)
def test_network_and_total_bounds_never_above_brute_force(
    seed: int, shape: str, W: int, work: bool
) -> None:
    rng = np.random.default_rng(seed)
    par = 2 if shape == "keyed" else 3
    p = job_problem(rng, par, W, work=work, shape=shape)
    try:
        best, best_net = brute_force(p)
    except AssertionError:
        return
    nat = native.build(p)
    net, method = bounds.network_bound(p, nat)
    assert net <= best_net + 1e-9, method
    report = bounds.placement_bound(p, nat, 1.0)
    assert report.value <= best + 1e-9, report.method
    assert solve(p, "greedy").lower_bound <= best + 1e-9


@pytest.mark.parametrize("shape", ["keyed", "all2all"])
def test_shuffle_bound_against_cpsat_optimum(shape: str) -> None:
    """Job-shaped instances of 8-12 tasks on 6 workers in 2 zones x 2 racks: CP-SAT proves the
    optimum; the bound must be below it, and no weaker than the per-task knapsack bound."""
    rng = np.random.default_rng(11)
    solved = 0
    for _ in range(3):
        par = 3 if shape == "keyed" else 4
        p = job_problem(rng, par, 6, work=False, shape=shape, integral=True)
        nat = native.build(p)
        r = exact.cpsat(p, deadline=math.inf, gap_limit=0.0, seed=0, num_workers=1, hint=None)
        if r.assignment is None:
            continue
        assert r.proven_optimal
        optimum = sum(nat.evaluate(r.assignment))
        net, _ = bounds.network_bound(p, nat)
        assert net <= optimum + 1e-9
        assert net >= native.network_bound(nat) * (1 - 1e-6) - 1e-9
        solved += 1
    assert solved >= 2


def test_shuffle_bound_sees_a_shuffle_as_a_whole() -> None:
    """An all-to-all of 200 x 200 subtasks on 100 workers in zones of 20: the per-task bound
    lets every task keep its own best zone; the shuffle bound knows the zones are shared."""
    W, par = 100, 200
    i = np.arange(par)
    a, b = (x.ravel() for x in np.meshgrid(i, i, indexing="ij"))
    p = PlacementProblem(
        np.repeat([[1.0], [2.0]], par, axis=0),
        np.full((W, 1), 8.0),
        traffic=(a, par + b, np.full(par * par, 0.1)),
        locations=np.column_stack([np.arange(W) // 20, np.arange(W) // 5]),
        level_distance=[0.0, 1.0, 4.0, 10.0],
    )
    nat = native.build(p)
    net, method = bounds.network_bound(p, nat)
    assert method.startswith("shuffle")
    assert net > 1.3 * native.network_bound(nat)
    placed = solve(p, "local", time_limit=2.0)
    assert placed.bound_method.split("+")[-1].startswith("shuffle")
    assert placed.lower_bound <= placed.objective
    assert placed.gap < 0.15


def test_kinds_split_operators_with_equal_demand() -> None:
    """Colour refinement tells a source from a sink although both demand the same."""
    rng = np.random.default_rng(0)
    p = job_problem(rng, 4, 4, work=False, shape="keyed")
    kind = bounds._traffic_kinds(p, native.build(p))
    assert len(set(kind[:4].tolist())) == 1
    assert len(set(kind[12:].tolist())) == 1
    assert kind[0] != kind[12]
    assert np.unique(kind).size == 4


# ----------------------------------------------------------------- reduced costs guide search


def test_lagrangian_prices_guide_the_regret_construction() -> None:
    """On a Chu & Beasley type E instance (cost falls as weight rises, tight capacities) the
    regret construction by reduced cost (cost + the Lagrangian price of the capacity a task
    takes) beats the ones by cost and by weight; greedy returns the best of them."""
    rng = np.random.default_rng(5)
    m, n = 8, 80
    r = np.floor(1 - 10 * np.log(1.0 - rng.random((m, n))))
    c = np.floor(1000 / r - 10 * rng.random((m, n)))
    cap = np.full((m, m), np.inf)
    np.fill_diagonal(cap, np.floor(0.8 * r.sum(axis=1) / m))
    p = PlacementProblem(r.T.copy(), cap, cost=c.T.copy())
    nat = native.build(p)
    _, _, prices = bounds.compute_bound(p, nat, 1.0, None)
    assert prices is not None
    priced = nat._regret(False, prices)
    assert priced is not None
    plain = [nat._regret(w) for w in (False, True)]
    cost = sum(nat.evaluate(priced))
    assert all(a is None or cost < sum(nat.evaluate(a)) for a in plain)
    greedy = solve(p, "greedy")
    assert greedy.objective <= cost + 1e-9
    assert greedy.bound_method == "lagrangian"
    assert greedy.lower_bound <= greedy.objective
    assert solve(p, "greedy").objective == greedy.objective  # deterministic


def test_mixed_reduced_cost_regret_finishes_where_reduced_cost_gets_stuck() -> None:
    """A type D instance (cost falls as weight rises, capacity 80% of the average weight): the
    thorough construction (reduced cost, and its mixes with relative weight, which finish where
    reduced cost alone can run out of room) ends within 20% of the bound, far below the classic
    regret by weight."""
    rng = np.random.default_rng(0)
    m, n = 10, 100
    r = rng.integers(1, 101, (m, n)).astype(float)
    c = 111 - r + rng.integers(-10, 11, (m, n))
    cap = np.full((m, m), np.inf)
    np.fill_diagonal(cap, np.floor(0.8 * r.sum(axis=1) / m))
    p = PlacementProblem(r.T.copy(), cap, cost=c.T.copy())
    nat = native.build(p)
    bound, _, prices = bounds.compute_bound(p, nat, 1.0, None, lp_relaxation=False)
    assert prices is not None
    by_weight = nat._regret(True)
    assert by_weight is not None
    thorough = nat.regret_construct(prices, thorough=True)
    assert thorough is not None
    cost = sum(nat.evaluate(thorough))
    assert bound <= cost < 0.8 * sum(nat.evaluate(by_weight))
    assert cost < 1.2 * bound


def agent_problem(rng: np.random.Generator, T: int, W: int) -> PlacementProblem:
    """A GAP in the benchmark's encoding: agent w's capacity is resource w, finite on w only,
    and task t's demand of resource w is its weight on agent w."""
    r = rng.integers(1, 20, (W, T)).astype(float)
    c = rng.integers(1, 40, (W, T)).astype(float)
    cap = np.full((W, W), np.inf)
    np.fill_diagonal(cap, np.floor(0.8 * r.sum(axis=1) / W) + rng.integers(0, 6, W))
    return PlacementProblem(r.T.copy(), cap, cost=c.T.copy())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), T=st.integers(2, 7), W=st.integers(2, 3))
def test_knapsack_lagrangian_never_above_brute_force(seed: int, T: int, W: int) -> None:
    p = agent_problem(np.random.default_rng(seed), T, W)
    try:
        best, _ = brute_force(p)
    except AssertionError:
        return
    nat = native.build(p)
    _, lam = bounds.lagrangian_bound(p, nat, best, 1.0)
    assert bounds.knapsack_bound(p, lam, best, 5.0) <= best + 1e-9
    value, _, _ = bounds.compute_bound(p, nat, 5.0, best)
    assert value <= best + 1e-9


def test_knapsack_lagrangian_at_least_the_capacity_relaxation_and_below_cpsat() -> None:
    """Relaxing the assignment instead of the capacities gives knapsacks per agent, a bound at
    least the LP's (it starts from the prices the capacity relaxation implies); below the
    optimum CP-SAT proves."""
    rng = np.random.default_rng(2)
    for _ in range(4):
        p = agent_problem(rng, 24, 4)
        nat = native.build(p)
        r = exact.cpsat(p, deadline=math.inf, gap_limit=0.0, seed=0, num_workers=1, hint=None)
        assert r.proven_optimal
        assert r.assignment is not None
        optimum = sum(nat.evaluate(r.assignment))
        lr, lam = bounds.lagrangian_bound(p, nat, optimum, 5.0)
        kb = bounds.knapsack_bound(p, lam, optimum, 5.0)
        assert lr - 1e-6 <= kb <= optimum + 1e-9
    q = gap_problem(rng, 10, 3, 2)  # two finite capacities per worker: does not apply
    assert bounds.knapsack_bound(q, np.zeros((3, 2)), 100.0, 1.0) == -math.inf
