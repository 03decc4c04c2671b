"""Bridge from a validated PlacementProblem to the native kernels of ``pydispatch._core``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

import pydispatch._core as _core

from ._problem import PlacementProblem

__all__ = [
    "BEST_FIT",
    "FEWEST_TASKS",
    "FIRST_FIT",
    "LEAST_COST",
    "LEAST_UTIL",
    "Native",
    "build",
    "level_shares",
    "max_tasks_per_worker",
    "network_bound",
]

_REGRET_WORK = 20_000_000  # element operations of one regret construction, about

# construction rules of SolverKernel.greedy (the enum in src/core/solver.pyx)
LEAST_COST, FIRST_FIT, LEAST_UTIL, FEWEST_TASKS, BEST_FIT = 0, 1, 2, 3, 4


_G = TypeVar("_G", bound=np.generic)


def _pad(arr: NDArray[Any], dtype: type[_G]) -> NDArray[_G]:
    # the kernel takes &a[0] of every array, so unused ones get one dummy element
    flat = np.ascontiguousarray(arr, dtype=dtype).reshape(-1)
    return flat if flat.size else np.zeros(1, dtype=dtype)


@dataclass
class Native:
    """A SolverKernel plus the arrays the Python side needs beside it."""

    problem: PlacementProblem
    kernel: _core.SolverKernel
    adj_ptr: NDArray[np.int64]
    adj_nbr: NDArray[np.int32]
    adj_vol: NDArray[np.float64]
    eps: float
    n_finite: int = 0  # finite (worker, resource) capacities some task demands

    def evaluate(self, assign: NDArray[np.int32]) -> tuple[float, float]:
        self.kernel.set_assignment(np.ascontiguousarray(assign, dtype=np.int32))
        p = self.problem
        return self.kernel.objective(p.traffic_src, p.traffic_dst, p.traffic_volume)

    def priority(self) -> NDArray[np.int64]:
        """Pinned tasks first, then by dominant share of the (finite) cluster capacity, largest
        first: the hard-to-fit tasks go while there is room."""
        p = self.problem
        cap = np.where(np.isfinite(p.capacity), p.capacity, 0.0).sum(axis=0)
        share = np.divide(p.demand, cap, out=np.zeros_like(p.demand), where=cap > 0)
        dom = share.max(axis=1) if p.n_resources else np.zeros(p.n_tasks)
        pinned = np.zeros(p.n_tasks) if p.pinned is None else (p.pinned >= 0).astype(float)
        restricted = (p.task_class >= 0).astype(float)
        return np.lexsort((-dom, -restricted, -pinned)).astype(np.int64)

    def construct(self) -> NDArray[np.int32] | int:
        """Greedy construction: least incremental cost in group-hint order (or breadth-first
        traffic order), then best-fit and first-fit orders if that got stuck. The assignment,
        or the task that fitted nowhere in any attempt."""
        seeds = self.priority()
        hint = self.problem.group_hint
        if hint is not None:
            rank = np.empty_like(seeds)
            rank[seeds] = np.arange(seeds.size)
            order = np.lexsort((rank, hint)).astype(np.int64)
        elif self.problem.has_traffic:
            order = _core.sol_traffic_order(self.adj_ptr, self.adj_nbr, self.adj_vol, seeds)
        else:
            order = seeds
        stuck = -1
        for rule, ordr in ((LEAST_COST, order), (BEST_FIT, seeds), (FIRST_FIT, seeds)):
            self.kernel.clear()
            self.kernel.place_pinned()
            stuck = self.kernel.greedy(ordr, rule)
            if stuck < 0:
                # a best-fit or first-fit start is cost-blind; the local search repairs cost
                return self.kernel.assignment
        return stuck

    def regret_construct(
        self, prices: NDArray[np.float64] | None = None, thorough: bool = False
    ) -> NDArray[np.int32] | None:
        """The best of the regret constructions by cost, by relative weight (Martello-Toth
        try several desirabilities: cost alone gets stuck on tight capacities) and, given
        Lagrangian ``prices`` (workers x resources), by reduced cost: cost + the price of the
        capacity a task takes, which steers each task away from the workers the relaxation
        found overloaded. ``thorough`` adds mixes of reduced cost and relative weight, which
        finish where reduced cost alone gets stuck (type D: 36% -> 11% above the bound)."""
        best: NDArray[np.int32] | None = None
        best_obj = np.inf
        variants: list[tuple[bool, NDArray[np.float64] | None, float]] = []
        if prices is not None:
            variants.append((False, prices, 1e9))
            if thorough:
                variants += [(True, prices, mix) for mix in (3.0, 1.0, 0.5, 0.3)]
        p = self.problem
        finite = np.isfinite(p.capacity) & (p.demand.max(axis=0, initial=0.0) > 0)[None, :]
        F = max(int(finite.sum(axis=1).max(initial=0)), 1)
        # each variant costs O(T^2 W F) numpy work: the others only where that is cheap
        if prices is None or p.n_tasks**2 * p.n_workers * F <= _REGRET_WORK:
            variants = [(False, None, 1e9), (True, None, 1e9), *variants]
        for by_weight, lam, mix in variants:
            a = self._regret(by_weight, lam, mix)
            if a is not None and sum(self.evaluate(a)) < best_obj:
                best, best_obj = a, sum(self.evaluate(a))
        return best

    def _regret(
        self, by_weight: bool, prices: NDArray[np.float64] | None = None, mix: float = 1e9
    ) -> NDArray[np.int32] | None:
        """Martello-Toth regret construction for problems without traffic: repeatedly place the
        task that would lose most (second-best minus best feasible cost) if it waited. Much
        better than plain greedy on tight packings (GAP); O(T^2 W F) for F finite capacities
        per worker, so only for small T x W.
        None when it gets stuck."""
        p = self.problem
        cost = p.compute_cost_matrix()
        if prices is not None:
            cost = cost + p.demand @ prices[:, : p.n_resources].T
        allowed = p.allowed_matrix()
        # by weight: share of the room, plus the cost in units of its mean size over `mix`
        unit = float(np.abs(cost).mean()) * mix if cost.size and np.abs(cost).mean() > 0 else 1.0
        # only the finite capacities can refuse a task: per worker its F finite columns (a
        # GAP agent has one), padded with a column of no demand and no limit
        dem_x = np.column_stack([p.demand, np.zeros(p.n_tasks)])
        rem_x = np.column_stack([p.capacity, np.full(p.n_workers, np.inf)])
        finite = np.isfinite(p.capacity) & (p.demand.max(axis=0, initial=0.0) > 0)[None, :]
        F = max(int(finite.sum(axis=1).max(initial=0)), 1)
        cols = np.full((p.n_workers, F), p.n_resources, np.int64)
        for w in range(p.n_workers):
            idx = np.flatnonzero(finite[w])
            cols[w, : idx.size] = idx
        dem_c = dem_x[:, cols]  # (T, W, F)
        rem = rem_x[np.arange(p.n_workers)[:, None], cols]  # (W, F)
        assign = np.full(p.n_tasks, -1, np.int32)

        def take(t: int, w: int) -> None:
            rem_x[w] -= dem_x[t]
            rem[w] = rem_x[w, cols[w]]

        if p.pinned is not None:
            for pin in np.flatnonzero(p.pinned >= 0).tolist():
                assign[pin] = p.pinned[pin]
                take(pin, int(p.pinned[pin]))
        todo = np.flatnonzero(assign < 0)
        while todo.size:
            dem = dem_c[todo]
            fits = allowed[todo] & (dem <= rem[None, :, :] + self.eps).all(axis=2)
            if by_weight:
                # the share of the worker's remaining room the task would take
                room = np.where(np.isfinite(rem), np.maximum(rem, 1e-300), np.inf)
                # Overflow to inf is the right answer (no room): only the warning is unwanted.
                with np.errstate(over="ignore"):
                    share = (dem / room[None, :, :]).max(axis=2)
                    c = np.where(fits, share * mix + cost[todo] / unit, np.inf)
            else:
                c = np.where(fits, cost[todo], np.inf)
            if not fits.any(axis=1).all():
                return None
            if c.shape[1] > 1:
                two = np.partition(c, 1, axis=1)[:, :2]
                regret = two[:, 1] - two[:, 0]  # inf when only one worker is left: urgent
            else:
                regret = np.zeros(todo.size)
            i = int(np.argmax(regret))
            w = int(np.argmin(c[i]))
            t = int(todo[i])
            assign[t] = w
            take(t, w)
            todo = np.delete(todo, i)
        return assign

    def improve(self, time_limit: float, seed: int, *, use_all_time: bool = False) -> None:
        """Iterated local search from the kernel's current assignment, ending on the best one
        found: until the time limit or (unless `use_all_time`) `stall` rounds without
        improvement, which keeps a run that ends early a function of the seed alone."""
        p = self.problem
        # swaps with every worker's tasks are affordable on small problems and pay on tight
        # packings; on big ones the 4 most attractive workers are enough
        K = p.n_workers if p.n_workers * p.n_tasks <= 200_000 else 4
        stall = 2**62 if use_all_time else max(200, 5 * p.n_tasks)
        self.kernel.iterated_local_search(max(time_limit, 0.0), seed & (2**64 - 1), stall, K)


def build(problem: PlacementProblem) -> Native:
    p = problem
    T, W, R = p.n_tasks, p.n_workers, p.n_resources
    dem, cap = p.demand, p.capacity
    if R == 0:
        dem, cap, R = np.zeros((T, 1)), np.full((W, 1), np.inf), 1
    # a worker's finite capacities, only where some task demands the resource
    finite = np.isfinite(cap) & (dem.max(axis=0) > 0)[None, :]
    fin_ptr = np.zeros(W + 1, np.int32)
    fin_ptr[1:] = np.cumsum(finite.sum(axis=1))
    fin_idx = np.nonzero(finite)[1].astype(np.int32)
    big = float(np.max(cap[np.isfinite(cap)], initial=1.0))
    eps = 1e-9 * max(1.0, big)
    if p.cost is not None:
        cost_mode, cost = 1, p.cost
        scale = float(np.abs(cost).max(initial=0.0))
    elif p.work is not None and p.speed is not None:
        cost_mode, cost = 2, np.zeros(1)
        scale = float(p.work.max(initial=0.0) / p.speed.min())
    else:
        cost_mode, cost, scale = 0, np.zeros(1), 0.0
    ld = p.level_distance
    L = p.level_groups.shape[1]
    # dl[l]: distance saved by sharing level l (coarse -> fine), dl[L]: by sharing the worker
    dl = np.array([ld[L + 1 - lv] - ld[L - lv] for lv in range(L)] + [ld[1] - ld[0]])
    n_groups = 0
    grp = np.zeros((W, L), np.int32)
    for lv in range(L):
        grp[:, lv] = p.level_groups[:, lv] + n_groups
        n_groups += int(p.level_groups[:, lv].max()) + 1
    dist_mode = 1 if p.distance is not None else 0
    adj_ptr, adj_nbr, adj_vol = _core.sol_build_csr(
        T, p.traffic_src, p.traffic_dst, p.traffic_volume
    )
    vmax = float(p.traffic_volume.max(initial=0.0)) * float(ld.max() if p.distance is None else 1)
    if p.distance is not None:
        vmax *= float(p.distance.max(initial=0.0))
    eps_obj = 1e-9 * max(1e-12, scale, vmax)
    pinned = p.pinned if p.pinned is not None else np.full(T, -1, np.int32)
    aa_group = p.anti_affinity if p.anti_affinity is not None else np.full(T, -1, np.int32)
    n_dom = int(p.anti_affinity_domain.max()) + 1
    kernel = _core.SolverKernel(
        T,
        W,
        R,
        L,
        _pad(dem, np.float64),
        _pad(cap, np.float64),
        fin_ptr,
        _pad(fin_idx, np.int32),
        cost_mode,
        _pad(cost, np.float64),
        _pad(p.work if p.work is not None else np.zeros(0), np.float64),
        _pad(p.speed if p.speed is not None else np.zeros(0), np.float64),
        dist_mode,
        _pad(grp, np.int32),
        _pad(dl, np.float64),
        float(ld[L + 1]),
        _pad(p.distance if p.distance is not None else np.zeros(0), np.float64),
        adj_ptr,
        adj_nbr,
        adj_vol,
        _pad(p.task_class, np.int32),
        _pad(p.class_mask.astype(np.uint8), np.uint8),
        _pad(pinned, np.int32),
        _pad(aa_group, np.int32),
        _pad(p.anti_affinity_limit, np.int32),
        _pad(p.anti_affinity_domain, np.int32),
        n_dom,
        n_groups,
        eps,
        eps_obj,
    )
    return Native(p, kernel, adj_ptr, adj_nbr, adj_vol, eps, int(fin_ptr[-1]))


def max_tasks_per_worker(p: PlacementProblem) -> NDArray[np.int64]:
    """An upper bound on how many tasks each worker can hold at once (by its finite capacities
    and the smallest positive demand in each resource)."""
    T = p.n_tasks
    out = np.full(p.n_workers, T, np.int64)
    for r in range(p.n_resources):
        col = p.demand[:, r]
        # tasks demanding nothing of r are not limited by it
        if (col <= 0).any():
            continue
        dmin = col.min()
        cap = p.capacity[:, r]
        k = np.where(np.isfinite(cap), np.floor(cap / dmin + 1e-9), T)
        out = np.minimum(out, k.astype(np.int64))
    return out


def network_bound(native: Native) -> float:
    """A lower bound on the network cost: at most k-1 other tasks can share a task's worker
    (k the most any worker holds), at most K-1 its node, etc., so each task's edges get the
    smallest distances in order of volume; every edge is counted from both ends, hence / 2."""
    p = native.problem
    if not p.has_traffic:
        return 0.0
    if p.distance is not None:
        # dense distances have no level structure: the cheapest pair for every edge
        k = max_tasks_per_worker(p)
        d = p.distance
        off = d + np.where(np.eye(p.n_workers, dtype=bool), np.inf, 0.0)
        dmin = float(off.min()) if p.n_workers > 1 else np.inf
        if (k >= 2).any():
            dmin = min(dmin, float(np.diag(d)[k >= 2].min()))
        return float(p.traffic_volume.sum()) * dmin
    k = max_tasks_per_worker(p).astype(np.float64)
    L = p.level_groups.shape[1]
    ld = p.level_distance
    R = p.n_resources
    # capl[i]: the most of each resource (and of task count, last column) one group of level i
    # holds: i = 0 a worker, then the topology levels fine -> coarse
    per_worker = np.column_stack([p.capacity, k])
    rows = [per_worker.max(axis=0)]
    for lv in range(L - 1, -1, -1):
        g = p.level_groups[:, lv]
        sums = np.zeros((int(g.max()) + 1, R + 1))
        np.add.at(sums, g, per_worker)
        rows.append(sums.max(axis=0))
    capl = np.array(rows)
    capl[:, R] = np.minimum(capl[:, R], p.n_tasks)
    fine_to_coarse = range(L - 1, -1, -1)
    saving = np.array([ld[1] - ld[0]] + [ld[L + 1 - lv] - ld[L - lv] for lv in fine_to_coarse])
    twice = _core.sol_network_bound(
        native.adj_ptr,
        native.adj_nbr,
        native.adj_vol,
        np.ascontiguousarray(p.demand).reshape(-1),
        R,
        np.ascontiguousarray(capl).reshape(-1),
        saving,
        float(ld[L + 1]),
    )
    return float(twice) / 2.0


def level_shares(
    native: Native, capl: NDArray[np.float64], saving: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Twice the knapsack bound of :func:`network_bound` on the volume sharing each level
    (rows of ``capl`` and entries of ``saving``: the worker, then the levels fine -> coarse)."""
    p = native.problem
    out = np.zeros(saving.size, dtype=np.float64)
    if not p.has_traffic:
        return out
    _core.sol_network_bound(
        native.adj_ptr,
        native.adj_nbr,
        native.adj_vol,
        np.ascontiguousarray(p.demand).reshape(-1),
        p.n_resources,
        np.ascontiguousarray(capl).reshape(-1),
        np.ascontiguousarray(saving),
        float(p.level_distance[-1]),
        out,
    )
    return out
