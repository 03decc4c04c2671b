# Declarations shared by the solver's included sources: the state struct `_sol_ctx` that
# solver.pyx's kernels work on and solver_kernel.pyx's SolverKernel owns, and the inline helpers
# both of them call. cimported by each of them (`from _solver_shared cimport ...`), like
# _typedefs.pxd, so neither depends on the order in which _core.pyx includes them.
# (solver_graph.pyx shares nothing with them beyond the `sol_` prefix.)
#
# Named apart from every .pyx: a `solver.pxd` would be taken for the declarations of a module
# `solver`. A cimport of this file costs nothing at runtime only while it holds nothing but
# types and `cdef inline` functions *with their bodies* (their C code goes into _core's own
# C file, exactly as when they were defined in solver.pyx), so that is all it holds.
#
# The non-inline kernels that SolverKernel calls are defined in solver.pyx and declared nowhere
# else, because Cython 3 has no place for such a declaration in an include-built module:
# - here, `cdef int64_t _sol_greedy(...) noexcept nogil` would mean "exported by a module
#   named _solver_shared": _core would import it at load time and fail (ImportError);
# - a body-less `cdef` in a .pyx or an included .pxi (a forward declaration) is an error,
#   "Non-extern C function ... declared but not defined", even when the body follows;
# - the one file that may declare a module's own cdef functions is its declaration file, here
#   pydispatch/_core.pxd on the include path, and that would export them as a C API
#   (_core.__pyx_capi__) that nothing is meant to use.
# None is needed: Cython declares every module-level cdef function of _core.pyx and its
# includes before it compiles any body, so a call resolves whatever the include order and is
# checked against the definition (argument types, nogil, exception spec). Only types must be
# declared before their first use, hence the struct here.
#
# Error contracts: every solver kernel is `noexcept nogil`. The kernels trust their validated
# input (SolverKernel checks the sizes and indices they read blindly), allocate nothing, and
# report "no feasible worker" as a value (_sol_greedy returns the task, or -1), not as an error.
# Those of solver.pyx that solver_kernel.pyx calls (full signatures in solver.pyx):
#     _sol_greedy(c, order, n, rule)         -> int64_t: -1, or the first task left unplaced
#     _sol_local(c, deadline, seed, ...)     -> int64_t: the moves made
#     _sol_ils(c, deadline, seed, ...)       -> int64_t: the kick rounds

from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from _typedefs cimport int32_t, int64_t, uint8_t


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
    const int32_t* by_speed    # (W,) workers by speed, fastest first (index order if no speed)
    const double* dmin         # (R,) the least demand of any task per resource


# The helpers SolverKernel calls directly as well as the kernels: time, cost, distance,
# eligibility, and the two moves that keep the mutable state's invariant.

cdef inline double _sol_now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + 1e-9 * <double>ts.tv_nsec


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
