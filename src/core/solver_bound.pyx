# Lagrangian lower bound of the compute cost: the capacity constraints are relaxed with a price
# lambda[w, r] >= 0 on every finite capacity, which leaves one independent choice per task:
#     L(lambda) = sum_t min_{w allowed} (cost[t, w] + sum_r lambda[w, r] dem[t, r])
#                 - sum_{w, r} lambda[w, r] cap[w, r]
# L(lambda) <= the least compute cost of any placement that respects the capacities, for every
# lambda >= 0 (weak duality), so the best value seen is a bound whatever the iteration does.
# The multipliers follow the subgradient (usage by the relaxed choice - capacity) with Polyak's
# step towards an upper bound; the step factor halves after `patience` steps without a better
# bound. Tasks with identical rows come in as one representative with a multiplicity, which is
# what makes the bound affordable on a 10,000-subtask job (a few kinds of tasks).
#
# Anti-affinity is left out (a relaxation: the bound stays valid, only weaker). Runs on the
# kernel's own _sol_ctx, so it reads the same CSR of finite capacities (fin_ptr/fin_idx) and the
# same cost and eligibility helpers as the local search.

from libc.math cimport INFINITY
from libc.string cimport memcpy
from _typedefs cimport int32_t, int64_t, uint8_t, uint64_t
from _solver_shared cimport _sol_ctx, _sol_now, _sol_ccost, _sol_allowed

import numpy as np


cdef double _sol_lagr_eval(const _sol_ctx* c, const int64_t* reps, const double* mult,
                           int64_t K, const double* lam, double* grad,
                           int32_t* choice) noexcept nogil:
    # L(lam) and its subgradient (in grad, one entry per finite (w, r) in fin_idx order).
    # choice[k] = the worker of kind k's relaxed choice (-1: no allowed worker).
    cdef int64_t k, t, w, q, r, best
    cdef double v, bestv, total = 0.0
    for w in range(c.W):
        for q in range(c.fin_ptr[w], c.fin_ptr[w + 1]):
            grad[q] = -c.cap[w * c.R + c.fin_idx[q]]
            total -= lam[q] * c.cap[w * c.R + c.fin_idx[q]]
    for k in range(K):
        t = reps[k]
        best = -1
        bestv = INFINITY
        for w in range(c.W):
            if not _sol_allowed(c, t, w):
                continue
            v = _sol_ccost(c, t, w)
            for q in range(c.fin_ptr[w], c.fin_ptr[w + 1]):
                v += lam[q] * c.dem[t * c.R + c.fin_idx[q]]
            if v < bestv:
                bestv = v
                best = w
        choice[k] = <int32_t>best
        if best < 0:
            return INFINITY  # a task with no allowed worker: infeasible, caught upstream
        total += mult[k] * bestv
        for q in range(c.fin_ptr[best], c.fin_ptr[best + 1]):
            grad[q] += mult[k] * c.dem[t * c.R + c.fin_idx[q]]
    return total


cdef double _sol_lagrangian(const _sol_ctx* c, const int64_t* reps, const double* mult,
                            int64_t K, double upper, int64_t iterations, int64_t patience,
                            double deadline, double* lam, double* best_lam, double* grad,
                            int32_t* choice, int64_t* done) noexcept nogil:
    # Subgradient ascent from lam (as given: zeros, or a warm start); returns the best L seen
    # and leaves its multipliers in best_lam. `upper` is any upper bound on the optimum (the
    # incumbent's compute cost): Polyak's step is theta (upper - L) / |g|^2.
    cdef int64_t it, q, n = c.fin_ptr[c.W], since = 0
    cdef double val, best = -INFINITY, theta = 2.0, norm, step, target
    done[0] = 0
    for it in range(iterations):
        if (it & 15) == 0 and it > 0 and _sol_now() > deadline:
            break
        val = _sol_lagr_eval(c, reps, mult, K, lam, grad, choice)
        done[0] = it + 1
        if val > best:
            # an improvement counts only when it is worth a step (else theta never shrinks)
            if val > best + 1e-9 * (1.0 + (val if val > 0 else -val)):
                since = 0
            else:
                since += 1
            best = val
            for q in range(n):
                best_lam[q] = lam[q]
        else:
            since += 1
        if since >= patience:
            theta *= 0.5
            since = 0
            if theta < 1e-4:
                break
        norm = 0.0
        for q in range(n):
            # a projected component that cannot move does not count in the step length
            if lam[q] > 0.0 or grad[q] > 0.0:
                norm += grad[q] * grad[q]
        if norm <= 0.0:
            break  # the relaxed choice fits every capacity: it is optimal, L is the optimum
        target = upper if upper > val else val + 1e-3 * (1.0 + (val if val > 0 else -val))
        step = theta * (target - val) / norm
        for q in range(n):
            lam[q] += step * grad[q]
            if lam[q] < 0.0:
                lam[q] = 0.0
    return best


# The traffic graph seen by kinds of tasks (the shuffle-aware network bound of
# pydispatch.solver._bounds): plain arrays in and out, like solver_graph.pyx.

cdef inline uint64_t _sol_mix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


def sol_neighbour_signature(const int64_t[::1] ptr not None, const int32_t[::1] nbr not None,
                            const double[::1] vol not None, const int64_t[::1] color not None):
    """Per task an order-free hash of its (neighbour's colour, volume) multiset: one round of
    colour refinement. Equal signatures may rarely collide; the caller only merges tasks by
    them, which keeps its bound valid (kinds are summarised by maxima and minima)."""
    cdef int64_t T = ptr.shape[0] - 1, t, k
    cdef uint64_t s, bits
    cdef double v
    out = np.zeros(max(T, 1), dtype=np.uint64)
    cdef uint64_t[::1] o = out
    with nogil:
        for t in range(T):
            s = 0
            for k in range(ptr[t], ptr[t + 1]):
                v = vol[k]
                memcpy(&bits, &v, sizeof(double))
                s += _sol_mix(_sol_mix(<uint64_t>color[nbr[k]] + 0x9E3779B97F4A7C15ULL) ^ bits)
            o[t] = s
    return out[:T]


def sol_kind_traffic(const int64_t[::1] ptr not None, const int32_t[::1] nbr not None,
                     const double[::1] vol not None, const int64_t[::1] kind not None,
                     int64_t K):
    """Per ordered pair of kinds (a, b), flattened a * K + b: the summed volume of the CSR
    entries from a-tasks to b-tasks (every undirected edge appears from both ends), the most
    volume any one a-task exchanges with b-tasks, and the heaviest single a-b edge."""
    cdef int64_t T = ptr.shape[0] - 1, t, k, a, b, n_touch, j
    total = np.zeros(K * K, dtype=np.float64)
    most = np.zeros(K * K, dtype=np.float64)
    heaviest = np.zeros(K * K, dtype=np.float64)
    cdef double[::1] tot = total, mx = most, hv = heaviest
    cdef double[::1] acc = np.zeros(max(K, 1), dtype=np.float64)
    cdef int64_t[::1] touched = np.zeros(max(K, 1), dtype=np.int64)
    cdef int64_t[::1] owner = np.full(max(K, 1), -1, dtype=np.int64)
    with nogil:
        for t in range(T):
            a = kind[t]
            n_touch = 0
            for k in range(ptr[t], ptr[t + 1]):
                b = kind[nbr[k]]
                if owner[b] != t:
                    owner[b] = t
                    touched[n_touch] = b
                    n_touch += 1
                acc[b] += vol[k]
                tot[a * K + b] += vol[k]
                if vol[k] > hv[a * K + b]:
                    hv[a * K + b] = vol[k]
            for j in range(n_touch):
                b = touched[j]
                if acc[b] > mx[a * K + b]:
                    mx[a * K + b] = acc[b]
                acc[b] = 0.0
    return total, most, heaviest


def sol_knapsack_lagrangian(const double[:, ::1] cost not None,
                            const int64_t[:, ::1] weight not None,
                            const int64_t[::1] cap not None,
                            const uint8_t[:, ::1] allowed not None,
                            double[::1] u not None, double upper, int64_t iterations,
                            double time_limit):
    """The Lagrangian bound of a generalised assignment with the *assignment* constraints
    relaxed (price u[t] for placing task t), one 0-1 knapsack per worker, solved exactly by
    dynamic programming over its integer capacity (cap[w] < 0: no limit):
        L(u) = sum_t u[t] - sum_w max { sum_t (u[t] - cost[t, w]) x_t : sum_t weight x_t <= cap }
    is below the optimum for every u (weights rounded down and capacities floored by the caller
    keep it so). Subgradient ascent from u (updated in place to the best u) with Polyak steps;
    returns (best L, iterations run)."""
    cdef int64_t T = cost.shape[0], W = cost.shape[1], t, w, c, it, n_items, k, cw, since = 0
    cdef int64_t maxcap = 0
    for w in range(W):
        if cap[w] > maxcap:
            maxcap = cap[w]
    cdef double[::1] dp = np.zeros(maxcap + 1, dtype=np.float64)
    cdef uint8_t[:, ::1] keep = np.zeros((T, maxcap + 1), dtype=np.uint8)
    cdef int64_t[::1] items = np.zeros(max(T, 1), dtype=np.int64)
    cdef double[::1] g = np.zeros(max(T, 1), dtype=np.float64)
    cdef double[::1] best_u = np.array(u, dtype=np.float64)
    cdef double val, best = -INFINITY, theta = 2.0, norm, step, prof, cand, target
    cdef double deadline = _sol_now() + time_limit
    cdef int64_t done = 0
    with nogil:
        for it in range(iterations):
            if it > 0 and _sol_now() > deadline:
                break
            val = 0.0
            for t in range(T):
                val += u[t]
                g[t] = 1.0
            for w in range(W):
                n_items = 0
                for t in range(T):
                    if allowed[t, w] and u[t] - cost[t, w] > 0.0:
                        items[n_items] = t
                        n_items += 1
                if cap[w] < 0:
                    for k in range(n_items):
                        t = items[k]
                        val -= u[t] - cost[t, w]
                        g[t] -= 1.0
                    continue
                cw = cap[w]
                for c in range(cw + 1):
                    dp[c] = 0.0
                for k in range(n_items):
                    t = items[k]
                    prof = u[t] - cost[t, w]
                    for c in range(cw, -1, -1):
                        keep[k, c] = 0
                        if weight[t, w] <= c:
                            cand = dp[c - weight[t, w]] + prof
                            if cand > dp[c]:
                                dp[c] = cand
                                keep[k, c] = 1
                val -= dp[cw]
                c = cw
                for k in range(n_items - 1, -1, -1):
                    if keep[k, c]:
                        g[items[k]] -= 1.0
                        c -= weight[items[k], w]
            done = it + 1
            if val > best + 1e-9 * (1.0 + (val if val > 0 else -val)):
                best = val
                since = 0
                for t in range(T):
                    best_u[t] = u[t]
            else:
                since += 1
                if since >= 20:
                    theta *= 0.5
                    since = 0
                    if theta < 1e-4:
                        break
            norm = 0.0
            for t in range(T):
                norm += g[t] * g[t]
            if norm <= 0.0:
                break  # every task placed exactly once: the relaxed solution is optimal
            target = upper if upper > val else val + 1e-3 * (1.0 + (val if val > 0 else -val))
            step = theta * (target - val) / norm
            for t in range(T):
                u[t] += step * g[t]
    for t in range(T):
        u[t] = best_u[t]
    return best, done
