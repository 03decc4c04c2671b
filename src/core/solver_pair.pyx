# Pair re-optimisation for placements without traffic: the free tasks of two workers are
# re-split between those two workers exactly: by dynamic programming over the two free
# capacities when each worker has one finite resource with integer demands and the table is
# small enough, else by a depth-first branch and bound (exact within its node budget). The
# neighbourhood holds every relocation and swap between the two and every
# multi-task exchange (an ejection chain confined to two workers), which the relocate/swap
# descent of solver.pyx cannot reach on tight packings (OR-Library D 20x100 from that
# descent's local optimum: 6,384 -> 6,359; D 20x200: 12,403 -> 12,380).
#
# Only the compute cost is counted: the caller runs this on problems without traffic, where a
# task's cost depends on its own worker alone, and without anti-affinity (not checked here).

from libc.math cimport INFINITY, floor
from _typedefs cimport int8_t, int64_t, uint8_t, uint64_t
from _solver_shared cimport (
    _sol_ctx, _sol_now, _sol_ccost, _sol_allowed, _sol_place, _sol_unplace,
)

cdef enum:
    # the most tasks two workers may hold for the pair to be searched, and the most resources
    # (the scratch arrays' sizes; SolverKernel.pair_descent checks the resources)
    _PAIR_MAX = 128
    _PAIR_MAX_R = 128
    # finite capacities per worker that the capacity bound looks at
    _PAIR_FIN = 4


cdef struct _pair_search:
    int64_t n                  # tasks being split
    int64_t wk[2]              # the two workers
    int64_t tasks[_PAIR_MAX]   # in branching order
    double cost[_PAIR_MAX * 2] # cost of tasks[k] on wk[0], wk[1]
    double suffix[_PAIR_MAX + 1]  # sum over k' >= k of the cheaper of the two costs
    int8_t side[_PAIR_MAX]     # the current branch
    int8_t best[_PAIR_MAX]     # the best split found
    double best_cost
    int64_t nodes
    int64_t total_nodes        # over every pair searched
    int64_t cut_short          # pairs whose search the node budget ended
    # exact dynamic programme over the two free capacities, when each side has one finite
    # resource, the demands on it are integers and the table fits in dp_cells (else B&B)
    double* dp_f               # (dp_cells,) least cost per (load on side 0, load on side 1)
    uint8_t* dp_side           # (dp_work,) the side each task took, per cell
    int64_t dp_cells
    int64_t dp_work            # most cells x tasks of one programme (its time, about)
    int64_t dp_runs
    int64_t max_nodes
    double load[2 * _PAIR_MAX_R]  # (2, R) usage of the two workers by what is placed so far
    int8_t prefer[_PAIR_MAX]   # the cheaper side of tasks[k] (0 on a tie)
    int64_t n_fin[2]           # finite resources of each side the bound uses
    int64_t fin_r[2 * _PAIR_FIN]
    # per side and finite resource: the positions k of the tasks preferring that side, by the
    # extra cost per unit of demand of moving them to the other side, cheapest first
    int64_t by_ratio[2 * _PAIR_FIN * _PAIR_MAX]
    int64_t n_ratio[2]


cdef bint _pair_fits(const _sol_ctx* c, _pair_search* s, int64_t k, int64_t side) noexcept nogil:
    cdef int64_t w = s.wk[side], t = s.tasks[k], q, r
    for q in range(c.fin_ptr[w], c.fin_ptr[w + 1]):
        r = c.fin_idx[q]
        if s.load[side * c.R + r] + c.dem[t * c.R + r] > c.cap[w * c.R + r] + c.eps:
            return False
    return True


cdef double _pair_overflow_cost(const _sol_ctx* c, _pair_search* s, int64_t k) noexcept nogil:
    # A lower bound on the extra cost the tasks k.. must pay beyond each taking its cheaper
    # side: if those preferring a side overflow one of its capacities, enough of them must move
    # to the other side, and moving the cheapest per unit of demand first, fractionally, costs
    # no more than any real choice (the other side's capacity is ignored). The largest such
    # amount over the sides' resources; INFINITY when moving them all still overflows.
    cdef int64_t side, q, i, m, r, w, t
    cdef double over, extra, d, pen, most = 0.0, total = 0.0
    for side in range(2):
        w = s.wk[side]
        most = 0.0
        for q in range(s.n_fin[side]):
            r = s.fin_r[side * _PAIR_FIN + q]
            over = s.load[side * c.R + r] - c.cap[w * c.R + r] - c.eps
            for i in range(s.n_ratio[side]):
                m = s.by_ratio[(side * _PAIR_FIN + q) * _PAIR_MAX + i]
                if m >= k:
                    over += c.dem[s.tasks[m] * c.R + r]
            if over <= 0.0:
                continue
            extra = 0.0
            for i in range(s.n_ratio[side]):
                m = s.by_ratio[(side * _PAIR_FIN + q) * _PAIR_MAX + i]
                if m < k:
                    continue
                d = c.dem[s.tasks[m] * c.R + r]
                if d <= 0.0:
                    continue
                pen = s.cost[2 * m + 1 - side] - s.cost[2 * m + side]
                if d >= over:
                    extra += pen * over / d
                    over = 0.0
                    break
                extra += pen
                over -= d
            if over > 0.0:
                return INFINITY
            if extra > most:
                most = extra
        total += most
    return total


cdef void _pair_branch(const _sol_ctx* c, _pair_search* s, int64_t k, double cost) noexcept nogil:
    cdef int64_t first, side, r, t, m, o
    if s.nodes >= s.max_nodes or cost + s.suffix[k] >= s.best_cost - c.eps_obj:
        return
    s.nodes += 1
    if k < s.n and cost + s.suffix[k] + _pair_overflow_cost(c, s, k) >= s.best_cost - c.eps_obj:
        return
    if k == s.n:
        s.best_cost = cost
        for m in range(s.n):
            s.best[m] = s.side[m]
        return
    t = s.tasks[k]
    # the cheaper side first: the first leaf is the greedy split, a good incumbent
    first = 0 if s.cost[2 * k] <= s.cost[2 * k + 1] else 1
    for o in range(2):
        side = first if o == 0 else 1 - first
        if not _pair_fits(c, s, k, side):
            continue
        for r in range(c.R):
            s.load[side * c.R + r] += c.dem[t * c.R + r]
        s.side[k] = <int8_t>side
        _pair_branch(c, s, k + 1, cost + s.cost[2 * k + side])
        for r in range(c.R):
            s.load[side * c.R + r] -= c.dem[t * c.R + r]


cdef inline double _pair_ratio(const _sol_ctx* c, _pair_search* s, int64_t k, int64_t side,
                               int64_t r) noexcept nogil:
    cdef double d = c.dem[s.tasks[k] * c.R + r]
    cdef double pen = s.cost[2 * k + 1 - side] - s.cost[2 * k + side]
    return pen / d if d > 0.0 else INFINITY


cdef bint _pair_dp(const _sol_ctx* c, _pair_search* s) noexcept nogil:
    # The exact split by dynamic programming over (load of side 0, load of side 1) when both
    # sides have at most one finite capacity, integer demands on it and a table of at most
    # dp_cells cells; the result in s.best / s.best_cost as the branch and bound leaves it.
    # False (nothing done) when the pair does not qualify.
    cdef int64_t side, k, w, i0, i1, cell, cells, stride, best_cell
    cdef int64_t d[2]
    cdef int64_t size[2]
    cdef int64_t res[2]
    cdef double room, dd, v0, v1, c0, c1
    cdef uint8_t* row
    if s.dp_f == NULL:
        return False
    for side in range(2):
        w = s.wk[side]
        if s.n_fin[side] > 1:
            return False
        res[side] = -1
        size[side] = 1
        if s.n_fin[side] == 1:
            res[side] = s.fin_r[side * _PAIR_FIN]
            room = c.cap[w * c.R + res[side]] - s.load[side * c.R + res[side]] + c.eps
            if room < 0.0 or room > <double>s.dp_cells:
                return False
            size[side] = <int64_t>floor(room) + 1
    cells = size[0] * size[1]
    if cells > s.dp_cells or cells * s.n > s.dp_work:
        return False
    for k in range(s.n):
        for side in range(2):
            if res[side] >= 0:
                dd = c.dem[s.tasks[k] * c.R + res[side]]
                if dd != floor(dd):
                    return False
    s.dp_runs += 1
    stride = cells
    for cell in range(cells):
        s.dp_f[cell] = INFINITY
    s.dp_f[0] = 0.0
    for k in range(s.n):
        for side in range(2):
            d[side] = 0 if res[side] < 0 else <int64_t>c.dem[s.tasks[k] * c.R + res[side]]
        c0 = s.cost[2 * k]
        c1 = s.cost[2 * k + 1]
        row = s.dp_side + k * stride
        # in place, highest loads first: both cells read are at lower loads, not yet rewritten
        for i0 in range(size[0] - 1, -1, -1):
            for i1 in range(size[1] - 1, -1, -1):
                cell = i0 * size[1] + i1
                v0 = s.dp_f[cell - d[0] * size[1]] + c0 if i0 >= d[0] else INFINITY
                v1 = s.dp_f[cell - d[1]] + c1 if i1 >= d[1] else INFINITY
                if v1 < v0:
                    s.dp_f[cell] = v1
                    row[cell] = 1
                else:
                    s.dp_f[cell] = v0
                    row[cell] = 0
    best_cell = 0
    for cell in range(1, cells):
        if s.dp_f[cell] < s.dp_f[best_cell]:
            best_cell = cell
    if s.dp_f[best_cell] >= s.best_cost - c.eps_obj:
        return True
    s.best_cost = s.dp_f[best_cell]
    i0 = best_cell // size[1]
    i1 = best_cell % size[1]
    for k in range(s.n - 1, -1, -1):
        cell = i0 * size[1] + i1
        row = s.dp_side + k * stride
        if row[cell]:
            s.best[k] = 1
            i1 -= 0 if res[1] < 0 else <int64_t>c.dem[s.tasks[k] * c.R + res[1]]
        else:
            s.best[k] = 0
            i0 -= 0 if res[0] < 0 else <int64_t>c.dem[s.tasks[k] * c.R + res[0]]
    return True


cdef inline double _pair_key(const _sol_ctx* c, int64_t t, int64_t a, int64_t b) noexcept nogil:
    cdef double d = _sol_ccost(c, t, a) - _sol_ccost(c, t, b)
    return d if d >= 0 else -d


cdef bint _sol_pair_opt(_sol_ctx* c, _pair_search* s, int64_t a, int64_t b) noexcept nogil:
    # Re-split the free tasks of workers a and b that both may take; True if a strictly
    # cheaper split was found and applied.
    cdef int64_t side, t, k, m, r, w, q, i
    cdef double cur = 0.0, ca, cb, key, tmp
    cdef int64_t tt
    s.wk[0] = a
    s.wk[1] = b
    s.n = 0
    for r in range(c.R):
        s.load[r] = c.usage[a * c.R + r]
        s.load[c.R + r] = c.usage[b * c.R + r]
    for side in range(2):
        w = s.wk[side]
        t = c.head[w]
        while t >= 0:
            if (c.pinned[t] < 0 and _sol_allowed(c, t, a) and _sol_allowed(c, t, b)):
                if s.n == _PAIR_MAX:
                    return False
                s.tasks[s.n] = t
                s.n += 1
                cur += _sol_ccost(c, t, w)
                for r in range(c.R):
                    s.load[side * c.R + r] -= c.dem[t * c.R + r]
            t = c.nxt[t]
    if s.n < 2:
        return False
    # branch on the tasks whose two costs differ most first (insertion sort: n is small)
    for k in range(1, s.n):
        tt = s.tasks[k]
        key = _pair_key(c, tt, a, b)
        m = k
        while m > 0:
            tmp = _pair_key(c, s.tasks[m - 1], a, b)
            if tmp >= key:
                break
            s.tasks[m] = s.tasks[m - 1]
            m -= 1
        s.tasks[m] = tt
    s.suffix[s.n] = 0.0
    for k in range(s.n - 1, -1, -1):
        ca = _sol_ccost(c, s.tasks[k], a)
        cb = _sol_ccost(c, s.tasks[k], b)
        s.cost[2 * k] = ca
        s.cost[2 * k + 1] = cb
        s.suffix[k] = s.suffix[k + 1] + (ca if ca < cb else cb)
    for k in range(s.n):
        s.prefer[k] = 0 if s.cost[2 * k] <= s.cost[2 * k + 1] else 1
    for side in range(2):
        w = s.wk[side]
        s.n_fin[side] = 0
        for q in range(c.fin_ptr[w], c.fin_ptr[w + 1]):
            if s.n_fin[side] == _PAIR_FIN:
                break
            s.fin_r[side * _PAIR_FIN + s.n_fin[side]] = c.fin_idx[q]
            s.n_fin[side] += 1
        for q in range(s.n_fin[side]):
            r = s.fin_r[side * _PAIR_FIN + q]
            # insertion sort of this side's tasks by penalty per unit demand
            m = 0
            for k in range(s.n):
                if s.prefer[k] != side:
                    continue
                key = _pair_ratio(c, s, k, side, r)
                i = m
                while i > 0 and _pair_ratio(
                        c, s, s.by_ratio[(side * _PAIR_FIN + q) * _PAIR_MAX + i - 1], side, r
                ) > key:
                    s.by_ratio[(side * _PAIR_FIN + q) * _PAIR_MAX + i] = s.by_ratio[
                        (side * _PAIR_FIN + q) * _PAIR_MAX + i - 1]
                    i -= 1
                s.by_ratio[(side * _PAIR_FIN + q) * _PAIR_MAX + i] = k
                m += 1
            s.n_ratio[side] = m
        if s.n_fin[side] == 0:
            s.n_ratio[side] = 0
    s.best_cost = cur
    s.nodes = 0
    if not _pair_dp(c, s):
        _pair_branch(c, s, 0, 0.0)
        s.total_nodes += s.nodes
        if s.nodes >= s.max_nodes:
            s.cut_short += 1
    if s.best_cost >= cur - c.eps_obj:
        return False
    for k in range(s.n):
        _sol_unplace(c, s.tasks[k])
    for k in range(s.n):
        _sol_place(c, s.tasks[k], s.wk[s.best[k]])
    c.moved += s.best_cost - cur
    return True


cdef int64_t _sol_pair_descent(_sol_ctx* c, double deadline, uint64_t seed,
                               int64_t max_nodes, int64_t* pairs, int64_t n_pairs,
                               _pair_search* s) noexcept nogil:
    # Sweeps over the worker pairs (pairs: a * W + b, shuffled by seed once per sweep) until a
    # sweep improves nothing or the deadline passes. Returns the number of pairs improved.
    cdef uint64_t rng = seed ^ 0x9E3779B97F4A7C15ULL
    cdef int64_t i, j, q, improved = 0, this_sweep
    s.max_nodes = max_nodes
    while True:
        this_sweep = 0
        for i in range(n_pairs - 1, 0, -1):
            rng ^= rng << 13
            rng ^= rng >> 7
            rng ^= rng << 17
            j = <int64_t>(rng % <uint64_t>(i + 1))
            q = pairs[i]
            pairs[i] = pairs[j]
            pairs[j] = q
        for i in range(n_pairs):
            if _sol_now() > deadline:
                return improved + this_sweep
            if _sol_pair_opt(c, s, pairs[i] // c.W, pairs[i] % c.W):
                this_sweep += 1
        improved += this_sweep
        if this_sweep == 0:
            return improved
