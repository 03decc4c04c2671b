# Traffic-graph kernels of the solver: symmetric CSR with merged parallel edges, the
# construction order, and the knapsack lower bound on the network cost. Self-contained: plain
# arrays in and out, no _sol_ctx.

from libc.math cimport INFINITY
from libc.stdlib cimport qsort
from _typedefs cimport int32_t, int64_t, uint8_t

import numpy as np


def sol_build_csr(int64_t n, const int32_t[::1] src not None, const int32_t[::1] dst not None,
                  const double[::1] vol not None):
    """Symmetric CSR (ptr, nbr, vol) of a traffic edge list; self loops dropped (they cost 0)."""
    cdef int64_t E = src.shape[0], e, i, s, d
    ptr = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t[::1] p = ptr
    with nogil:
        for e in range(E):
            if src[e] != dst[e]:
                p[src[e] + 1] += 1
                p[dst[e] + 1] += 1
        for i in range(n):
            p[i + 1] += p[i]
    nbr = np.empty(max(p[n], 1), dtype=np.int32)
    avol = np.empty(max(p[n], 1), dtype=np.float64)
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
    cdef int64_t[::1] where = np.empty(max(n, 1), dtype=np.int64)
    cdef int64_t[::1] owner = np.full(max(n, 1), -1, dtype=np.int64)
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


def sol_traffic_order(const int64_t[::1] ptr not None, const int32_t[::1] nbr not None,
                      const double[::1] vol not None,
                      const int64_t[::1] seeds not None):
    """Construction order: breadth-first over the traffic graph from the seeds (in their order),
    following heavy chains depth-first, so that a task is placed right after the tasks it talks
    to most (a forward edge's two ends one after the other)."""
    cdef int64_t T = ptr.shape[0] - 1, n = seeds.shape[0], i, s, t, k, v, nx, qh = 0, qt = 0, m = 0
    cdef double best
    out = np.empty(T, dtype=np.int64)
    cdef int64_t[::1] o = out
    cdef int64_t[::1] queue = np.empty(T, dtype=np.int64)
    cdef uint8_t[::1] seen = np.zeros(T, dtype=np.uint8)
    cdef double[::1] vmax = np.zeros(T, dtype=np.float64)
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


def sol_network_bound(const int64_t[::1] ptr not None, const int32_t[::1] nbr not None,
                      const double[::1] vol not None,
                      const double[::1] dem not None, int64_t R, const double[::1] capl not None,
                      const double[::1] saving not None, double dfar,
                      double[::1] level_share=None):
    """Twice a lower bound on the network cost.

    For a task t, the neighbours sharing its group at level i (0: its worker, then the topology
    levels fine -> coarse) must fit in that group beside t, so for every resource k their
    volume is at most a fractional knapsack of capacity capl[i, k] - dem[t, k] (k == R: a task
    count, weight 1 each). t's edges cost V_t dfar - sum_i saving[i] x (volume sharing level i),
    and each edge is counted from both of its ends. `level_share`, if given (one entry per
    level), receives twice the bound on the volume that can share each level (the sum over tasks
    of their share), for callers that combine it with other per-level bounds."""
    cdef int64_t T = ptr.shape[0] - 1, L1 = saving.shape[0], t, i, k, j, n, idx, m, q
    cdef int64_t maxdeg = 16
    cdef double total = 0.0, V, wt, cap, cw, cv, fk, r0, v, w, ratio
    for t in range(T):
        if ptr[t + 1] - ptr[t] > maxdeg:
            maxdeg = ptr[t + 1] - ptr[t]
    items_arr = np.zeros(maxdeg * 3, dtype=np.float64)
    cdef double[::1] items_mv = items_arr
    cdef _sol_item* items = <_sol_item*>&items_mv[0]
    cdef double[::1] share = np.zeros(L1, dtype=np.float64)
    cdef bint has_out = level_share is not None
    cdef double[::1] out = level_share if has_out else share
    if has_out and level_share.shape[0] < L1:
        raise ValueError("level_share needs one entry per level")
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
                if has_out:
                    out[i] += share[i]
            total += r0
    return total
