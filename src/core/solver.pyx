# Placement solver kernels: greedy construction, local search (relocate + swap with
# incremental deltas) and iterated local search. The traffic CSR, construction orders and
# network bound are in solver_graph.pyx; SolverKernel, which runs these, in solver_kernel.pyx.
#
# Everything works on one `_sol_ctx` (_solver_shared.pxd) of raw pointers into arrays that a
# `SolverKernel` keeps alive, so the nogil helpers take a single argument and carry no
# memoryview overhead. _solver_shared.pxd also holds the helpers SolverKernel calls itself
# (_sol_now, _sol_ccost, _sol_dist, _sol_allowed, _sol_place, _sol_unplace).
# Validation lives in pydispatch/solver/_problem.py: the kernels trust their input (shapes,
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
from libc.string cimport memset
from _typedefs cimport int32_t, int64_t, uint64_t
from _solver_shared cimport (
    _sol_ctx, _sol_now, _sol_ccost, _sol_dist, _sol_allowed, _sol_place, _sol_unplace,
)


cdef inline uint64_t _sol_rand(uint64_t* s) noexcept nogil:
    # splitmix64: tiny, seedable, good enough for move orders
    s[0] += 0x9E3779B97F4A7C15ULL
    cdef uint64_t z = s[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


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


cdef inline bint _sol_aa_ok(const _sol_ctx* c, int64_t t, int64_t w,
                            int64_t leaving) noexcept nogil:
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


cdef inline bint _sol_dead(const _sol_ctx* c, int64_t w) noexcept nogil:
    # no task at all fits on w any more
    cdef int64_t k, r
    for k in range(c.fin_ptr[w], c.fin_ptr[w + 1]):
        r = c.fin_idx[k]
        if c.usage[w * c.R + r] + c.dmin[r] > c.cap[w * c.R + r] + c.eps:
            return True
    return False


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
    cdef int64_t lo = 0, k
    for i in range(n):
        t = order[i]
        if c.assign[t] >= 0:
            continue
        if rule == _SOL_LEAST_COST and c.cost_mode != 1 and c.adj_ptr[t + 1] == c.adj_ptr[t]:
            # no traffic and cost work / speed: the first feasible worker in speed order is the
            # least-cost one (ties by index, as in the full scan), so stop there. Workers that
            # cannot take even the smallest task are skipped for good (usage only grows here).
            while lo < c.W and _sol_dead(c, c.by_speed[lo]):
                lo += 1
            best = -1
            for k in range(lo, c.W):
                w = c.by_speed[k]
                if _sol_allowed(c, t, w) and _sol_fits(c, t, w) and _sol_aa_ok(c, t, w, -1):
                    best = w
                    break
            if best < 0:
                return t
            _sol_place(c, t, best)
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


cdef double _sol_move_delta(_sol_ctx* c, int64_t u, int64_t a, int64_t t,
                            double* vtu) noexcept nogil:
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
    c.moved = best_val
    rounds_out[0] = rounds
    return rounds
