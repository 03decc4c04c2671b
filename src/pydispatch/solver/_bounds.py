"""Lower bounds of a placement's cost, each valid on its own (never above the optimum).

The objective is compute cost + network cost, and ``min(a + b) >= min a + min b``, so the two
parts are bounded apart and the best bound of each part is kept:

- compute: the capacity-free bound (each task on its cheapest allowed worker); the Lagrangian
  bound with every finite capacity relaxed (native, ``solver_bound.pyx``: subgradient with
  Polyak steps, tasks of one kind counted once); on GAP-shaped problems the Lagrangian with the
  assignments relaxed instead (an exact knapsack per worker); the LP relaxation (GLOP) on small
  problems.
- network: cost = V dfar - sum over levels of saving[l] x (volume whose ends share level l), so
  an upper bound on each level's shared volume is a lower bound on the cost. Two bounds per level
  are computed and the smaller shared volume is kept (then made monotone: a finer level never
  shares more than a coarser one):
  - ``knapsack`` (``_native.network_bound``): per task, its neighbours that fit beside it;
  - ``shuffle``: per pair of task kinds (an operator pair of a job: colour refinement of the
    traffic graph), the volume that can share a group of the level given how many of each kind
    fit in one group, over all groups at once (:func:`_pair_share`);
  - ``shuffle-lp``: all pairs at once, one GLOP LP per level (:mod:`._network_lp`), so that a
    shuffle and its forward-connected neighbours compete for the same capacity.

:class:`BoundReport` carries the value and which bound it is (``Placement.bound_method``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

import pydispatch._core as _core

from . import _exact as exact
from . import _native as native
from . import _network_lp as lp
from ._problem import PlacementProblem
from ._result import SolveStep
from ._steps import StepLog

__all__ = [
    "BoundReport",
    "compute_bound",
    "knapsack_applies",
    "knapsack_bound",
    "lagrangian_bound",
    "network_bound",
    "placement_bound",
    "task_kinds",
]

F64 = NDArray[np.float64]

_LP_MAX_PAIRS = 20_000  # GLOP's bound below this many task x worker pairs
_KNAPSACK_MAX_PAIRS = 50_000  # the knapsack Lagrangian: task x worker pairs, DP cells per step
_KNAPSACK_MAX_CELLS = 2_000_000
_ITERATIONS = 400  # subgradient steps of the Lagrangian bound (quick: for greedy, baselines)
_QUICK_ITERATIONS = 200
_LAGRANGIAN_SAFETY = 1.0  # seconds: the iteration count, not the clock, ends it normally
_LAGRANGIAN_WORK = 100_000_000  # (kind, worker) visits over all its iterations at most
_QUICK_LAGRANGIAN_WORK = 5_000_000  # ... in a quick bound (a few milliseconds)
_MAX_KINDS = 2_000  # the shuffle bound gives up on traffic graphs with more kinds of tasks...
_MAX_PAIRS = 400  # ...or more communicating pairs of kinds (it would cost more than it says)
_KNAPSACK_KINDS = 64  # with fewer kinds the pair bounds rarely leave the knapsack anything
_LP_FIRST_ESTIMATE = 0.05  # seconds a level's LP takes (build + GLOP) before one was timed
_LP_IMPORT_ESTIMATE = 0.15  # ... plus OR-Tools' linear solver's import on first use
_KINDS_PASSES = 1.2  # the refined kind graph costs about this many CSR builds (0.3-1.2)
_PAIR_SECONDS = 0.003  # one pair bound on one level (a zooming grid of 289 multipliers x 5)
_COMPUTE_LP_ESTIMATE = 0.05  # GLOP's compute LP on a small problem: build at least
_GRID = 17  # multipliers per axis per zoom round of the pair bound's dual
_ZOOMS = 5


@dataclass(frozen=True)
class BoundReport:
    """A lower bound and where it comes from: ``method`` names the compute part's bound and,
    after a ``+``, the network part's (e.g. ``lagrangian+shuffle``)."""

    value: float
    method: str
    compute: float
    network: float
    multipliers: F64 | None = None  # the Lagrangian prices (workers x resources), if computed


def task_kinds(
    p: PlacementProblem, *, with_cost: bool = True
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
    """Tasks that no bound can tell apart: equal demand, allowed workers, pin and (with
    ``with_cost``) compute cost. (one representative per kind, its count, each task's kind)."""
    cols: list[NDArray[np.float64]] = [p.demand, p.task_class[:, None].astype(np.float64)]
    if p.pinned is not None:
        cols.append(p.pinned[:, None].astype(np.float64))
    if with_cost:
        if p.cost is not None:
            cols.append(p.cost)
        elif p.work is not None:
            cols.append(p.work[:, None])
    rows = np.ascontiguousarray(np.column_stack(cols))
    _, first, inv, counts = np.unique(
        rows, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    return first.astype(np.int64), counts.astype(np.float64), inv.reshape(-1).astype(np.int64)


def _integral_objective(p: PlacementProblem) -> bool:
    """Every placement's objective is an integer (so a bound may be rounded up)."""
    if p.has_traffic:
        return False
    cost = p.cost if p.cost is not None else (None if p.work is not None else np.zeros(1))
    return cost is not None and bool(np.all(cost == np.round(cost)))


def lagrangian_bound(
    p: PlacementProblem,
    nat: native.Native,
    upper: float,
    time_limit: float,
    iterations: int = 400,
) -> tuple[float, F64]:
    """The Lagrangian bound of the compute cost (capacities relaxed) and its multipliers.
    ``upper`` is any upper bound of the compute optimum (it sets Polyak's step length)."""
    reps, counts, _ = task_kinds(p)
    # one step costs a pass over every (kind, worker) pair: cap the total work, so that a bound
    # over 100,000 distinct tasks on 10,000 workers stays a fraction of a second
    per_step = reps.size * (p.n_workers + int(nat.n_finite))
    work = _QUICK_LAGRANGIAN_WORK if iterations <= _QUICK_ITERATIONS else _LAGRANGIAN_WORK
    iterations = min(iterations, work // max(per_step, 1))
    if iterations < 1:
        return -math.inf, np.zeros((p.n_workers, max(p.n_resources, 1)))
    val, lam, _, _ = nat.kernel.lagrangian_bound(
        reps, counts, float(upper), int(iterations), max(time_limit, 0.0)
    )
    # float sums over many terms: shave the last digits so that the bound stays a bound
    return float(val) - 1e-9 * max(1.0, abs(float(val))), np.asarray(lam)


def knapsack_applies(p: PlacementProblem) -> bool:
    """Whether :func:`knapsack_bound` may apply (size and one finite capacity per worker)."""
    finite = np.isfinite(p.capacity) & (p.demand.max(axis=0, initial=0.0) > 0)[None, :]
    return p.n_tasks * p.n_workers <= _KNAPSACK_MAX_PAIRS and not (finite.sum(axis=1) > 1).any()


def knapsack_bound(
    p: PlacementProblem, lam: F64, upper: float, time_limit: float, iterations: int = 150
) -> float:
    """The stronger Lagrangian bound of a generalised assignment: the assignment constraints
    relaxed, one exact 0-1 knapsack per worker (``solver_bound.sol_knapsack_lagrangian``),
    started from the prices the capacity relaxation's multipliers ``lam`` imply (there it is
    already at least the LP bound). Only for integer demands and capacities with at most one
    finite capacity per worker (GAP); -inf where it does not apply."""
    T, W = p.n_tasks, p.n_workers
    finite = np.isfinite(p.capacity) & (p.demand.max(axis=0, initial=0.0) > 0)[None, :]
    if not knapsack_applies(p):
        return -math.inf
    res = np.where(finite.any(axis=1), finite.argmax(axis=1), -1)
    weight = np.zeros((T, W), np.int64)
    cap = np.full(W, -1, np.int64)
    for w in np.flatnonzero(res >= 0).tolist():
        col, c = p.demand[:, res[w]], float(p.capacity[w, res[w]])
        if not (np.all(col == np.round(col)) and c == math.floor(c)):
            return -math.inf
        weight[:, w] = col.astype(np.int64)
        cap[w] = int(c)
    if cap.max(initial=0) * T > _KNAPSACK_MAX_CELLS:
        return -math.inf
    allowed = p.allowed_matrix()
    cost = np.ascontiguousarray(p.compute_cost_matrix(), dtype=np.float64)
    reduced = cost + p.demand @ lam[:, : p.n_resources].T
    u = np.where(allowed, reduced, np.inf).min(axis=1)
    val, _ = _core.sol_knapsack_lagrangian(
        cost, weight, cap, allowed.astype(np.uint8), u, float(upper), iterations, time_limit
    )
    return float(val) - 1e-9 * max(1.0, abs(float(val)))


def compute_bound(
    p: PlacementProblem,
    nat: native.Native,
    time_limit: float,
    upper: float | None = None,
    *,
    quick: bool = False,
    lp_relaxation: bool = True,
    log: StepLog | None = None,
) -> tuple[float, str, F64 | None]:
    """The best bound of the compute cost: (value, method, Lagrangian multipliers or None).
    The Lagrangian runs a fixed number of iterations (fewer when ``quick``; ``time_limit`` is
    only its safety net), so that the bound is a function of the problem alone; the LP is
    skipped when ``quick`` or not ``lp_relaxation``. ``log`` (default: one ending
    ``time_limit`` from now) holds the deadline and records each step."""
    log = log if log is not None else StepLog.within(time_limit)
    t0 = time.perf_counter()
    free = float(nat.kernel.min_cost().sum())
    best, method, lam = free, "capacity-free", None
    if _has_compute_cost(p) and _capacity_binds(p):
        ub = upper if upper is not None and math.isfinite(upper) else free * 1.5 + 1.0
        iters = _QUICK_ITERATIONS if quick else _ITERATIONS
        # a fixed iteration count (ms): always run, so the bound is a function of the problem
        val, lam = lagrangian_bound(p, nat, ub, max(time_limit, _LAGRANGIAN_SAFETY), iters)
        if val > best:
            best, method = val, "lagrangian"
        log.done("bound:lagrangian", t0, f"{val:.6g}")
        applies = knapsack_applies(p)
        if not quick and math.isfinite(val) and applies and log.affords("bound:knapsack", 0.0):
            # iteration-bounded like the other, but within the caller's time: it is the slow one
            t0 = time.perf_counter()
            kb = knapsack_bound(p, lam, ub, log.left())
            if kb > best:
                best, method = kb, "lagrangian-knapsack"
            log.done("bound:knapsack", t0, f"{kb:.6g}")
        small = p.n_tasks * p.n_workers <= _LP_MAX_PAIRS
        if (
            lp_relaxation
            and not quick
            and small
            and log.affords("bound:compute-lp", _COMPUTE_LP_ESTIMATE)
        ):
            t0 = time.perf_counter()
            lp = exact.lp_bound(p, log.left())
            if lp > best + 1e-9 * max(1.0, abs(best)):
                best, method = lp, "lp"
            log.done("bound:compute-lp", t0, f"{lp:.6g}")
    else:
        log.done("bound:compute", t0, f"capacity-free {free:.6g}")
    if _integral_objective(p):
        best = math.ceil(best - 1e-6)
    return best, method, lam


def _has_compute_cost(p: PlacementProblem) -> bool:
    return p.cost is not None or p.work is not None


def _capacity_binds(p: PlacementProblem) -> bool:
    return bool((np.isfinite(p.capacity) & (p.demand.max(axis=0) > 0)[None, :]).any())


# ------------------------------------------------------------------------------ network


@dataclass
class _Levels:
    """Per level of sharing (0: the worker, then the topology levels fine -> coarse): the most
    of each resource (and of tasks, last column) one group holds, how many groups there are,
    and what sharing the level saves per unit of volume."""

    capacity: F64  # (levels, R + 1)
    groups: NDArray[np.int64]  # (levels,)
    saving: F64  # (levels,)
    dfar: float


def _levels(p: PlacementProblem) -> _Levels:
    k = native.max_tasks_per_worker(p).astype(np.float64)
    L = p.level_groups.shape[1]
    ld = p.level_distance
    per_worker = np.column_stack([p.capacity, k])
    rows = [per_worker.max(axis=0)]
    groups = [p.n_workers]
    for lv in range(L - 1, -1, -1):
        g = p.level_groups[:, lv]
        n = int(g.max()) + 1
        sums = np.zeros((n, p.n_resources + 1))
        np.add.at(sums, g, per_worker)
        rows.append(sums.max(axis=0))
        groups.append(n)
    cap = np.array(rows)
    cap[:, -1] = np.minimum(cap[:, -1], p.n_tasks)
    saving = np.array(
        [ld[1] - ld[0]] + [ld[L + 1 - lv] - ld[L - lv] for lv in range(L - 1, -1, -1)]
    )
    return _Levels(cap, np.array(groups, np.int64), saving, float(ld[L + 1]))


def _traffic_kinds(p: PlacementProblem, nat: native.Native, rounds: int = 3) -> NDArray[np.int64]:
    """Colour refinement of the traffic graph from (demand, allowed class): two tasks keep one
    kind while their neighbours' kinds and volumes agree (a job's operators, told apart even
    when their demands are equal, e.g. a source and a sink)."""
    base = np.column_stack([p.demand, p.task_class[:, None].astype(np.float64)])
    _, color = np.unique(base, axis=0, return_inverse=True)
    color = color.reshape(-1).astype(np.int64)
    n = int(color.max()) + 1
    for _ in range(rounds):
        sig = _core.sol_neighbour_signature(nat.adj_ptr, nat.adj_nbr, nat.adj_vol, color)
        # one 64-bit key per task (a collision only merges two kinds: the bound stays valid)
        key = sig ^ (color.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        _, new = np.unique(key, return_inverse=True)
        color = new.reshape(-1).astype(np.int64)
        m = int(color.max()) + 1
        if m == n or m > _MAX_KINDS:
            break
        n = m
    return color


def _polygon(A: F64, c: F64, box: tuple[float, float]) -> F64:
    """Vertices (in order) of {0 <= x <= box, A x <= c} in 2-D (Sutherland-Hodgman clipping
    of the box; A >= 0, so the result is a down-closed convex polygon holding the origin)."""
    pts = [(0.0, 0.0), (box[0], 0.0), (box[0], box[1]), (0.0, box[1])]
    for (a1, a2), rhs in zip(A, c, strict=True):
        out: list[tuple[float, float]] = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            fc = a1 * cur[0] + a2 * cur[1] - rhs
            fp = a1 * prev[0] + a2 * prev[1] - rhs
            if (fc <= 0) != (fp <= 0):
                s = fp / (fp - fc)
                out.append((prev[0] + s * (cur[0] - prev[0]), prev[1] + s * (cur[1] - prev[1])))
            if fc <= 0:
                out.append(cur)
        pts = out
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


def _pair_share(
    poly: F64,
    n_groups: int,
    count: tuple[float, float],
    alpha: float,
    beta: float,
    gamma: float,
) -> float:
    """An upper bound on the volume between kinds a and b that can share groups of one level.

    In a group holding x_a a-tasks and x_b b-tasks the shared a-b volume is at most
    f(x) = min(alpha x_a, beta x_b, gamma x_a x_b) (alpha: the most volume one a-task has with
    b-tasks, beta the converse, gamma the heaviest edge), and x lies in the group's polygon P
    (capacities; a relaxation in which every group is the largest one). Summed over the G groups
    with sum_g x_g = N, weak duality gives, for every multiplier mu,
        shared <= G max(0, max_{x in P} f(x) - mu.x) + mu.N,
    and since f(s x) <= s f(x) for s in [0, 1] the inner max may be taken over P's boundary,
    edge by edge, where f - mu.x is concave (edges of a down-closed polygon do not rise): its max
    is at an end, where the active piece of the min changes, or where the bilinear piece is
    stationary, all in closed form. The multipliers are searched on a zooming grid; every
    point's value is a valid bound, the least is returned."""
    na, nb = count
    ea = np.roll(poly, -1, axis=0) - poly  # edge directions
    fixed_t: list[F64] = []
    for p0, d in zip(poly, ea, strict=True):
        ts = [0.0, 1.0]
        # where the pieces of the min cross (all linear in t along an edge)
        if gamma > 0 and d[1] != 0:
            ts.append((alpha / gamma - p0[1]) / d[1])
        if gamma > 0 and d[0] != 0:
            ts.append((beta / gamma - p0[0]) / d[0])
        den = alpha * d[0] - beta * d[1]
        if den != 0:
            ts.append((beta * p0[1] - alpha * p0[0]) / den)
        fixed_t.append(np.clip(np.array(ts), 0.0, 1.0))

    def f(q: F64) -> F64:
        return np.minimum(
            np.minimum(alpha * q[..., 0], beta * q[..., 1]), gamma * q[..., 0] * q[..., 1]
        )

    fixed_q = [p0 + t[:, None] * d for p0, d, t in zip(poly, ea, fixed_t, strict=True)]
    fixed_f = [f(q) for q in fixed_q]
    cand_q = np.concatenate(fixed_q)  # (C, 2)
    cand_f = np.concatenate(fixed_f)  # (C,)
    concave = [(p0, d) for p0, d in zip(poly, ea, strict=True) if d[0] * d[1] < 0 and gamma > 0]

    def phi(mu: F64) -> F64:  # mu (M, 2) -> bound per mu
        inner = (cand_f[None, :] - mu @ cand_q.T).max(axis=1)
        for p0, d in concave:
            # d/dt [gamma qa qb - mu.q] = 0 on the edge q = p0 + t d
            t = (mu @ d - gamma * (p0[0] * d[1] + p0[1] * d[0])) / (2.0 * gamma * d[0] * d[1])
            q = p0[None, :] + np.clip(t, 0.0, 1.0)[:, None] * d[None, :]
            inner = np.maximum(inner, f(q) - (mu * q).sum(axis=1))
        out: F64 = n_groups * np.maximum(inner, 0.0) + mu @ np.array([na, nb])
        return out

    lo = np.array([0.0, 0.0])
    hi = np.array([alpha, beta])
    best = min(alpha * na, beta * nb)  # mu = (alpha, 0) and (0, beta): the trivial bounds
    for _ in range(_ZOOMS):
        ga = np.linspace(lo[0], hi[0], _GRID)
        gb = np.linspace(lo[1], hi[1], _GRID)
        mu = np.stack(np.meshgrid(ga, gb, indexing="ij"), axis=-1).reshape(-1, 2)
        val = phi(mu)
        i = int(np.argmin(val))
        best = min(best, float(val[i]))
        half = (hi - lo) / (_GRID - 1) * 2.0
        lo = np.maximum(mu[i] - half, 0.0)
        hi = mu[i] + half
    return best


def _self_share(kmax: float, n: float, alpha: float, gamma: float) -> float:
    """The same bound for edges inside one kind: f(x) = min(alpha x, gamma x (x - 1)) / 2
    satisfies f(s x) <= s f(x), so sum_g f(x_g) <= N f(K) / K with K the most tasks of the
    kind one group holds (an integer)."""
    k = math.floor(min(kmax, n) + 1e-9)
    if k <= 1:
        return 0.0
    return n * min(alpha, gamma * (k - 1)) / 2.0


def _kind_graph(p: PlacementProblem, nat: native.Native, rounds: int = 3) -> lp.KindGraph | None:
    """The traffic graph over kinds of tasks (None: too many kinds or pairs to be worth it);
    ``rounds`` of colour refinement (0: kinds by demand and allowed workers alone)."""
    kind = _traffic_kinds(p, nat, rounds)
    K = int(kind.max()) + 1
    if K > _MAX_KINDS:
        return None
    total, most, heaviest = (
        x.reshape(K, K)
        for x in _core.sol_kind_traffic(nat.adj_ptr, nat.adj_nbr, nat.adj_vol, kind, K)
    )
    pairs = [(int(a), int(b)) for a, b in zip(*np.nonzero(np.triu(total > 0)), strict=True)]
    if len(pairs) > _MAX_PAIRS:
        return None
    dmin = np.full((K, p.n_resources), np.inf)
    np.minimum.at(dmin, kind, p.demand)
    return lp.KindGraph(
        count=np.bincount(kind, minlength=K).astype(np.float64),
        dmin=dmin,
        pairs=pairs,
        # a pair inside one kind sees each of its edges from both ends
        volume=np.array([total[a, b] / (2.0 if a == b else 1.0) for a, b in pairs]),
        alpha=np.array([most[a, b] for a, b in pairs]),
        beta=np.array([most[b, a] for a, b in pairs]),
        gamma=np.array([heaviest[a, b] for a, b in pairs]),
    )


def _pair_shares(p: PlacementProblem, g: lp.KindGraph, lev: _Levels) -> F64:
    """(levels, pairs): an upper bound on each pair's volume sharing each level, alone."""
    R = p.n_resources
    out = np.zeros((lev.groups.size, len(g.pairs)))
    for i in range(lev.groups.size):
        capl = lev.capacity[i]
        for c, (a, b) in enumerate(g.pairs):
            if a == b:
                kmax = capl[R]
                for r in range(R):
                    if np.isfinite(capl[r]) and g.dmin[a, r] > 0:
                        kmax = min(kmax, capl[r] / g.dmin[a, r])
                s = _self_share(kmax, g.count[a], float(g.alpha[c]), float(g.gamma[c]))
            else:
                rows, rhs = [], []
                for r in range(R):
                    if np.isfinite(capl[r]) and (g.dmin[a, r] > 0 or g.dmin[b, r] > 0):
                        rows.append((g.dmin[a, r], g.dmin[b, r]))
                        rhs.append(capl[r])
                rows.append((1.0, 1.0))
                rhs.append(capl[R])
                poly = _polygon(np.array(rows), np.array(rhs), (g.count[a], g.count[b]))
                s = _pair_share(
                    poly,
                    int(lev.groups[i]),
                    (g.count[a], g.count[b]),
                    float(g.alpha[c]),
                    float(g.beta[c]),
                    float(g.gamma[c]),
                )
            out[i, c] = min(s, float(g.volume[c]))
    return out


def _level_name(p: PlacementProblem, i: int) -> str:
    """Index i of :class:`_Levels` (0: the worker, then fine -> coarse) as a step's name."""
    return "worker" if i == 0 else f"level{p.level_groups.shape[1] - i}"


def network_bound(
    p: PlacementProblem,
    nat: native.Native,
    time_limit: float = 1.0,
    *,
    use_lp: bool = True,
    log: StepLog | None = None,
) -> tuple[float, str]:
    """The best lower bound of the network cost: (value, "knapsack", "shuffle", or
    "shuffle-lp" when the joint LP of :mod:`._network_lp` improved a level).

    Each phase runs only if its expected cost fits in what is left of ``log``'s deadline
    (default: ``time_limit`` from now) and is recorded there, run or skipped: the kind graph
    (about 1.5 passes over the traffic graph, timed by the CSR build), the pair bounds, then
    one LP per level, coarse levels first (where the joint view gains most), each given the
    time left and estimated from the one before; a level without its LP keeps the pair bound.
    Left without any, the network part falls back to the per-task knapsack or, with no time
    for that either, to 0 (always valid)."""
    log = log if log is not None else StepLog.within(time_limit)
    if not p.has_traffic:
        return 0.0, ""
    t0 = time.perf_counter()
    if p.distance is not None:
        value = native.network_bound(nat)
        log.done("bound:network", t0, f"knapsack {value:.6g}")
        return value, "knapsack"
    lev = _levels(p)
    V = float(nat.adj_vol.sum()) / 2.0 if nat.adj_ptr[-1] > 0 else 0.0
    g = None
    # the kinds by colour refinement (a job's operators), or, when that does not fit, by
    # demand and allowed workers alone (one pass: unlike operators of equal demand lumped
    # together, a weaker but valid bound)
    for rounds, passes, how in ((3, _KINDS_PASSES, "refined"), (0, 0.5, "by demand only")):
        if log.left() >= passes * log.graph_pass:
            t0 = time.perf_counter()
            g = _kind_graph(p, nat, rounds)
            size = "" if g is None else f"{g.count.size} kinds, {len(g.pairs)} pairs "
            log.done("bound:kinds", t0, size + how if g is not None else "too many kinds")
            break
    else:
        log.skip("bound:kinds", f"needs ~{0.5 * log.graph_pass:.3f}s, {log.left():.3f}s left")
    knap = np.full(lev.groups.size, V)
    knap_ran = False
    if (g is None or g.count.size > _KNAPSACK_KINDS) and log.affords(
        "bound:knapsack-network", log.graph_pass
    ):
        # per task: worth its pass over the edges when kinds lump unlike tasks together
        t0 = time.perf_counter()
        knap = np.minimum(knap, native.level_shares(nat, lev.capacity, lev.saving) / 2.0)
        knap_ran = True
        log.done("bound:knapsack-network", t0)
    best = knap.copy()
    joint = False
    if g is not None and not log.affords(
        "bound:pairs", _PAIR_SECONDS * lev.groups.size * len(g.pairs)
    ):
        g = None
    if g is not None:
        t0 = time.perf_counter()
        pair = _pair_shares(p, g, lev)
        best = np.minimum(best, pair.sum(axis=1))
        log.done("bound:pairs", t0)
        if use_lp:
            joint = _joint_lps(p, g, lev, pair, best, log)
    # a finer level shares no more volume than a coarser one (index 0 is the finest)
    best = np.minimum.accumulate(best[::-1])[::-1]
    knap = np.minimum.accumulate(knap[::-1])[::-1]
    value = V * lev.dfar - float(lev.saving @ best)
    method = "knapsack" if knap_ran else "volume"  # volume: V x the nearest distance alone
    if g is not None:
        method = "shuffle-lp" if joint else "shuffle"
    # float sums: shave the last digits so that the bound stays a bound
    return max(value - 1e-9 * max(1.0, abs(value)), 0.0), method


def _joint_lps(
    p: PlacementProblem, g: lp.KindGraph, lev: _Levels, pair: F64, best: F64, log: StepLog
) -> bool:
    """One joint LP per level, coarse first, each if it fits in the time left (the first
    estimated, the next ones timed by the one before); ``best`` lowered in place where an LP
    proves less sharing. Whether any did."""
    if not lp.applies(g):
        log.steps.append(
            SolveStep(
                "bound:lp", 0.0, f"not applicable: {g.count.size} kinds, {len(g.pairs)} pairs"
            )
        )
        return False
    joint = False
    if not lp.imported():
        if not log.affords("bound:lp-import", _LP_IMPORT_ESTIMATE + _LP_FIRST_ESTIMATE):
            return False
        t0 = time.perf_counter()
        lp.load()
        log.done("bound:lp-import", t0, "OR-Tools linear solver loaded")
    estimate = _LP_FIRST_ESTIMATE
    for i in range(lev.groups.size - 1, -1, -1):
        name = f"bound:lp[{_level_name(p, i)}]"
        if not log.affords(name, estimate):
            continue
        t0 = time.perf_counter()
        v = lp.level_share_lp(g, lev.capacity[i], int(lev.groups[i]), pair[i], log.left())
        estimate = time.perf_counter() - t0
        if v is None:
            log.done(name, t0, "not solved in the time left")
        elif v < best[i] - 1e-9 * max(1.0, best[i]):
            best[i], joint = v, True
            log.done(name, t0, f"shared volume <= {v:.6g}")
        else:
            log.done(name, t0, "no better than the pair bounds")
    return joint


def placement_bound(
    p: PlacementProblem,
    nat: native.Native,
    time_limit: float,
    upper_compute: float | None = None,
    *,
    quick: bool = False,
    lp_relaxation: bool = True,
    log: StepLog | None = None,
) -> BoundReport:
    """The best bound of every kind this module computes (see :func:`compute_bound` and
    :func:`network_bound`) whose phases fit before ``log``'s deadline (default: ``time_limit``
    from now); ``log`` records each phase run or left out."""
    log = log if log is not None else StepLog.within(time_limit)
    # the compute part first: its Lagrangian takes milliseconds and also prices the search
    comp, comp_method, lam = compute_bound(
        p, nat, time_limit, upper_compute, quick=quick, lp_relaxation=lp_relaxation, log=log
    )
    net, net_method = network_bound(p, nat, time_limit, use_lp=not quick, log=log)
    method = comp_method + ("+" + net_method if net_method else "")
    return BoundReport(comp + net, method, comp, net, lam)
