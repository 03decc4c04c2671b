# SolverKernel: the Python-facing owner of one _sol_ctx (_solver_shared.pxd) and of the arrays
# its pointers point into; it runs the kernels of solver.pyx (_sol_greedy, _sol_local, _sol_ils:
# module-level cdef functions of _core, found whatever the include order).

from libc.math cimport INFINITY
from _typedefs cimport int32_t, int64_t, uint8_t, uint64_t
from _solver_shared cimport (
    _sol_ctx, _sol_now, _sol_ccost, _sol_dist, _sol_allowed, _sol_place, _sol_unplace,
)

import numpy as np


cdef class SolverKernel:
    """Native placement state over one validated problem (built by pydispatch.solver._native)."""

    cdef _sol_ctx c
    cdef list _keep
    cdef int32_t[::1] _assign
    cdef double[::1] _usage
    cdef int32_t[::1] _ntasks
    cdef int32_t[::1] _aacount
    cdef int32_t[::1] _head
    cdef int32_t[::1] _nxt
    cdef int32_t[::1] _prv
    cdef double[::1] _acc
    cdef double[::1] _net
    cdef double[::1] _mass
    cdef const int32_t[::1] _pinned
    cdef int32_t[::1] _by_speed
    cdef double[::1] _dmin

    def __init__(self, int64_t T, int64_t W, int64_t R, int64_t L,
                 const double[::1] dem not None, const double[::1] cap not None,
                 const int32_t[::1] fin_ptr not None, const int32_t[::1] fin_idx not None,
                 int cost_mode, const double[::1] cost not None, const double[::1] work not None,
                 const double[::1] speed not None,
                 int dist_mode, const int32_t[::1] grp not None, const double[::1] dl not None,
                 double dfar,
                 const double[::1] dist not None,
                 const int64_t[::1] adj_ptr not None, const int32_t[::1] adj_nbr not None,
                 const double[::1] adj_vol not None,
                 const int32_t[::1] tclass not None, const uint8_t[::1] cmask not None,
                 const int32_t[::1] pinned not None,
                 const int32_t[::1] aa_group not None, const int32_t[::1] aa_limit not None,
                 const int32_t[::1] aa_dom not None, int64_t n_dom, int64_t n_groups,
                 double eps, double eps_obj):
        # every array has at least one element (the wrapper pads the unused ones); the sizes
        # the kernels index blindly are checked here, once
        if (dem.shape[0] < T * R or cap.shape[0] < W * R or fin_ptr.shape[0] < W + 1
                or adj_ptr.shape[0] < T + 1 or tclass.shape[0] < T or pinned.shape[0] < T
                or aa_group.shape[0] < T or aa_dom.shape[0] < W or grp.shape[0] < W * L
                or dl.shape[0] < L + 1):
            raise ValueError("SolverKernel: an array is shorter than its declared shape")
        if cost_mode == 1 and cost.shape[0] < T * W:
            raise ValueError("SolverKernel: cost is not (tasks x workers)")
        if cost_mode == 2 and (work.shape[0] < T or speed.shape[0] < W):
            raise ValueError("SolverKernel: work/speed do not match tasks/workers")
        if dist_mode == 1 and dist.shape[0] < W * W:
            raise ValueError("SolverKernel: distance is not (workers x workers)")
        self._keep = [dem, cap, fin_ptr, fin_idx, cost, work, speed, grp, dl, dist, adj_ptr,
                      adj_nbr, adj_vol, tclass, cmask, pinned, aa_group, aa_limit, aa_dom]
        self.c.T = T
        self.c.W = W
        self.c.R = R
        self.c.L = L
        self.c.dem = &dem[0]
        self.c.cap = &cap[0]
        self.c.fin_ptr = &fin_ptr[0]
        self.c.fin_idx = &fin_idx[0]
        self.c.cost_mode = cost_mode
        self.c.cost = &cost[0]
        self.c.work = &work[0]
        self.c.speed = &speed[0]
        self.c.dist_mode = dist_mode
        self.c.grp = &grp[0]
        self.c.dl = &dl[0]
        self.c.dfar = dfar
        self.c.dist = &dist[0]
        self.c.adj_ptr = &adj_ptr[0]
        self.c.adj_nbr = &adj_nbr[0]
        self.c.adj_vol = &adj_vol[0]
        self.c.tclass = &tclass[0]
        self.c.cmask = &cmask[0]
        self.c.pinned = &pinned[0]
        self._pinned = pinned
        self.c.aa_group = &aa_group[0]
        self.c.aa_limit = &aa_limit[0]
        self.c.aa_dom = &aa_dom[0]
        self.c.n_dom = n_dom
        self.c.eps = eps
        self.c.eps_obj = eps_obj
        self._assign = np.full(T, -1, dtype=np.int32)
        self._usage = np.zeros(W * R, dtype=np.float64)
        self._ntasks = np.zeros(W, dtype=np.int32)
        self._aacount = np.zeros(max(aa_limit.shape[0] * n_dom, 1), dtype=np.int32)
        self._head = np.full(W, -1, dtype=np.int32)
        self._nxt = np.full(T, -1, dtype=np.int32)
        self._prv = np.full(T, -1, dtype=np.int32)
        self._acc = np.zeros(n_groups + W, dtype=np.float64)
        self._net = np.zeros(W, dtype=np.float64)
        self._mass = np.zeros(n_groups + W, dtype=np.float64)
        self.c.assign = &self._assign[0]
        self.c.usage = &self._usage[0]
        self.c.n_tasks = &self._ntasks[0]
        self.c.aa_count = &self._aacount[0]
        self.c.head = &self._head[0]
        self.c.nxt = &self._nxt[0]
        self.c.prv = &self._prv[0]
        self.c.acc = &self._acc[0]
        self.c.wbase = n_groups
        self.c.net = &self._net[0]
        self.c.mass = &self._mass[0]
        if cost_mode == 2:
            order = np.lexsort((np.arange(W), -np.asarray(speed)[:W]))
        else:
            order = np.arange(W)
        self._by_speed = order.astype(np.int32)
        self.c.by_speed = &self._by_speed[0]
        self._dmin = np.asarray(dem)[:T * R].reshape(T, R).min(axis=0).astype(np.float64)
        self.c.dmin = &self._dmin[0]

    def clear(self):
        """Unplace every task."""
        cdef int64_t t
        with nogil:
            for t in range(self.c.T):
                _sol_unplace(&self.c, t)

    def set_assignment(self, const int32_t[::1] assign not None):
        """Replace the state by `assign` (-1: unplaced), unchecked: callers verify feasibility."""
        cdef int64_t t
        if assign.shape[0] != self.c.T:
            raise ValueError(f"assignment has {assign.shape[0]} entries, expected {self.c.T}")
        for t in range(self.c.T):
            if assign[t] < -1 or assign[t] >= self.c.W:
                raise ValueError(f"assignment[{t}] = {assign[t]} is not a worker or -1")
        self.clear()
        with nogil:
            for t in range(self.c.T):
                if assign[t] >= 0:
                    _sol_place(&self.c, t, assign[t])

    def place_pinned(self):
        """Place every pinned task on its worker, unchecked (feasibility is checked upstream)."""
        cdef int64_t t
        with nogil:
            for t in range(self.c.T):
                if self.c.pinned[t] >= 0 and self.c.assign[t] < 0:
                    _sol_place(&self.c, t, self.c.pinned[t])

    def greedy(self, const int64_t[::1] order not None, int rule):
        """Place the unplaced tasks of `order` by `rule`; -1 or the first task that did not fit."""
        cdef int64_t res, n = order.shape[0], i
        if n == 0:
            return -1
        for i in range(n):
            if order[i] < 0 or order[i] >= self.c.T:
                raise ValueError(f"order[{i}] = {order[i]} is not a task")
        with nogil:
            res = _sol_greedy(&self.c, &order[0], n, rule)
        return res

    def local_search(self, double time_limit, uint64_t seed, int64_t max_passes,
                     int64_t n_swap_workers=4):
        """Relocate/swap descent from the current (complete) assignment; (moves, passes, the
        objective change as tracked by the move deltas)."""
        perm = np.flatnonzero(np.asarray(self._pinned) < 0).astype(np.int64)
        cdef int64_t n = perm.shape[0], moves = 0, passes = 0, K = max(n_swap_workers, 1)
        if n == 0:
            return 0, 0, 0.0
        cdef int64_t[::1] pm = perm
        cdef int64_t[::1] cand = np.zeros(K, dtype=np.int64)
        cdef double[::1] cand_d = np.zeros(K, dtype=np.float64)
        cdef double deadline = _sol_now() + time_limit
        self.c.moved = 0.0
        with nogil:
            moves = _sol_local(&self.c, deadline, seed, max_passes, &pm[0], n, &cand[0],
                               &cand_d[0], K, &passes)
        return moves, passes, self.c.moved

    def iterated_local_search(self, double time_limit, uint64_t seed, int64_t stall,
                              int64_t n_swap_workers=4):
        """Local search with random kicks until the time limit; ends on the best assignment
        found. Returns (kick rounds, the objective change as tracked by the move deltas)."""
        perm = np.flatnonzero(np.asarray(self._pinned) < 0).astype(np.int64)
        cdef int64_t n = perm.shape[0], rounds = 0, K = max(n_swap_workers, 1)
        if n == 0:
            return 0, 0.0
        cdef int64_t[::1] pm = perm
        cdef int64_t[::1] cand = np.zeros(K, dtype=np.int64)
        cdef double[::1] cand_d = np.zeros(K, dtype=np.float64)
        cdef int32_t[::1] best = np.empty(self.c.T, dtype=np.int32)
        cdef double deadline = _sol_now() + time_limit
        with nogil:
            _sol_ils(&self.c, deadline, seed, &pm[0], n, &cand[0], &cand_d[0], K, &best[0],
                     stall, &rounds)
        return rounds, self.c.moved

    def pair_descent(self, double time_limit, uint64_t seed, int64_t max_nodes,
                     int64_t dp_cells=0, int64_t dp_work=0):
        """Re-split the free tasks of each pair of workers between the two, exactly, until a
        sweep over the pairs improves nothing or the time limit passes; for problems without
        traffic or anti-affinity (only the compute cost is counted), from a complete
        assignment. A pair is split by dynamic programming over the two free capacities when
        each has one finite resource with integer demands and the table has at most
        `dp_cells` cells and `dp_work` cells x tasks, else by branch and bound of at most
        `max_nodes` nodes (then exact only if the budget sufficed).
        Returns (pairs improved, objective change, B&B nodes, B&B searches cut short,
        dynamic programmes run)."""
        if self.c.R > _PAIR_MAX_R:
            raise ValueError(f"pair_descent handles at most {_PAIR_MAX_R} resources")
        if (np.asarray(self._assign) < 0).any():
            raise ValueError("pair_descent needs every task placed")
        cdef int64_t W = self.c.W, improved = 0
        busy = np.asarray(self._ntasks) > 0
        a, b = np.triu_indices(W, 1)
        keep = busy[a] | busy[b]
        pairs = (a[keep] * W + b[keep]).astype(np.int64)
        self.c.moved = 0.0
        if pairs.size == 0:
            return 0, 0.0, 0, 0, 0
        cdef int64_t[::1] pr = pairs
        cdef int64_t n = pairs.shape[0]
        cdef _pair_search s
        s.total_nodes = 0
        s.cut_short = 0
        s.dp_runs = 0
        s.dp_cells = max(dp_cells, 0)
        s.dp_work = max(dp_work, 0)
        # the scratch of the dynamic programme: allocated here, the kernel allocates nothing
        cdef double[::1] dp_f = np.empty(max(s.dp_cells, 1), dtype=np.float64)
        cdef uint8_t[::1] dp_side = np.empty(max(s.dp_work, 1), dtype=np.uint8)
        s.dp_f = &dp_f[0] if s.dp_cells > 0 and s.dp_work > 0 else NULL
        s.dp_side = &dp_side[0]
        cdef double deadline = _sol_now() + time_limit
        with nogil:
            improved = _sol_pair_descent(&self.c, deadline, seed, max_nodes, &pr[0], n, &s)
        return improved, self.c.moved, s.total_nodes, s.cut_short, s.dp_runs

    def objective(self, const int32_t[::1] src not None, const int32_t[::1] dst not None,
                  const double[::1] vol not None):
        """(compute cost, network cost) of the current complete assignment."""
        cdef int64_t t, e
        cdef double cc = 0.0, nc = 0.0
        with nogil:
            for t in range(self.c.T):
                cc += _sol_ccost(&self.c, t, self.c.assign[t])
            for e in range(src.shape[0]):
                nc += vol[e] * _sol_dist(&self.c, self.c.assign[src[e]], self.c.assign[dst[e]])
        return cc, nc

    def min_cost(self):
        """Per task, the least compute cost over its allowed workers (a capacity-free bound)."""
        out = np.empty(self.c.T, dtype=np.float64)
        cdef double[::1] o = out
        cdef int64_t t, w
        cdef double m, v
        cdef double vmax = 0.0
        for w in range(self.c.W):
            if self.c.cost_mode == 2 and self.c.speed[w] > vmax:
                vmax = self.c.speed[w]
        with nogil:
            for t in range(self.c.T):
                if self.c.cost_mode != 1 and self.c.pinned[t] < 0 and self.c.tclass[t] < 0:
                    # every worker allowed: the fastest is the cheapest
                    o[t] = self.c.work[t] / vmax if self.c.cost_mode == 2 else 0.0
                    continue
                m = INFINITY
                for w in range(self.c.W):
                    if _sol_allowed(&self.c, t, w):
                        v = _sol_ccost(&self.c, t, w)
                        if v < m:
                            m = v
                o[t] = m
        return out

    def lagrangian_bound(self, const int64_t[::1] reps not None, const double[::1] mult not None,
                         double upper, int64_t iterations, double time_limit,
                         int64_t patience=20):
        """Lagrangian bound of the compute cost with every finite capacity relaxed
        (solver_bound.pyx): tasks `reps` (one per kind) counted `mult` times each. Returns
        (bound, multipliers as a dense (W, R) array, 0 where the capacity is infinite,
        iterations run, each kind's worker in the relaxed choice of the best multipliers)."""
        cdef int64_t K = reps.shape[0], k, n = self.c.fin_ptr[self.c.W], done = 0, w, q
        if mult.shape[0] != K:
            raise ValueError("lagrangian_bound: reps and mult differ in length")
        for k in range(K):
            if reps[k] < 0 or reps[k] >= self.c.T:
                raise ValueError(f"reps[{k}] = {reps[k]} is not a task")
        cdef double[::1] lam = np.zeros(max(n, 1), dtype=np.float64)
        cdef double[::1] best_lam = np.zeros(max(n, 1), dtype=np.float64)
        cdef double[::1] grad = np.zeros(max(n, 1), dtype=np.float64)
        cdef int32_t[::1] choice = np.full(max(K, 1), -1, dtype=np.int32)
        cdef double deadline = _sol_now() + time_limit, best = 0.0
        if K > 0:
            with nogil:
                best = _sol_lagrangian(&self.c, &reps[0], &mult[0], K, upper, iterations,
                                       max(patience, 1), deadline, &lam[0], &best_lam[0],
                                       &grad[0], &choice[0], &done)
                # the relaxed choice of the best multipliers (what the reduced costs suggest)
                _sol_lagr_eval(&self.c, &reps[0], &mult[0], K, &best_lam[0], &grad[0],
                               &choice[0])
        dense = np.zeros((self.c.W, self.c.R), dtype=np.float64)
        for w in range(self.c.W):
            for q in range(self.c.fin_ptr[w], self.c.fin_ptr[w + 1]):
                dense[w, self.c.fin_idx[q]] = best_lam[q]
        return best, dense, done, np.asarray(choice)[:K].copy()

    @property
    def assignment(self):
        return np.asarray(self._assign).copy()

    @property
    def usage(self):
        return np.asarray(self._usage).reshape(self.c.W, self.c.R).copy()
