"""Placement of subtasks on workers: compute cost + network cost under every capacity.

``solve(problem, method=...)`` returns a :class:`Placement` with a proven lower bound beside the
objective, or raises :class:`InfeasibleError` saying why. Methods:

- ``greedy``: native construction (least incremental cost with a topology lookahead,
  multi-dimensional fit; a regret construction for small problems without traffic).
- ``local``: greedy, then native iterated local search (relocate and swap moves with
  incremental deltas over the traffic CSR, random kicks) within the time limit.
- ``cpsat``: exact CP-SAT model (network cost linearised per topology level), warm-started
  from ``local`` when the problem has traffic; without traffic CP-SAT stops early for a native
  polish (``local``, then each pair of workers re-split exactly); returns CP-SAT's proven
  bound.
- ``flow``: min-cost flow (Quincy), exact, for one slot-count resource and no traffic.
- ``auto``: flow where it applies, else CP-SAT when the model is small, else local search.

Every method returns the best lower bound it has (:mod:`._bounds`: CP-SAT's, the Lagrangian
bound of the compute cost, the shuffle-aware network bounds) and names it in
``Placement.bound_method``. The Lagrangian's prices also steer a regret construction.
- baselines as Flink places slots: ``first_fit``, ``least_utilisation``, ``balanced_tasks``,
  and :func:`flink_slot_sharing` (subtask i of every operator in one slot, slots spread by least
  utilisation).

:func:`fair_share` splits a cluster among jobs by Dominant Resource Fairness.
Measured figures: ``bench/bench_solver_results.md``.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _bounds as bounds
from . import _exact as exact
from . import _native as native
from ._problem import PlacementProblem
from ._result import InfeasibleError, Placement, check_necessary, verify
from ._steps import StepLog

__all__ = [
    "BASELINES",
    "METHODS",
    "fair_share",
    "flink_slot_sharing",
    "lower_bound",
    "solve",
]

Method = Literal[
    "auto", "greedy", "local", "cpsat", "flow", "first_fit", "least_utilisation", "balanced_tasks"
]
METHODS: tuple[str, ...] = ("auto", "greedy", "local", "cpsat", "flow")
BASELINES: dict[str, int] = {
    "first_fit": native.FIRST_FIT,
    "least_utilisation": native.LEAST_UTIL,
    "balanced_tasks": native.FEWEST_TASKS,
}

# auto uses CP-SAT below this many model variables
_CPSAT_MAX_VARS = 20_000
_CPSAT_HARD_MAX_VARS = 2_000_000
_FLOW_MAX_PAIRS = 4_000_000
_REGRET_MAX_PAIRS = 50_000
# Without traffic CP-SAT stops this share of its time early for the native polish: the
# iterated local search, then in the polish's last quarter the pair re-optimisation (it finds
# what relocate/swap moves cannot: OR-Library D 20x100 6,280 -> 6,253 in one run; given the
# first half instead it held the local search back, same-run A/B). The pair's budgets:
# branch-and-bound nodes, and its dynamic programme's table (cells; cells x tasks: 2**21
# updates take ~5 ms idle). A hint from the local search measured no better without traffic
# (worse on 5 workers: D 5x100 6,371 hinted against 6,361), so CP-SAT runs unhinted there.
_POLISH_SHARE = 0.1
_PAIR_SHARE = 0.25
_PAIR_NODES = 10_000
_PAIR_DP_CELLS = 2**18
_PAIR_DP_WORK = 2**21
_PAIR_MAX_RESOURCES = 128  # the native scratch's size (solver_pair.pyx)
_PAIR_MAX_WORKERS = 64  # ~2,000 pairs a sweep


def _finish(
    p: PlacementProblem,
    nat: native.Native,
    assign: NDArray[np.int32],
    lb: float,
    method: str,
    start: float,
    proven: bool = False,
    bound_method: str = "",
    log: StepLog | None = None,
) -> Placement:
    usage = verify(p, assign)
    cc, nc = nat.evaluate(assign)
    obj = cc + nc
    # a bound above the objective can only be rounding noise of a tight bound
    lb = min(lb, obj)
    tight = obj - lb <= 1e-9 * max(1.0, abs(obj))
    return Placement(
        assignment=assign.astype(np.int32, copy=True),
        objective=obj,
        compute_cost=cc,
        network_cost=nc,
        lower_bound=lb,
        status="optimal" if proven or tight else "feasible",
        method=method,
        wall_time=time.perf_counter() - start,
        usage=usage,
        resources=p.resources,
        bound_method=bound_method,
        steps=tuple(log.steps) if log is not None else (),
        time_limit=log.time_limit if log is not None else math.inf,
    )


# the bound of a fast method (greedy, baselines): fewer Lagrangian steps, no LP, within what
# is left of greedy's time limit (a baseline has none: its bound's phases all run)
_QUICK_BOUND_SECONDS = 0.05
# the share of `local`'s time its bound gets with traffic: there the bound's LPs earn their
# time (the proven gap is the claim) while the search rarely gains on the construction
# (keyed 10k x 1k: 240,607 -> 240,597 in 0.19 s; all-to-all 2k x 1k: nothing in 0.57 s)
_BOUND_SHARE_TRAFFIC = 0.8


def _bound(
    p: PlacementProblem,
    nat: native.Native,
    time_limit: float,
    assign: NDArray[np.int32] | None,
    quick: bool = False,
    lp_relaxation: bool = True,
    log: StepLog | None = None,
) -> bounds.BoundReport:
    """The best bound of :mod:`._bounds` whose phases fit in ``time_limit`` (or ``log``'s
    deadline); ``assign`` (a feasible placement, if any) gives the Lagrangian its upper bound."""
    upper = nat.evaluate(assign)[0] if assign is not None else None
    return bounds.placement_bound(
        p, nat, time_limit, upper, quick=quick, lp_relaxation=lp_relaxation, log=log
    )


def lower_bound(problem: PlacementProblem, time_limit: float = 1.0) -> float:
    """The best lower bound available without CP-SAT (see :mod:`pydispatch.solver._bounds`):
    compute part by the best of the capacity-free, Lagrangian and (small problems) LP bounds,
    network part by the knapsack and shuffle bounds per topology level."""
    nat = native.build(problem)
    return _bound(problem, nat, time_limit, None).value


def _construct(p: PlacementProblem, nat: native.Native, time_limit: float) -> NDArray[np.int32]:
    res = nat.construct()
    if (
        not p.has_traffic
        and p.anti_affinity is None
        and p.n_tasks * p.n_workers <= _REGRET_MAX_PAIRS
    ):
        prices = None
        # the dispatcher's 20 ms rounds get the classic regrets and one priced by a quick
        # Lagrangian; a solve of a second or more converged prices and the mixed variants
        thorough = time_limit >= 1.0
        if exact.flow_eligible(p) is not None:
            upper = nat.evaluate(res)[0] if isinstance(res, np.ndarray) else None
            prices = bounds.compute_bound(
                p, nat, 0.0, upper, quick=not thorough, lp_relaxation=False
            )[2]
        regret = nat.regret_construct(prices, thorough=thorough)
        if regret is not None and (
            not isinstance(res, np.ndarray) or sum(nat.evaluate(regret)) < sum(nat.evaluate(res))
        ):
            res = regret
    if isinstance(res, np.ndarray):
        return res
    if exact.model_size(p) <= _CPSAT_MAX_VARS * 5:
        # the heuristics got stuck: let CP-SAT decide feasibility
        r = exact.cpsat(
            p,
            deadline=time.perf_counter() + time_limit,
            gap_limit=1.0,
            seed=0,
            num_workers=1,
            hint=None,
        )
        if r.assignment is not None:
            return r.assignment
        if r.proven_infeasible:
            raise InfeasibleError(
                "no placement satisfies every capacity and constraint together "
                "(proven by CP-SAT; each task fits somewhere on its own)",
                proven=True,
            )
    raise InfeasibleError(
        f"no feasible placement found: task {res} fitted nowhere after the others were "
        "placed (greedy, best-fit and first-fit orders; infeasibility not proven)",
        proven=False,
        task=int(res),
    )


def solve(
    problem: PlacementProblem,
    method: Method = "auto",
    time_limit: float = 10.0,
    gap_limit: float = 1e-4,
    seed: int = 0,
    *,
    num_workers: int = 2,
    warm_start: bool | None = None,
) -> Placement:
    """Place every task; see the module docstring for the methods.

    ``time_limit`` bounds the search (seconds), ``gap_limit`` stops CP-SAT once the relative gap
    is that small, ``seed`` fixes every random choice, ``num_workers`` is CP-SAT's thread count,
    ``warm_start`` forces CP-SAT's hint from the local search on or off (default: on when the
    problem has traffic). The result
    depends on the seed alone when no phase hits the limit.
    """
    if not isinstance(problem, PlacementProblem):
        raise TypeError(f"problem must be a PlacementProblem, got {type(problem).__name__}")
    if method not in METHODS and method not in BASELINES:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS + tuple(BASELINES)}")
    if not time_limit > 0:
        raise ValueError(f"time_limit must be positive, got {time_limit}")
    start = time.perf_counter()
    deadline = start + time_limit
    log = StepLog(deadline, time_limit)
    p = problem
    check_necessary(p)
    nat = native.build(p)
    # the build walks the traffic graph once: what later passes over it will cost now
    log.graph_pass = time.perf_counter() - start
    log.done("build", start, f"{int(nat.adj_ptr[-1]):,} traffic entries")
    if method in BASELINES:
        return _baseline(p, nat, method, start, log)
    why_not_flow = exact.flow_eligible(p)
    if method == "flow" or (
        method == "auto" and why_not_flow is None and p.n_tasks * p.n_workers <= _FLOW_MAX_PAIRS
    ):
        if why_not_flow is not None:
            raise ValueError(why_not_flow)
        r = exact.flow(p)
        if r.assignment is None:
            raise InfeasibleError(
                "the workers do not have slots for every task (proven by max-flow)", proven=True
            )
        log.done("flow", start + log.graph_pass, "min-cost flow")
        return _finish(
            p, nat, r.assignment, r.lower_bound, "flow", start, r.proven_optimal, "flow", log
        )
    t0 = time.perf_counter()
    assign = _construct(p, nat, time_limit)
    t1 = time.perf_counter()
    cost = sum(nat.evaluate(assign))
    # _finish evaluates and verifies once more: keep that much time for it
    reserve = 2.0 * (time.perf_counter() - t1)
    log.done("construct", t0, f"cost {cost:.6g}")
    if method == "greedy":
        b = _bound(p, nat, _QUICK_BOUND_SECONDS, assign, quick=True, log=log)
        return _finish(p, nat, assign, b.value, "greedy", start, bound_method=b.method, log=log)
    size = exact.model_size(p)
    if method == "cpsat" and size > _CPSAT_HARD_MAX_VARS:
        raise ValueError(
            f"cpsat: the model would have about {size:,} variables (limit "
            f"{_CPSAT_HARD_MAX_VARS:,}); use method='local' or 'auto' for a problem this size"
        )
    use_cpsat = method == "cpsat" or (method == "auto" and size <= _CPSAT_MAX_VARS)
    if not use_cpsat:
        # the bound first, so that the search gets what is left and time_limit holds overall
        # with traffic the bound's LPs earn their time (the proven gap is the claim), while the
        # local search rarely gains much on a good construction
        share = _BOUND_SHARE_TRAFFIC if p.has_traffic else 0.2
        left = deadline - time.perf_counter() - reserve
        b = _bound(p, nat, 0.0, assign, log=log.until(min(2.0, share * left)))
        nat.kernel.set_assignment(assign)
        left = deadline - time.perf_counter() - reserve
        if left > 0:
            t0 = time.perf_counter()
            nat.improve(left, seed)
            found = nat.kernel.assignment
            log.done("local-search", t0, f"cost {cost:.6g} -> {sum(nat.evaluate(found)):.6g}")
        else:
            log.skip("local-search", "no time left")
        return _finish(
            p, nat, nat.kernel.assignment, b.value, method, start, bound_method=b.method, log=log
        )
    warm = p.has_traffic if warm_start is None else warm_start
    return _solve_cpsat(p, nat, assign, start, log, gap_limit, seed, num_workers, warm)


def _solve_cpsat(
    p: PlacementProblem,
    nat: native.Native,
    assign: NDArray[np.int32],
    start: float,
    log: StepLog,
    gap_limit: float,
    seed: int,
    num_workers: int,
    warm: bool,
) -> Placement:
    """CP-SAT plus the native search, in the order that measured better.

    warm: CP-SAT is hinted with the local search's result (with traffic the iterated local
    search first gets 20% of the time). Without traffic (GAP-like; unhinted by default) CP-SAT
    stops 10% early and the native polish runs the iterated local search from the better of
    CP-SAT's best and the local search's, then re-splits each pair of workers exactly."""
    deadline = log.deadline
    t0 = time.perf_counter()
    nat.kernel.set_assignment(assign)
    nat.kernel.local_search(max(deadline - time.perf_counter(), 0.0), seed, 1_000_000)
    if warm and p.has_traffic:
        nat.improve(0.2 * max(deadline - time.perf_counter(), 0.0), seed)
    assign = nat.kernel.assignment
    log.done("local-search", t0, f"cost {sum(nat.evaluate(assign)):.6g}")
    budget = deadline - time.perf_counter()
    t0 = time.perf_counter()
    r = exact.cpsat(
        p,
        deadline=deadline - (0.0 if warm and p.has_traffic else _POLISH_SHARE * budget),
        gap_limit=gap_limit,
        seed=seed,
        num_workers=num_workers,
        hint=assign if warm else None,
    )
    cp_cost = sum(nat.evaluate(r.assignment)) if r.assignment is not None else math.inf
    outcome = "optimal" if r.proven_optimal else "proven infeasible" if r.proven_infeasible else ""
    log.done("cpsat", t0, f"{outcome or 'feasible'} cost {cp_cost:.6g}, bound {r.lower_bound:.6g}")
    lb, bound_method = r.lower_bound, "cpsat"
    if not r.proven_optimal:
        # the dispatcher's rounds end here when CP-SAT proved its answer: no time for more.
        # No LP relaxation of the compute part: the Lagrangian is within a hair of it at a
        # fraction of its time. With traffic the network LPs prove a gap worth the name
        budget = min(0.5, max(0.1 * (deadline - start), 0.005))
        b = _bound(p, nat, budget, assign, lp_relaxation=False, log=log.until(budget))
        if b.value > lb:
            lb, bound_method = b.value, b.method
    best = assign
    proven = False
    if r.assignment is not None and sum(nat.evaluate(r.assignment)) <= sum(nat.evaluate(assign)):
        best, proven = r.assignment, r.proven_optimal
    obj = sum(nat.evaluate(best))
    closed = obj - lb <= gap_limit * max(abs(obj), 1e-12)
    if not proven and not closed and deadline > time.perf_counter():
        t0 = time.perf_counter()
        nat.kernel.set_assignment(best)
        pairs = _pairs_apply(p)
        # CP-SAT cannot resume: the polish may as well use every second that is left
        ils_end = deadline - (_PAIR_SHARE * (deadline - t0) if pairs else 0.0)
        nat.improve(ils_end - time.perf_counter(), seed, use_all_time=True)
        if pairs:
            t1 = time.perf_counter()
            improved = nat.kernel.pair_descent(
                deadline - t1, seed, _PAIR_NODES, _PAIR_DP_CELLS, _PAIR_DP_WORK
            )[0]
            pair_cost = sum(nat.evaluate(nat.kernel.assignment))
            log.done("pairs", t1, f"{improved} pairs improved, cost {pair_cost:.6g}")
        polished = nat.kernel.assignment
        if sum(nat.evaluate(polished)) < sum(nat.evaluate(best)):
            best = polished
        log.done("polish", t0, f"cost {sum(nat.evaluate(best)):.6g}")
    return _finish(p, nat, best, lb, "cpsat", start, proven, bound_method, log)


def _pairs_apply(p: PlacementProblem) -> bool:
    """Whether the pair re-optimisation fits p: compute cost only (its deltas ignore traffic
    and anti-affinity), its scratch's resource count, and few enough pairs to sweep."""
    return (
        not p.has_traffic
        and p.anti_affinity is None
        and p.n_resources <= _PAIR_MAX_RESOURCES
        and p.n_workers <= _PAIR_MAX_WORKERS
    )


def _baseline(
    p: PlacementProblem, nat: native.Native, method: str, start: float, log: StepLog
) -> Placement:
    order = np.arange(p.n_tasks, dtype=np.int64)
    nat.kernel.clear()
    nat.kernel.place_pinned()
    stuck = nat.kernel.greedy(order, BASELINES[method])
    if stuck >= 0:
        raise InfeasibleError(
            f"{method}: task {stuck} fitted nowhere after the tasks before it were placed "
            "(a baseline does not backtrack; infeasibility not proven)",
            proven=False,
            task=int(stuck),
        )
    assign = nat.kernel.assignment
    log.done(method, start + log.graph_pass)
    b = _bound(p, nat, _QUICK_BOUND_SECONDS, assign, quick=True, log=log)
    return _finish(p, nat, assign, b.value, method, start, bound_method=b.method, log=log)


def flink_slot_sharing(problem: PlacementProblem, slot_group: ArrayLike) -> Placement:
    """Flink's default for a pipeline: the tasks of one slot-sharing group (subtask i of every
    operator) share one slot, which must hold their summed demand, and slots go to the worker
    of least utilisation. Affinity and pinning are not modelled (as in Flink's default)."""
    start = time.perf_counter()
    p = problem
    grp = np.asarray(slot_group)
    if grp.dtype == bool or not np.issubdtype(grp.dtype, np.integer):
        raise TypeError(f"slot_group must be an integer array, got dtype {grp.dtype}")
    if grp.shape != (p.n_tasks,) or (grp < 0).any():
        raise ValueError(f"slot_group needs one group id >= 0 per task ({p.n_tasks})")
    ids, inv = np.unique(grp, return_inverse=True)
    inv = inv.reshape(-1)
    slot_demand = np.zeros((ids.size, p.n_resources))
    np.add.at(slot_demand, inv, p.demand)
    slots = PlacementProblem(slot_demand, p.capacity, p.resources)
    snat = native.build(slots)
    stuck = snat.kernel.greedy(np.arange(ids.size, dtype=np.int64), native.LEAST_UTIL)
    if stuck >= 0:
        raise InfeasibleError(
            f"flink_slot_sharing: slot {int(ids[stuck])} (its tasks' summed demand) fits on "
            "no worker",
            proven=False,
        )
    assign = snat.kernel.assignment[inv].astype(np.int32)
    nat = native.build(p)
    b = _bound(p, nat, _QUICK_BOUND_SECONDS, assign, quick=True, log=StepLog())
    return _finish(p, nat, assign, b.value, "flink_slot_sharing", start, bound_method=b.method)


def fair_share(
    job_demands: ArrayLike,
    capacity: ArrayLike,
    weights: ArrayLike | None = None,
    max_tasks: ArrayLike | None = None,
) -> NDArray[np.int64]:
    """How many tasks of each job to admit now, by Dominant Resource Fairness (progressive
    filling): repeatedly admit one task of the job with the least weighted dominant share
    whose next task still fits, until no job can grow.

    ``job_demands`` (jobs x resources) is one task's demand per job, ``capacity`` (resources)
    the cluster's free total, ``weights`` (jobs, > 0) scale the shares, ``max_tasks`` (jobs)
    caps each job at its pending tasks.
    """
    D = np.asarray(job_demands, dtype=np.float64)
    C = np.asarray(capacity, dtype=np.float64)
    if D.ndim != 2:
        raise ValueError(f"job_demands must be 2-D (jobs x resources), got shape {D.shape}")
    if C.shape != (D.shape[1],):
        raise ValueError(f"capacity must have one value per resource ({D.shape[1]})")
    if np.isnan(D).any() or np.isnan(C).any() or (D < 0).any() or (C < 0).any():
        raise ValueError("job_demands and capacity must be non-negative numbers")
    J = D.shape[0]
    w = np.ones(J) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (J,) or not (w > 0).all():
        raise ValueError("weights must be positive, one per job")
    cap_n = np.full(J, np.iinfo(np.int64).max) if max_tasks is None else np.asarray(max_tasks)
    if cap_n.shape != (J,) or (cap_n < 0).any():
        raise ValueError("max_tasks must be non-negative, one per job")
    share = np.divide(D, C, out=np.zeros_like(D), where=C > 0)
    share[(C == 0)[None, :] & (D > 0)] = np.inf
    dom = share.max(axis=1)
    if max_tasks is None and ((D == 0).all(axis=1)).any():
        raise ValueError("a job demanding nothing needs max_tasks (it would be unbounded)")
    admitted = np.zeros(J, np.int64)
    free = C.copy()
    heap = [(0.0, j) for j in range(J) if cap_n[j] > 0 and math.isfinite(dom[j])]
    heapq.heapify(heap)
    while heap:
        _, j = heapq.heappop(heap)
        if (D[j] > free + 1e-12 * np.maximum(C, 1.0)).any():
            continue  # this job is saturated; the others may still grow
        free -= D[j]
        admitted[j] += 1
        if admitted[j] < cap_n[j]:
            heapq.heappush(heap, (admitted[j] * dom[j] / w[j], j))
    return admitted
