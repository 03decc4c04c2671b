# Placement solver kernels: traffic CSR, construction orders, greedy construction, local search
# (relocate + swap with incremental deltas) and objective evaluation.
#
# Everything works on one `_sol_ctx` of raw pointers into arrays that a `SolverKernel` keeps
# alive, so the nogil helpers take a single argument and carry no memoryview overhead.
# Validation lives in pydispatch/_solver_problem.py: the kernels trust their input (shapes,
# finite non-negative demand, symmetric distance, prefix-consistent topology groups).
#
# Distances come in two modes:
#   dist_mode 1: a dense symmetric (W, W) matrix.
#   dist_mode 0: topology levels. grp[w*L + l] is the id (an offset into `acc`) of worker w's
#                group at level l, levels ordered coarse -> fine, and ids are *prefix* ids (two
#                workers share level l's group only if they share every coarser level too).
#                dist(a, b) = dfar - sum(dl[l] for every shared level l) - dl[L] if a == b,
#                so with dl >= 0 sharing more levels never costs more.
# The topology mode lets the network cost of a task on *every* worker be computed in
# O(deg * L + W * L): accumulate the placed neighbours' volume per group, then read it back.

from libc.math cimport INFINITY
from libc.string cimport memcpy, memset
from libc.stdlib cimport qsort
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from _typedefs cimport int32_t, int64_t, uint8_t, uint64_t

import numpy as _sol_np


cdef struct _sol_ctx:
    int64_t T
    int64_t W
    int64_t R
    int64_t L
    const double* dem          # (T, R)
    const double* cap          # (W, R), may hold +inf
    const int32_t* fin_ptr     # (W + 1,) CSR of the finite capacities of each worker
    const int32_t* fin_idx
    int cost_mode              # 0 none, 1 dense (T, W), 2 work[t] / speed[w]
    const double* cost
    const double* work
    const double* speed
    int dist_mode              # 0 topology levels, 1 dense (W, W)
    const int32_t* grp         # (W, L)
    const double* dl           # (L + 1,)
    double dfar
    const double* dist         # (W, W)
    const int64_t* adj_ptr     # (T + 1,) symmetric traffic CSR, no self loops
    const int32_t* adj_nbr
    const double* adj_vol
    const int32_t* tclass      # (T,) allowed-worker class, -1: any worker
    const uint8_t* cmask       # (C, W)
    const int32_t* pinned      # (T,) -1: free
    const int32_t* aa_group    # (T,) anti-affinity group, -1: none
    const int32_t* aa_limit    # (G,)
    const int32_t* aa_dom      # (W,) anti-affinity domain of each worker
    int64_t n_dom
    double eps                 # capacity slack (float accumulation)
    double eps_obj             # smallest improvement worth a move
    # mutable state; invariant between calls: usage, n_tasks, aa_count and the per-worker
    # lists agree with assign (assign[t] == -1 means unplaced and counted nowhere).
    int32_t* assign
    double* usage              # (W, R)
    int32_t* n_tasks           # (W,)
    int32_t* aa_count          # (G, n_dom)
    int32_t* head              # (W,) first task on each worker, -1: none
    int32_t* nxt               # (T,) doubly linked lists of the tasks on each worker
    int32_t* prv
    double* acc                # (n_groups + W,) all zero between calls
    int64_t wbase              # offset of the worker level in acc
    double* net                # (W,) scratch
    double uvol                # set by _sol_net_all: t's volume to still unplaced neighbours
    double* mass               # (n_groups + W,) placed tasks with traffic per group (greedy)
    double mass_tot
    double moved               # sum of the deltas of the moves made (objective tracking)


cdef inline double _sol_now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + 1e-9 * <double>ts.tv_nsec


cdef inline uint64_t _sol_rand(uint64_t* s) noexcept nogil:
    # splitmix64: tiny, seedable, good enough for move orders
    s[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = s[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline double _sol_ccost(const _sol_ctx* c, int64_t t, int64_t w) noexcept nogil:
    if c.cost_mode == 1:
        return c.cost[t * c.W + w]
    if c.cost_mode == 2:
        return c.work[t] / c.speed[w]
    return 0.0


cdef inline double _sol_dist(const _sol_ctx* c, int64_t a, int64_t b) noexcept nogil:
    if c.dist_mode == 1:
        return c.dist[a * c.W + b]
    cdef double d = c.dfar
    cdef int64_t l
    for l in range(c.L):
        # prefix ids: the first level that differs ends the shared path
        if c.grp[a * c.L + l] != c.grp[b * c.L + l]:
            return d
        d -= c.dl[l]
    if a != b:
        return d
    return d - c.dl[c.L]


cdef inline bint _sol_allowed(const _sol_ctx* c, int64_t t, int64_t w) noexcept nogil:
    if c.pinned[t] >= 0:
        return c.pinned[t] == w
    cdef int32_t cl = c.tclass[t]
    if cl < 0:
        return True
    return c.cmask[cl * c.W + w] != 0


cdef inline bint _sol_fits(const _sol_ctx* c, int64_t t, int64_t w) noexcept nogil:
    # only the finite capacities of w can be exceeded
    cdef int64_t k, r
    for k in range(c.fin_ptr[w], c.fin_ptr[w + 1]):
        r = c.fin_idx[k]
        if c.usage[w * c.R + r] + c.dem[t * c.R + r] > c.cap[w * c.R + r] + c.eps:
            return False
    return True


cdef inline bint _sol_swap_fits(const _sol_ctx* c, int64_t t, int64_t u, int64_t w) noexcept nogil:
    # t enters w while u leaves it
    cdef int64_t k, r
    for k in range(c.fin_ptr[w], c.fin_ptr[w + 1]):
        r = c.fin_idx[k]
        if (c.usage[w * c.R + r] - c.dem[u * c.R + r] + c.dem[t * c.R + r]
                > c.cap[w * c.R + r] + c.eps):
            return False
    return True


cdef inline bint _sol_aa_ok(const _sol_ctx* c, int64_t t, int64_t w, int64_t leaving) noexcept nogil:
    # would t on w keep its group within the limit? `leaving` leaves w in the same move (a swap)
    cdef int32_t g = c.aa_group[t]
    if g < 0:
        return True
    cdef int64_t dom = c.aa_dom[w]
    cdef int64_t n = c.aa_count[g * c.n_dom + dom] + 1
    if c.assign[t] >= 0 and c.aa_dom[c.assign[t]] == dom:
        n -= 1
    if leaving >= 0 and c.aa_group[leaving] == g and c.aa_dom[c.assign[leaving]] == dom:
        n -= 1
    return n <= c.aa_limit[g]


cdef inline void _sol_place(_sol_ctx* c, int64_t t, int64_t w) noexcept nogil:
    cdef int64_t r
    c.assign[t] = <int32_t>w
    for r in range(c.R):
        c.usage[w * c.R + r] += c.dem[t * c.R + r]
    c.n_tasks[w] += 1
    if c.aa_group[t] >= 0:
        c.aa_count[c.aa_group[t] * c.n_dom + c.aa_dom[w]] += 1
    c.prv[t] = -1
    c.nxt[t] = c.head[w]
    if c.head[w] >= 0:
        c.prv[c.head[w]] = <int32_t>t
    c.head[w] = <int32_t>t


cdef inline void _sol_unplace(_sol_ctx* c, int64_t t) noexcept nogil:
    cdef int64_t r, w = c.assign[t]
    if w < 0:
        return
    for r in range(c.R):
        c.usage[w * c.R + r] -= c.dem[t * c.R + r]
    c.n_tasks[w] -= 1
    if c.aa_group[t] >= 0:
        c.aa_count[c.aa_group[t] * c.n_dom + c.aa_dom[w]] -= 1
    if c.prv[t] >= 0:
        c.nxt[c.prv[t]] = c.nxt[t]
    else:
        c.head[w] = c.nxt[t]
    if c.nxt[t] >= 0:
        c.prv[c.nxt[t]] = c.prv[t]
    c.assign[t] = -1


cdef void _sol_net_all(_sol_ctx* c, int64_t t) noexcept nogil:
    # net[w] = sum over placed neighbours v of t of vol * dist(w, assign[v])
    cdef int64_t k, w, x, l, L = c.L
    cdef double vol, s, tot = 0.0
    cdef const double* row
    memset(c.net, 0, c.W * sizeof(double))
    c.uvol = 0.0
    if c.dist_mode == 1:
        for k in range(c.adj_ptr[t], c.adj_ptr[t + 1]):
            x = c.assign[c.adj_nbr[k]]
            if x < 0:
                c.uvol += c.adj_vol[k]
                continue
            vol = c.adj_vol[k]
            row = c.dist + x * c.W   # symmetric: dist(w, x) == dist(x, w)
            for w in range(c.W):
                c.net[w] += vol * row[w]
        return
    for k in range(c.adj_ptr[t], c.adj_ptr[t + 1]):
        x = c.assign[c.adj_nbr[k]]
        if x < 0:
            c.uvol += c.adj_vol[k]
            continue
        vol = c.adj_vol[k]
        tot += vol
        for l in range(L):
            c.acc[c.grp[x * L + l]] += vol
        c.acc[c.wbase + x] += vol
    if tot == 0.0:
        return
    for w in range(c.W):
        s = tot * c.dfar
        for l in range(L):
            s -= c.dl[l] * c.acc[c.grp[w * L + l]]
        s -= c.dl[L] * c.acc[c.wbase + w]
        c.net[w] = s
    # restore the all-zero invariant of acc (assign has not changed since the accumulation)
    for k in range(c.adj_ptr[t], c.adj_ptr[t + 1]):
        x = c.assign[c.adj_nbr[k]]
        if x < 0:
            continue
        for l in range(L):
            c.acc[c.grp[x * L + l]] = 0.0
        c.acc[c.wbase + x] = 0.0


cdef inline double _sol_util(const _sol_ctx* c, int64_t w) noexcept nogil:
    # Flink's "least utilisation": the fullest finite dimension of the worker
    cdef int64_t k, r
    cdef double u = 0.0, v
    for k in range(c.fin_ptr[w], c.fin_ptr[w + 1]):
        r = c.fin_idx[k]
        if c.cap[w * c.R + r] > 0.0:
            v = c.usage[w * c.R + r] / c.cap[w * c.R + r]
            if v > u:
                u = v
    return u


cdef inline double _sol_rel_demand(const _sol_ctx* c, int64_t t, int64_t w) noexcept nogil:
    # how much of w's finite capacity t would take: best fit for tight packings (GAP)
    cdef int64_t k, r
    cdef double u = 0.0, v, cp
    for k in range(c.fin_ptr[w], c.fin_ptr[w + 1]):
        r = c.fin_idx[k]
        cp = c.cap[w * c.R + r]
        if c.dem[t * c.R + r] > 0.0:
            v = c.dem[t * c.R + r] / cp if cp > 0.0 else INFINITY
            if v > u:
                u = v
    return u


# construction rules
cdef enum:
    _SOL_LEAST_COST = 0
    _SOL_FIRST_FIT = 1
    _SOL_LEAST_UTIL = 2
    _SOL_FEWEST_TASKS = 3
    _SOL_BEST_FIT = 4


cdef inline void _sol_mass_add(_sol_ctx* c, int64_t t, int64_t w) noexcept nogil:
    cdef int64_t l
    if c.dist_mode == 1 or c.adj_ptr[t + 1] == c.adj_ptr[t]:
        return
    for l in range(c.L):
        c.mass[c.grp[w * c.L + l]] += 1.0
    c.mass[c.wbase + w] += 1.0
    c.mass_tot += 1.0


cdef void _sol_lookahead(_sol_ctx* c) noexcept nogil:
    # The edges to unplaced neighbours will cost about uvol x the distance to where the job's
    # tasks are so far: without this term the first tasks of a shuffle scatter by compute cost
    # (each single edge is light) and the job ends up spread over every zone.
    cdef int64_t w, l, L = c.L
    cdef double e
    if c.uvol == 0.0 or c.mass_tot == 0.0 or c.dist_mode == 1:
        return
    for w in range(c.W):
        e = c.mass_tot * c.dfar
        for l in range(L):
            e -= c.dl[l] * c.mass[c.grp[w * L + l]]
        e -= c.dl[L] * c.mass[c.wbase + w]
        c.net[w] += c.uvol * e / c.mass_tot


cdef int64_t _sol_greedy(_sol_ctx* c, const int64_t* order, int64_t n, int rule) noexcept nogil:
    # Places the unplaced tasks of `order` one by one; returns -1, or the first task that found
    # no feasible worker (the caller decides whether that proves anything: it does not).
    cdef int64_t i, t, w, best
    cdef double v, bestv
    memset(c.mass, 0, (c.wbase + c.W) * sizeof(double))
    c.mass_tot = 0.0
    for t in range(c.T):
        if c.assign[t] >= 0:
            _sol_mass_add(c, t, c.assign[t])
    for i in range(n):
        t = order[i]
        if c.assign[t] >= 0:
            continue
        if rule == _SOL_LEAST_COST:
            _sol_net_all(c, t)
            _sol_lookahead(c)
        best = -1
        bestv = INFINITY
        for w in range(c.W):
            if not _sol_allowed(c, t, w):
                continue
            if rule == _SOL_LEAST_COST:
                v = _sol_ccost(c, t, w) + c.net[w]
            elif rule == _SOL_FIRST_FIT:
                v = <double>w
            elif rule == _SOL_LEAST_UTIL:
                v = _sol_util(c, w)
            elif rule == _SOL_FEWEST_TASKS:
                v = <double>c.n_tasks[w]
            else:
                v = _sol_rel_demand(c, t, w) + 1e-9 * _sol_ccost(c, t, w)
            # ties keep the lowest index: deterministic
            if (best < 0 or v < bestv) and _sol_fits(c, t, w) and _sol_aa_ok(c, t, w, -1):
                best = w
                bestv = v
                if rule == _SOL_FIRST_FIT:
                    break
        if best < 0:
            return t
        _sol_place(c, t, best)
        _sol_mass_add(c, t, best)
    return -1


cdef double _sol_move_delta(_sol_ctx* c, int64_t u, int64_t a, int64_t t, double* vtu) noexcept nogil:
    # change in cost when u moves from its worker b to a, every other task staying put;
    # also returns the volume between u and t (for the swap correction)
    cdef int64_t k, v, b = c.assign[u], x
    cdef double d = _sol_ccost(c, u, a) - _sol_ccost(c, u, b)
    vtu[0] = 0.0
    for k in range(c.adj_ptr[u], c.adj_ptr[u + 1]):
        v = c.adj_nbr[k]
        if v == t:
            vtu[0] += c.adj_vol[k]
        x = c.assign[v]
        d += c.adj_vol[k] * (_sol_dist(c, a, x) - _sol_dist(c, b, x))
    return d


cdef int64_t _sol_local(_sol_ctx* c, double deadline, uint64_t seed, int64_t max_passes,
                        int64_t* perm, int64_t n, int64_t* cand, double* cand_d,
                        int64_t K, int64_t* passes_out) noexcept nogil:
    # First-improvement descent over relocate moves, then swaps with the tasks on the K workers
    # that t would like most; stops at a local optimum, after max_passes, or at the deadline.
    # Returns the number of moves made. Every task must be placed on entry.
    cdef uint64_t rng = seed
    cdef int64_t p, i, j, t, a, w, b, u, nc, q, best_w, moves = 0, sw_u, sw_b
    cdef double cur, d, best_d, du, vtu, tot, sw_d
    cdef int64_t improved
    passes_out[0] = 0
    for p in range(max_passes):
        improved = 0
        for i in range(n - 1, 0, -1):
            j = <int64_t>(_sol_rand(&rng) % <uint64_t>(i + 1))
            perm[i], perm[j] = perm[j], perm[i]
        for i in range(n):
            if (i & 31) == 0 and _sol_now() > deadline:
                passes_out[0] = p
                return moves
            t = perm[i]
            a = c.assign[t]
            _sol_net_all(c, t)
            cur = _sol_ccost(c, t, a) + c.net[a]
            best_w = -1
            best_d = -c.eps_obj
            nc = 0
            for w in range(c.W):
                if w == a or not _sol_allowed(c, t, w):
                    continue
                d = _sol_ccost(c, t, w) + c.net[w] - cur
                if d < best_d and _sol_fits(c, t, w) and _sol_aa_ok(c, t, w, -1):
                    best_d = d
                    best_w = w
                elif nc < K or d < cand_d[nc - 1]:
                    # keep the K most attractive workers sorted by delta, for swaps
                    q = nc if nc < K else K - 1
                    while q > 0 and cand_d[q - 1] > d:
                        cand[q] = cand[q - 1]
                        cand_d[q] = cand_d[q - 1]
                        q -= 1
                    cand[q] = w
                    cand_d[q] = d
                    if nc < K:
                        nc += 1
            if best_w >= 0:
                _sol_unplace(c, t)
                _sol_place(c, t, best_w)
                c.moved += best_d
                moves += 1
                improved += 1
                continue
            sw_u = -1
            sw_b = -1
            sw_d = -c.eps_obj
            for q in range(nc):
                b = cand[q]
                u = c.head[b]
                while u >= 0:
                    if (c.pinned[u] < 0 and _sol_allowed(c, u, a)
                            and _sol_swap_fits(c, u, t, a) and _sol_swap_fits(c, t, u, b)
                            and _sol_aa_ok(c, t, b, u) and _sol_aa_ok(c, u, a, t)):
                        du = _sol_move_delta(c, u, a, t, &vtu)
                        # the t-u edge was counted as if the other stayed: it does not change
                        tot = cand_d[q] + du + vtu * (2.0 * _sol_dist(c, a, b)
                                                      - _sol_dist(c, a, a) - _sol_dist(c, b, b))
                        if tot < sw_d:
                            sw_d = tot
                            sw_u = u
                            sw_b = b
                    u = c.nxt[u]
            if sw_u >= 0:
                _sol_unplace(c, t)
                _sol_unplace(c, sw_u)
                _sol_place(c, t, sw_b)
                _sol_place(c, sw_u, a)
                c.moved += sw_d
                moves += 1
                improved += 1
        passes_out[0] = p + 1
        if improved == 0:
            break
    return moves


cdef bint _sol_kick(_sol_ctx* c, uint64_t* rng, const int64_t* perm, int64_t n) noexcept nogil:
    # One random feasible move (relocate, else swap), whatever its cost: the perturbation of
    # the iterated local search. False when ten tries found nothing feasible.
    cdef int64_t tries, t, a, w, u
    cdef double vtu, vut, d
    for tries in range(10):
        t = perm[<int64_t>(_sol_rand(rng) % <uint64_t>n)]
        a = c.assign[t]
        w = <int64_t>(_sol_rand(rng) % <uint64_t>c.W)
        if w == a or not _sol_allowed(c, t, w):
            continue
        if _sol_fits(c, t, w) and _sol_aa_ok(c, t, w, -1):
            c.moved += _sol_move_delta(c, t, w, -1, &vtu)
            _sol_unplace(c, t)
            _sol_place(c, t, w)
            return True
        u = c.head[w]
        while u >= 0:
            if (c.pinned[u] < 0 and _sol_allowed(c, u, a) and _sol_swap_fits(c, u, t, a)
                    and _sol_swap_fits(c, t, u, w) and _sol_aa_ok(c, t, w, u)
                    and _sol_aa_ok(c, u, a, t)):
                d = _sol_move_delta(c, t, w, u, &vtu) + _sol_move_delta(c, u, a, t, &vut)
                d += vtu * (2.0 * _sol_dist(c, a, w) - _sol_dist(c, a, a) - _sol_dist(c, w, w))
                c.moved += d
                _sol_unplace(c, t)
                _sol_unplace(c, u)
                _sol_place(c, t, w)
                _sol_place(c, u, a)
                return True
            u = c.nxt[u]
    return False


cdef void _sol_restore(_sol_ctx* c, const int32_t* assign) noexcept nogil:
    cdef int64_t t
    for t in range(c.T):
        _sol_unplace(c, t)
    for t in range(c.T):
        _sol_place(c, t, assign[t])


cdef int64_t _sol_ils(_sol_ctx* c, double deadline, uint64_t seed, int64_t* perm, int64_t n,
                      int64_t* cand, double* cand_d, int64_t K, int32_t* best,
                      int64_t stall, int64_t* rounds_out) noexcept nogil:
    # Iterated local search: descend, then kick a few random tasks and descend again, keeping
    # the best assignment (in `best`) and restarting from it whenever a round ends worse.
    # Objective values are tracked through the move deltas (c.moved), relative to the start.
    # Ends at the deadline or after `stall` rounds without improvement: then, and only then,
    # the result depends on the seed alone.
    cdef uint64_t rng = seed ^ 0x5DEECE66DULL
    cdef int64_t passes, rounds = 0, k, strength, t, since = 0
    cdef double best_val
    c.moved = 0.0
    _sol_local(c, deadline, seed, 1000000, perm, n, cand, cand_d, K, &passes)
    best_val = c.moved
    for t in range(c.T):
        best[t] = c.assign[t]
    while since < stall and _sol_now() < deadline:
        rounds += 1
        since += 1
        strength = 2 + <int64_t>(_sol_rand(&rng) % <uint64_t>(2 + n // 20))
        for k in range(strength):
            _sol_kick(c, &rng, perm, n)
        _sol_local(c, deadline, _sol_rand(&rng), 1000000, perm, n, cand, cand_d, K, &passes)
        if c.moved < best_val - c.eps_obj:
            since = 0
            best_val = c.moved
            for t in range(c.T):
                best[t] = c.assign[t]
        elif c.moved > best_val + c.eps_obj:
            _sol_restore(c, best)
            c.moved = best_val
    _sol_restore(c, best)
    rounds_out[0] = rounds
    return rounds


def sol_build_csr(int64_t n, const int32_t[::1] src not None, const int32_t[::1] dst not None,
                  const double[::1] vol not None):
    """Symmetric CSR (ptr, nbr, vol) of a traffic edge list; self loops dropped (they cost 0)."""
    cdef int64_t E = src.shape[0], e, i, s, d
    ptr = _sol_np.zeros(n + 1, dtype=_sol_np.int64)
    cdef int64_t[::1] p = ptr
    with nogil:
        for e in range(E):
            if src[e] != dst[e]:
                p[src[e] + 1] += 1
                p[dst[e] + 1] += 1
        for i in range(n):
            p[i + 1] += p[i]
    nbr = _sol_np.empty(max(p[n], 1), dtype=_sol_np.int32)
    avol = _sol_np.empty(max(p[n], 1), dtype=_sol_np.float64)
    fill = ptr[:n].copy()
    cdef int32_t[::1] nb = nbr
    cdef double[::1] av = avol
    cdef int64_t[::1] f = fill
    with nogil:
        for e in range(E):
            s = src[e]
            d = dst[e]
            if s == d:
                continue
            nb[f[s]] = <int32_t>d
            av[f[s]] = vol[e]
            f[s] += 1
            nb[f[d]] = <int32_t>s
            av[f[d]] = vol[e]
            f[d] += 1
    # merge parallel edges in place (the network bound counts distinct neighbours): where[v]
    # is v's slot in the current task's compacted row, valid while owner[v] == that task
    cdef int64_t[::1] where = _sol_np.empty(max(n, 1), dtype=_sol_np.int64)
    cdef int64_t[::1] owner = _sol_np.full(max(n, 1), -1, dtype=_sol_np.int64)
    cdef int64_t k, m = 0, start
    with nogil:
        for i in range(n):
            start = p[i]
            p[i] = m
            for k in range(start, p[i + 1]):
                d = nb[k]
                if owner[d] == i:
                    av[where[d]] += av[k]
                    continue
                owner[d] = i
                where[d] = m
                nb[m] = <int32_t>d
                av[m] = av[k]
                m += 1
        p[n] = m
    return ptr, nbr[:max(m, 1)].copy(), avol[:max(m, 1)].copy()


def sol_traffic_order(const int64_t[::1] ptr not None, const int32_t[::1] nbr not None, const double[::1] vol not None,
                      const int64_t[::1] seeds not None):
    """Construction order: breadth-first over the traffic graph from the seeds (in their order),
    following heavy chains depth-first, so that a task is placed right after the tasks it talks
    to most (a forward edge's two ends one after the other)."""
    cdef int64_t T = ptr.shape[0] - 1, n = seeds.shape[0], i, s, t, k, v, nx, qh = 0, qt = 0, m = 0
    cdef double best
    out = _sol_np.empty(T, dtype=_sol_np.int64)
    cdef int64_t[::1] o = out
    cdef int64_t[::1] queue = _sol_np.empty(T, dtype=_sol_np.int64)
    cdef uint8_t[::1] seen = _sol_np.zeros(T, dtype=_sol_np.uint8)
    cdef double[::1] vmax = _sol_np.zeros(T, dtype=_sol_np.float64)
    with nogil:
        for t in range(T):
            for k in range(ptr[t], ptr[t + 1]):
                if vol[k] > vmax[t]:
                    vmax[t] = vol[k]
        for i in range(n):
            s = seeds[i]
            if seen[s]:
                continue
            seen[s] = 1
            queue[qt] = s
            qt += 1
            while qh < qt:
                t = queue[qh]
                qh += 1
                while t >= 0:
                    o[m] = t
                    m += 1
                    # heavy partner: an edge that is at least half the heaviest of both its ends
                    nx = -1
                    best = 0.0
                    for k in range(ptr[t], ptr[t + 1]):
                        v = nbr[k]
                        if (not seen[v] and vol[k] > best and 2.0 * vol[k] >= vmax[v]
                                and 2.0 * vol[k] >= vmax[t]):
                            best = vol[k]
                            nx = v
                    if nx >= 0:
                        seen[nx] = 1
                    for k in range(ptr[t], ptr[t + 1]):
                        v = nbr[k]
                        if not seen[v]:
                            seen[v] = 1
                            queue[qt] = v
                            qt += 1
                    t = nx
    return out[:m]


cdef struct _sol_item:
    double ratio
    double vol
    double w


cdef int _sol_cmp_item(const void* a, const void* b) noexcept nogil:
    cdef double x = (<const _sol_item*>a).ratio, y = (<const _sol_item*>b).ratio
    return (x < y) - (x > y)


def sol_network_bound(const int64_t[::1] ptr not None, const int32_t[::1] nbr not None, const double[::1] vol not None,
                      const double[::1] dem not None, int64_t R, const double[::1] capl not None,
                      const double[::1] saving not None, double dfar):
    """Twice a lower bound on the network cost.

    For a task t, the neighbours sharing its group at level i (0: its worker, then the topology
    levels fine -> coarse) must fit in that group beside t, so for every resource k their
    volume is at most a fractional knapsack of capacity capl[i, k] - dem[t, k] (k == R: a task
    count, weight 1 each). t's edges cost V_t dfar - sum_i saving[i] x (volume sharing level i),
    and each edge is counted from both of its ends."""
    cdef int64_t T = ptr.shape[0] - 1, L1 = saving.shape[0], t, i, k, j, n, idx, m, q
    cdef int64_t maxdeg = 16
    cdef double total = 0.0, V, wt, cap, cw, cv, fk, r0, v, w, ratio
    for t in range(T):
        if ptr[t + 1] - ptr[t] > maxdeg:
            maxdeg = ptr[t + 1] - ptr[t]
    items_arr = _sol_np.zeros(maxdeg * 3, dtype=_sol_np.float64)
    cdef double[::1] items_mv = items_arr
    cdef _sol_item* items = <_sol_item*>&items_mv[0]
    cdef double[::1] share = _sol_np.zeros(L1, dtype=_sol_np.float64)
    with nogil:
        for t in range(T):
            n = ptr[t + 1] - ptr[t]
            if n == 0:
                continue
            V = 0.0
            for j in range(n):
                V += vol[ptr[t] + j]
            for i in range(L1):
                share[i] = V
            for k in range(R + 1):
                if capl[(L1 - 1) * (R + 1) + k] == INFINITY:
                    continue  # no limit even at the coarsest level
                wt = dem[t * R + k] if k < R else 1.0
                # a task's edges usually come in a few kinds (a forward edge, a shuffle's
                # many equal edges): equal ratios merge into one item, exactly (fractional),
                # and only a task with many kinds pays for a sort
                m = 0
                for j in range(n):
                    v = vol[ptr[t] + j]
                    w = dem[nbr[ptr[t] + j] * R + k] if k < R else 1.0
                    ratio = v / w if w > 0.0 else INFINITY
                    for q in range(m):
                        if items[q].ratio == ratio:
                            items[q].vol += v
                            items[q].w += w
                            break
                    else:
                        if m == 16:
                            m = -1
                            break
                        items[m].ratio = ratio
                        items[m].vol = v
                        items[m].w = w
                        m += 1
                if m < 0:
                    for j in range(n):
                        items[j].vol = vol[ptr[t] + j]
                        items[j].w = dem[nbr[ptr[t] + j] * R + k] if k < R else 1.0
                        items[j].ratio = (items[j].vol / items[j].w if items[j].w > 0.0
                                          else INFINITY)
                    m = n
                qsort(items, m, sizeof(_sol_item), _sol_cmp_item)
                idx = 0
                cw = 0.0
                cv = 0.0
                for i in range(L1):
                    cap = capl[i * (R + 1) + k] - wt
                    if cap == INFINITY:
                        continue
                    if cap < 0.0:
                        share[i] = 0.0
                        continue
                    # capacities grow with the level: the walk resumes where it stopped
                    while idx < m and cw + items[idx].w <= cap:
                        cw += items[idx].w
                        cv += items[idx].vol
                        idx += 1
                    fk = cv
                    if idx < m and items[idx].w > 0.0:
                        fk += items[idx].vol * (cap - cw) / items[idx].w
                    if fk < share[i]:
                        share[i] = fk
            r0 = V * dfar
            for i in range(L1):
                r0 -= saving[i] * share[i]
            total += r0
    return total


cdef class SolverKernel:
    """Native placement state over one validated problem (built by pydispatch._solver_native)."""

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

    def __init__(self, int64_t T, int64_t W, int64_t R, int64_t L,
                 const double[::1] dem not None, const double[::1] cap not None,
                 const int32_t[::1] fin_ptr not None, const int32_t[::1] fin_idx not None,
                 int cost_mode, const double[::1] cost not None, const double[::1] work not None,
                 const double[::1] speed not None,
                 int dist_mode, const int32_t[::1] grp not None, const double[::1] dl not None, double dfar,
                 const double[::1] dist not None,
                 const int64_t[::1] adj_ptr not None, const int32_t[::1] adj_nbr not None,
                 const double[::1] adj_vol not None,
                 const int32_t[::1] tclass not None, const uint8_t[::1] cmask not None, const int32_t[::1] pinned not None,
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
        self._assign = _sol_np.full(T, -1, dtype=_sol_np.int32)
        self._usage = _sol_np.zeros(W * R, dtype=_sol_np.float64)
        self._ntasks = _sol_np.zeros(W, dtype=_sol_np.int32)
        self._aacount = _sol_np.zeros(max(aa_limit.shape[0] * n_dom, 1), dtype=_sol_np.int32)
        self._head = _sol_np.full(W, -1, dtype=_sol_np.int32)
        self._nxt = _sol_np.full(T, -1, dtype=_sol_np.int32)
        self._prv = _sol_np.full(T, -1, dtype=_sol_np.int32)
        self._acc = _sol_np.zeros(n_groups + W, dtype=_sol_np.float64)
        self._net = _sol_np.zeros(W, dtype=_sol_np.float64)
        self._mass = _sol_np.zeros(n_groups + W, dtype=_sol_np.float64)
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
        """Relocate/swap descent from the current (complete) assignment; (moves, passes)."""
        perm = _sol_np.flatnonzero(_sol_np.asarray(self._pinned) < 0).astype(_sol_np.int64)
        cdef int64_t n = perm.shape[0], moves = 0, passes = 0, K = max(n_swap_workers, 1)
        if n == 0:
            return 0, 0
        cdef int64_t[::1] pm = perm
        cdef int64_t[::1] cand = _sol_np.zeros(K, dtype=_sol_np.int64)
        cdef double[::1] cand_d = _sol_np.zeros(K, dtype=_sol_np.float64)
        cdef double deadline = _sol_now() + time_limit
        with nogil:
            moves = _sol_local(&self.c, deadline, seed, max_passes, &pm[0], n, &cand[0],
                               &cand_d[0], K, &passes)
        return moves, passes

    def iterated_local_search(self, double time_limit, uint64_t seed, int64_t stall,
                              int64_t n_swap_workers=4):
        """Local search with random kicks until the time limit; ends on the best assignment
        found. Returns the number of kick rounds."""
        perm = _sol_np.flatnonzero(_sol_np.asarray(self._pinned) < 0).astype(_sol_np.int64)
        cdef int64_t n = perm.shape[0], rounds = 0, K = max(n_swap_workers, 1)
        if n == 0:
            return 0
        cdef int64_t[::1] pm = perm
        cdef int64_t[::1] cand = _sol_np.zeros(K, dtype=_sol_np.int64)
        cdef double[::1] cand_d = _sol_np.zeros(K, dtype=_sol_np.float64)
        cdef int32_t[::1] best = _sol_np.empty(self.c.T, dtype=_sol_np.int32)
        cdef double deadline = _sol_now() + time_limit
        with nogil:
            _sol_ils(&self.c, deadline, seed, &pm[0], n, &cand[0], &cand_d[0], K, &best[0],
                     stall, &rounds)
        return rounds

    def objective(self, const int32_t[::1] src not None, const int32_t[::1] dst not None, const double[::1] vol not None):
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
        out = _sol_np.empty(self.c.T, dtype=_sol_np.float64)
        cdef double[::1] o = out
        cdef int64_t t, w
        cdef double m, v
        with nogil:
            for t in range(self.c.T):
                m = INFINITY
                for w in range(self.c.W):
                    if _sol_allowed(&self.c, t, w):
                        v = _sol_ccost(&self.c, t, w)
                        if v < m:
                            m = v
                o[t] = m
        return out

    @property
    def assignment(self):
        return _sol_np.asarray(self._assign).copy()

    @property
    def usage(self):
        return _sol_np.asarray(self._usage).reshape(self.c.W, self.c.R).copy()
