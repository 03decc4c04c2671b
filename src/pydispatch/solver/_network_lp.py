"""The joint network bound: one LP (GLOP) per topology level over operator-pair aggregates.

The pair bounds of :mod:`._bounds` treat each pair of task kinds alone, as if it had every
group's whole capacity; a job whose shuffle would fit in one zone if its forward-connected
neighbours went elsewhere is then credited with both. This LP sees every kind at once.

Per level, G groups (each given the largest group's capacity: a relaxation). Each group lies in
one *cell* of a grid over the counts (x_a, x_b) of the heaviest shuffle pair (a, b). Variables,
per cell j: z_j (how many groups lie in it), X_jk (the tasks of kind k in those groups, summed)
and Y_jc (the volume of pair c shared inside them). Every inequality below holds for one group
and so, summed, for the groups of a cell (each multiplied by the group count z_j: a disjunctive,
homogenised formulation):

- capacity: sum_k dmin_kr X_jk <= C_r z_j per resource, sum_k X_jk <= (task limit) z_j;
- cell: lo_a z_j <= X_ja <= hi_a z_j (likewise b);
- pair c = (k, l): Y_jc <= alpha_c X_jk and Y_jc <= beta_c X_jl (one task's volume with the
  other kind at most alpha_c), and for the gridded pair McCormick's inequalities of
  gamma x_a x_b on the cell (gamma: the heaviest edge); other shuffles get them on the whole box;
- totals: sum_j z_j = G, sum_j X_jk = N_k, sum_j Y_jc <= the pair's own bound.

The LP's optimum is at least the volume any placement shares at that level.
"""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["KindGraph", "applies", "imported", "level_share_lp", "load"]

F64 = NDArray[np.float64]

_CELLS = 8  # grid cells per axis of the gridded pair
_MAX_KINDS = 12
_MAX_PAIRS = 24


@dataclass
class KindGraph:
    """The traffic graph over kinds of tasks (see ``_bounds._traffic_kinds``)."""

    count: F64  # (K,) tasks per kind
    dmin: F64  # (K, R) least demand of any task of the kind
    pairs: list[tuple[int, int]]  # communicating pairs, a <= b
    volume: F64  # (P,) total volume of each pair
    alpha: F64  # (P,) most volume one a-task has with b-tasks
    beta: F64  # (P,) the converse
    gamma: F64  # (P,) heaviest single edge


def _cells(n: float) -> list[tuple[float, float]]:
    """Integer count intervals covering 0..n (a group holds a whole number of tasks)."""
    top = math.floor(n + 1e-9)
    edges = np.unique(np.round(np.linspace(0, top + 1, _CELLS + 1)).astype(np.int64))
    return [(float(lo), float(hi - 1)) for lo, hi in itertools.pairwise(edges)]


def applies(g: KindGraph) -> bool:
    """Whether the LP is built for this kind graph (it grows with kinds x pairs x cells)."""
    return 0 < len(g.pairs) <= _MAX_PAIRS and g.count.size <= _MAX_KINDS


def imported() -> bool:
    """Whether OR-Tools' linear solver is loaded (its first import costs ~0.1 s)."""
    return "ortools.linear_solver.pywraplp" in sys.modules


def load() -> None:
    """Import OR-Tools' linear solver now (so that a caller can time it apart)."""
    from ortools.linear_solver import pywraplp  # noqa: F401


def level_share_lp(
    g: KindGraph, capacity: F64, n_groups: int, pair_bound: F64, time_limit: float
) -> float | None:
    """An upper bound on the volume sharing one level (``capacity``: the largest group's
    resources and task limit, last). None when the LP is not worth it or not solved."""
    from ortools.linear_solver import pywraplp

    K, P = g.count.size, len(g.pairs)
    if not applies(g):
        return None
    R = g.dmin.shape[1]
    kmax = np.minimum(g.count, capacity[R])
    for r in range(R):
        if np.isfinite(capacity[r]):
            with np.errstate(divide="ignore"):
                kmax = np.minimum(
                    kmax, np.where(g.dmin[:, r] > 0, capacity[r] / g.dmin[:, r], kmax)
                )
    kmax = np.floor(kmax + 1e-9)
    # the gridded pair: the heaviest shuffle, a pair in which a task talks to several tasks of
    # the other kind (there the bilinear term, not one task's volume, limits the sharing)
    shuffle = [
        c
        for c, (a, b) in enumerate(g.pairs)
        if a != b and g.alpha[c] > 1.5 * g.gamma[c] and g.beta[c] > 1.5 * g.gamma[c]
    ]
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:
        return None
    solver.SetTimeLimit(int(max(time_limit, 0.01) * 1000))
    grid: list[tuple[tuple[float, float], tuple[float, float]]] = [((0.0, kmax[0]), (0.0, kmax[0]))]
    gp = -1
    if shuffle:
        gp = max(shuffle, key=lambda c: g.volume[c])
        a, b = g.pairs[gp]
        grid = [(ca, cb) for ca in _cells(kmax[a]) for cb in _cells(kmax[b])]
    inf = solver.infinity()

    # rows by the low-level API (one coefficient per call): the natural API's expression
    # objects cost 5x more than GLOP's solve on these few-thousand-row models
    def row(terms: list[tuple[pywraplp.Variable, float]], hi: float, lo: float = -inf) -> None:
        ct = solver.Constraint(lo, hi)
        for var, coef in terms:
            ct.SetCoefficient(var, coef)

    objective = solver.Objective()
    z_all, X_all, Y_all = [], [], []
    for cell in grid:
        z = solver.NumVar(0.0, n_groups, "")
        X = [solver.NumVar(0.0, float(g.count[k]), "") for k in range(K)]
        Y = [solver.NumVar(0.0, float(g.volume[c]), "") for c in range(P)]
        for r in range(R):
            if np.isfinite(capacity[r]) and (g.dmin[:, r] > 0).any():
                terms = [(X[k], float(g.dmin[k, r])) for k in range(K) if g.dmin[k, r] > 0]
                row([*terms, (z, -float(capacity[r]))], 0.0)
        row([*((x, 1.0) for x in X), (z, -float(capacity[R]))], 0.0)
        for k in range(K):
            row([(X[k], 1.0), (z, -float(kmax[k]))], 0.0)
        if gp >= 0:
            a, b = g.pairs[gp]
            (lo_a, hi_a), (lo_b, hi_b) = cell
            row([(X[a], 1.0), (z, -lo_a)], inf, 0.0)
            row([(X[a], 1.0), (z, -hi_a)], 0.0)
            row([(X[b], 1.0), (z, -lo_b)], inf, 0.0)
            row([(X[b], 1.0), (z, -hi_b)], 0.0)
        for c, (k, m) in enumerate(g.pairs):
            objective.SetCoefficient(Y[c], 1.0)
            if k == m:
                # inside one kind: each task's share is alpha, each edge counted twice
                row([(Y[c], 1.0), (X[k], -0.5 * float(g.alpha[c]))], 0.0)
                row([(Y[c], 1.0), (X[k], -0.5 * float(g.gamma[c]) * max(kmax[k] - 1.0, 0.0))], 0.0)
                continue
            row([(Y[c], 1.0), (X[k], -float(g.alpha[c]))], 0.0)
            row([(Y[c], 1.0), (X[m], -float(g.beta[c]))], 0.0)
            gam = float(g.gamma[c])
            if c == gp:
                (lo_a, hi_a), (lo_b, hi_b) = cell
            else:
                (lo_a, hi_a), (lo_b, hi_b) = (0.0, float(kmax[k])), (0.0, float(kmax[m]))
            # McCormick: x_a x_b <= hi_b x_a + lo_a x_b - lo_a hi_b
            #             and  <= lo_b x_a + hi_a x_b - hi_a lo_b
            row(
                [(Y[c], 1.0), (X[k], -gam * hi_b), (X[m], -gam * lo_a), (z, gam * lo_a * hi_b)], 0.0
            )
            row(
                [(Y[c], 1.0), (X[k], -gam * lo_b), (X[m], -gam * hi_a), (z, gam * hi_a * lo_b)], 0.0
            )
        z_all.append(z)
        X_all.append(X)
        Y_all.append(Y)
    row([(z, 1.0) for z in z_all], float(n_groups))
    for k in range(K):
        row([(X[k], 1.0) for X in X_all], float(g.count[k]), float(g.count[k]))
    for c in range(P):
        if math.isfinite(pair_bound[c]):
            row([(Y[c], 1.0) for Y in Y_all], float(pair_bound[c]))
    objective.SetMaximization()
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return None
    val = float(solver.Objective().Value())
    # GLOP's optimum is a float within its tolerances: add a little to stay an upper bound
    return val * (1.0 + 1e-6) + 1e-6
