"""Exact methods and bounds with OR-Tools: CP-SAT, min-cost flow, GLOP LP relaxation.

OR-Tools is imported inside the functions: workers that only run tasks never load it.

Integer scaling: CP-SAT and the flow want integer coefficients. Costs are scaled by S and
rounded *down*, so for every placement the scaled integer objective is <= S x the true one and
the solver's bound / S is a valid lower bound on the true optimum. Demands are rounded *up* and
capacities *down* (when they are not already integers), so every placement the model accepts
really fits; the model may then miss a placement that fits only in the last digits, which the
caller sees as ``exact_capacity=False``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ._problem import PlacementProblem

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

__all__ = ["ExactResult", "cpsat", "flow", "flow_eligible", "lp_bound"]

_COEF = 1e7  # the largest scaled cost coefficient: precise, far from int64 trouble


@dataclass
class ExactResult:
    assignment: NDArray[np.int32] | None
    lower_bound: float
    proven_optimal: bool
    proven_infeasible: bool
    exact_capacity: bool = True


def _cost_scale(values: NDArray[np.float64]) -> float:
    vals = values[np.isfinite(values)]
    if vals.size == 0 or (np.all(vals == np.round(vals)) and np.abs(vals).max() <= _COEF):
        return 1.0
    return _COEF / max(float(np.abs(vals).max()), 1e-300)


def _int_capacity(p: PlacementProblem) -> tuple[NDArray[np.int64], NDArray[np.float64], bool]:
    """(demand, capacity with inf kept as inf, exact?) scaled to integers conservatively."""
    dem, cap = p.demand, p.capacity
    fin = cap[np.isfinite(cap)]
    exact = bool(np.all(dem == np.round(dem)) and np.all(fin == np.round(fin)))
    s = 1.0 if exact else 1e6 / max(float(dem.max(initial=0.0)), 1e-300)
    d = np.ceil(dem * s - 1e-9).astype(np.int64)
    c = np.where(np.isfinite(cap), np.floor(cap * s + 1e-9), np.inf)
    return d, c, exact


def flow_eligible(p: PlacementProblem) -> str | None:
    """None when min-cost flow solves p exactly, else why not."""
    if p.has_traffic:
        return "flow needs a problem without traffic"
    if p.anti_affinity is not None:
        return "flow does not model anti-affinity"
    binding = [
        r
        for r in range(p.n_resources)
        if (p.demand[:, r] > 0).any() and np.isfinite(p.capacity[:, r]).any()
    ]
    if len(binding) > 1:
        names = [p.resources[r] for r in binding]
        return f"flow needs one slot-count resource, {names} are all limited"
    if binding and np.ptp(p.demand[:, binding[0]]) != 0:
        return f"flow needs equal demand of {p.resources[binding[0]]!r} from every task"
    return None


def flow(p: PlacementProblem) -> ExactResult:
    """Quincy-style min-cost flow: source -> task -> worker -> sink, worker arcs carrying the
    slot count."""
    from ortools.graph.python import min_cost_flow

    T, W = p.n_tasks, p.n_workers
    binding = [
        r
        for r in range(p.n_resources)
        if (p.demand[:, r] > 0).any() and np.isfinite(p.capacity[:, r]).any()
    ]
    if binding:
        r = binding[0]
        d = float(p.demand[0, r])
        cap = p.capacity[:, r]
        slots = np.where(np.isfinite(cap), np.floor(cap / d + 1e-9), T).astype(np.int64)
    else:
        slots = np.full(W, T, np.int64)
    slots = np.minimum(slots, T)
    allowed = p.allowed_matrix()
    cost = p.compute_cost_matrix()
    S = _cost_scale(cost[allowed])
    ti, wi = np.nonzero(allowed)
    icost = np.floor(cost[ti, wi] * S).astype(np.int64)
    icost -= icost.min(initial=0)  # non-negative arcs; a constant per task, added back below
    shift = float(np.floor(cost[ti, wi] * S).min(initial=0)) if ti.size else 0.0
    src, sink = T + W, T + W + 1
    g = min_cost_flow.SimpleMinCostFlow()
    tails = np.concatenate([np.full(T, src), ti, T + np.arange(W)]).astype(np.int32)
    heads = np.concatenate([np.arange(T), T + wi, np.full(W, sink)]).astype(np.int32)
    caps = np.concatenate([np.ones(T), np.ones(ti.size), slots]).astype(np.int64)
    costs = np.concatenate([np.zeros(T), icost, np.zeros(W)]).astype(np.int64)
    g.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    g.set_node_supply(src, T)
    g.set_node_supply(sink, -T)
    status = g.solve_max_flow_with_min_cost()
    if status != g.OPTIMAL:
        raise RuntimeError(f"min-cost flow failed with status {status}")
    if g.maximum_flow() < T:
        return ExactResult(None, math.inf, False, True)
    arcs = np.arange(T, T + ti.size)
    used = g.flows(arcs) > 0
    assign = np.full(T, -1, np.int32)
    assign[ti[used]] = wi[used]
    lb = (float(g.optimal_cost()) + shift * T) / S
    return ExactResult(assign, lb, S == 1.0, False)


def _network_terms(p: PlacementProblem) -> tuple[list[tuple[int, int, float]], NDArray[np.float64]]:
    """Edges merged per unordered pair (self loops dropped) and the per-level savings dl."""
    pairs: dict[tuple[int, int], float] = {}
    for s, d, v in zip(p.traffic_src, p.traffic_dst, p.traffic_volume, strict=True):
        if s == d or v <= 0:
            continue
        key = (int(min(s, d)), int(max(s, d)))
        pairs[key] = pairs.get(key, 0.0) + float(v)
    ld = p.level_distance
    L = p.level_groups.shape[1]
    dl = np.array([ld[L + 1 - lv] - ld[L - lv] for lv in range(L)] + [ld[1] - ld[0]])
    return [(a, b, v) for (a, b), v in pairs.items()], dl


_STRONG_MAX_TERMS = 60_000  # edges x groups for the strong network linearisation


def _strong_levels(
    m: cp_model.CpModel,
    p: PlacementProblem,
    x: dict[tuple[int, int], cp_model.IntVar],
    cand: list[list[int]],
    edges: list[tuple[int, int, float]],
    gid: list[NDArray[Any]],
    dl: NDArray[np.float64],
    S: float,
    dem: NDArray[np.int64],
    cap: NDArray[np.float64],
    hint: NDArray[np.int32] | None,
    ovars: list[cp_model.IntVar],
    ocoef: list[int],
    hints: list[tuple[cp_model.IntVar, int]],
) -> None:
    """u[e, g] <= z[a, g], u[e, g] <= z[b, g] (z[t, g]: t is in group g), saving dl per shared
    level; plus, per task a and group g, the neighbours sharing g must fit in g beside a:
    sum_b dem[b] u[(a, b), g] <= (cap[g] - dem[a]) z[a, g]. The latter is what gives the LP
    relaxation (and so CP-SAT's bound) its strength: without it every fractional spread of the
    tasks looks co-located."""
    from ortools.sat.python import cp_model

    nbrs: dict[int, list[tuple[int, int]]] = {}
    for e, (a, b, _) in enumerate(edges):
        nbrs.setdefault(a, []).append((e, b))
        nbrs.setdefault(b, []).append((e, a))
    for lv, g_of in enumerate(gid):
        savings = [math.ceil(v * dl[lv] * S) for _, _, v in edges]
        if not any(savings):
            continue
        groups: dict[int, list[int]] = {}
        for w, g in enumerate(g_of.tolist()):
            groups.setdefault(g, []).append(w)
        gcap = {g: cap[ws].sum(axis=0) for g, ws in groups.items()}
        for g, ws in groups.items():
            wset = set(ws)
            z = {t: cp_model.LinearExpr.sum([x[t, w] for w in cand[t] if w in wset]) for t in nbrs}
            u: dict[int, cp_model.IntVar] = {}
            for e, (a, b, _) in enumerate(edges):
                if savings[e] == 0:
                    continue
                var = m.new_bool_var(f"u{e}_{lv}_{g}")
                m.add(var <= z[a])
                m.add(var <= z[b])
                u[e] = var
                ovars.append(var)
                ocoef.append(-savings[e])
                if hint is not None:
                    hints.append((var, int(hint[a] in wset and hint[b] in wset)))
            for a, lst in nbrs.items():
                for r in range(p.n_resources):
                    room = gcap[g][r] - dem[a, r]
                    terms = [(u[e], int(dem[b, r])) for e, b in lst if e in u and dem[b, r] > 0]
                    if math.isinf(room) or not terms or sum(c for _, c in terms) <= room:
                        continue
                    m.add(
                        cp_model.LinearExpr.weighted_sum(
                            [v for v, _ in terms], [c for _, c in terms]
                        )
                        <= int(room) * z[a]
                    )


def model_size(p: PlacementProblem) -> int:
    """Rough variable count of the CP-SAT model (for choosing a method)."""
    pairs = p.n_tasks * p.n_workers
    x = int(p.allowed_matrix().sum()) if pairs <= 4_000_000 else pairs
    E = int((p.traffic_volume > 0).sum())
    if p.distance is not None:
        return int(x + E * p.n_workers**2)
    return int(x + E * (p.level_groups.shape[1] + 1))


def cpsat(
    p: PlacementProblem,
    *,
    deadline: float,
    gap_limit: float,
    seed: int,
    num_workers: int,
    hint: NDArray[np.int32] | None,
) -> ExactResult:
    """The exact CP-SAT model, network cost linearised per topology level (or per worker pair
    for a dense distance matrix), warm-started from `hint`."""
    from ortools.sat.python import cp_model

    T, W = p.n_tasks, p.n_workers
    allowed = p.allowed_matrix()
    cost = p.compute_cost_matrix()
    edges, dl = _network_terms(p)
    L = p.level_groups.shape[1]
    ld = p.level_distance
    vols = np.array([v for _, _, v in edges])
    coefs = np.concatenate(
        [cost[allowed], vols * ld[-1], np.outer(vols, dl).ravel()]
        if p.distance is None
        else [cost[allowed], np.outer(vols, p.distance.ravel()).ravel()]
    )
    S = _cost_scale(coefs)
    dem, cap, exact_cap = _int_capacity(p)
    m = cp_model.CpModel()
    x: dict[tuple[int, int], cp_model.IntVar] = {}
    cand = [[int(w) for w in np.flatnonzero(allowed[t])] for t in range(T)]
    for t in range(T):
        for w in cand[t]:
            x[t, w] = m.new_bool_var(f"x{t}_{w}")
        m.add_exactly_one(x[t, w] for w in cand[t])
    for w in range(W):
        on_w = [t for t in range(T) if (t, w) in x]
        for r in range(p.n_resources):
            if math.isinf(cap[w, r]) or dem[on_w, r].sum() <= cap[w, r]:
                continue
            row = cp_model.LinearExpr.weighted_sum(
                [x[t, w] for t in on_w], [int(dem[t, r]) for t in on_w]
            )
            m.add(row <= int(cap[w, r]))
    if p.anti_affinity is not None:
        dom = p.anti_affinity_domain
        for g in range(p.anti_affinity_limit.size):
            members = [int(t) for t in np.flatnonzero(p.anti_affinity == g)]
            for dd in np.unique(dom):
                ws = {int(w) for w in np.flatnonzero(dom == dd)}
                terms = [x[t, w] for t in members for w in cand[t] if w in ws]
                if len(terms) > p.anti_affinity_limit[g]:
                    m.add(cp_model.LinearExpr.sum(terms) <= int(p.anti_affinity_limit[g]))
    ovars: list[cp_model.IntVar] = list(x.values())
    ocoef: list[int] = [math.floor(cost[t, w] * S) for (t, w) in x]
    const = 0
    hints: list[tuple[cp_model.IntVar, int]] = []
    if p.distance is None:
        # y[e, l] = both ends share level l's group (worker level last); it can only earn its
        # saving dl[l] if the ends' group indices agree, so minimisation sets it exactly
        gid = [p.level_groups[:, lv] for lv in range(L)] + [np.arange(W)]
        idx: list[list[cp_model.LinearExprT]] = [
            [
                cp_model.LinearExpr.weighted_sum(
                    [x[t, w] for w in cand[t]], [int(gid[lv][w]) for w in cand[t]]
                )
                for t in range(T)
            ]
            for lv in range(L + 1)
        ]
        n_groups = [int(g.max()) + 1 for g in gid]
        if len(edges) * sum(n_groups) <= _STRONG_MAX_TERMS:
            _strong_levels(m, p, x, cand, edges, gid, dl, S, dem, cap, hint, ovars, ocoef, hints)
            const += sum(math.floor(v * ld[-1] * S) for _, _, v in edges)
        for a, b, v in edges if len(edges) * sum(n_groups) > _STRONG_MAX_TERMS else []:
            const += math.floor(v * ld[-1] * S)
            prev = None
            for lv in range(L + 1):
                saving = math.ceil(v * dl[lv] * S)
                if saving == 0:
                    continue
                y = m.new_bool_var(f"y{a}_{b}_{lv}")
                m.add(idx[lv][a] == idx[lv][b]).only_enforce_if(y)
                if prev is not None:
                    m.add_implication(y, prev)
                prev = y
                ovars.append(y)
                ocoef.append(-saving)
                if hint is not None:
                    same = gid[lv][hint[a]] == gid[lv][hint[b]]
                    hints.append((y, int(same)))
    else:
        for a, b, v in edges:
            for wa in range(W):
                for wb in range(W):
                    c = math.floor(v * p.distance[wa, wb] * S)
                    if c == 0 or (a, wa) not in x or (b, wb) not in x:
                        continue
                    z = m.new_bool_var(f"z{a}_{b}_{wa}_{wb}")
                    m.add_bool_or([x[a, wa].Not(), x[b, wb].Not(), z])
                    ovars.append(z)
                    ocoef.append(c)
                    if hint is not None:
                        hints.append((z, int(hint[a] == wa and hint[b] == wb)))
    m.minimize(cp_model.LinearExpr.weighted_sum(ovars, ocoef))
    if hint is not None:
        for (t, w), var in x.items():
            m.add_hint(var, int(hint[t] == w))
        for var, val in hints:
            m.add_hint(var, val)
    solver = cp_model.CpSolver()
    # the model is built: what is left of the caller's budget is CP-SAT's
    solver.parameters.max_time_in_seconds = max(deadline - time.perf_counter(), 0.01)
    solver.parameters.num_workers = max(num_workers, 1)
    solver.parameters.random_seed = seed % (2**31)
    solver.parameters.relative_gap_limit = gap_limit
    status = solver.solve(m)
    if status == cp_model.INFEASIBLE:
        return ExactResult(None, math.inf, False, exact_cap, exact_cap)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return ExactResult(None, -math.inf, False, False, exact_cap)
    assign = np.full(T, -1, np.int32)
    for (t, w), var in x.items():
        if solver.boolean_value(var):
            assign[t] = w
    lb = (solver.best_objective_bound + const) / S
    # OPTIMAL also means "within relative_gap_limit": proven only when the bound meets the value
    closed = solver.objective_value <= solver.best_objective_bound + 1e-9
    proven = status == cp_model.OPTIMAL and closed and S == 1.0 and exact_cap
    return ExactResult(assign, lb, proven, False, exact_cap)


def lp_bound(p: PlacementProblem, time_limit: float) -> float:
    """GLOP LP relaxation of the compute-cost part (assignment + capacities; anti-affinity is
    left out, which only weakens the bound)."""
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:
        return -math.inf
    solver.SetTimeLimit(int(max(time_limit, 0.05) * 1000))
    allowed = p.allowed_matrix()
    cost = p.compute_cost_matrix()
    T, W = p.n_tasks, p.n_workers
    x = {
        (t, int(w)): solver.NumVar(0.0, 1.0, "")
        for t in range(T)
        for w in np.flatnonzero(allowed[t])
    }
    for t in range(T):
        solver.Add(sum(x[t, int(w)] for w in np.flatnonzero(allowed[t])) == 1)
    for w in range(W):
        for r in range(p.n_resources):
            if np.isfinite(p.capacity[w, r]):
                terms = [
                    p.demand[t, r] * x[t, w] for t in range(T) if (t, w) in x and p.demand[t, r] > 0
                ]
                if terms:
                    solver.Add(sum(terms) <= p.capacity[w, r])
    solver.Minimize(sum(cost[t, w] * v for (t, w), v in x.items()))
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return -math.inf
    val = float(solver.Objective().Value())
    # GLOP's optimum is a float within its tolerances: shave a little to stay a bound
    return val - 1e-7 * max(1.0, abs(val))
