# cython: language_level=3
# The native core of pydispatch: one extension module built from this file, which includes the
# kernels' sources so they share one module and one namespace (asyncpg's layout). What several
# of them need is cimported from .pxd files on the include path, not left to the include order:
# the typedefs from _typedefs.pxd, the solver's state struct and shared helpers from
# _solver_shared.pxd (which explains why only those, and not the solver's non-inline kernels,
# can be declared there). Directives are set once, in setup.py.
#
# Error contract of the cdef kernels. Validation and dtype dispatch live in the Python wrappers
# (pydispatch.partition, pydispatch.solver); the def entry points are thin and trust them,
# except that SolverKernel checks the sizes and indices its kernels read blindly and raises
# ValueError before it releases the GIL.
# - `noexcept nogil`: every nogil kernel but one. A problem such a kernel finds comes back as a
#   sentinel return value, and its caller, holding the GIL again, decides what it means:
#   _histogram returns the first row whose partition id is out of range (-1: none) and
#   scatter_ids raises ValueError naming it; _sol_greedy returns the first task that fitted
#   nowhere (-1: none), which SolverKernel.greedy returns and pydispatch.solver turns into an
#   InfeasibleError or a fallback. An allocation with a fallback fails the same way:
#   _scatter_staged returns -1 and scatter_ids does the plain pass instead.
# - `except -1 nogil`: allocation failure with no fallback, and nothing else. _two_choices
#   takes the GIL to raise MemoryError and returns -1, which Cython propagates.
# - `except? 0` / `except? -1` with the GIL: _hash_object and _java_hash_object read Python
#   objects and raise TypeError or OverflowError naming the offending key themselves.
# - `except -1` with the GIL: records.pyx's RecordFold.fold and RecordChain._emit, which call
#   the user's functions and getters and let their exceptions propagate unchanged.

include "hashing.pyx"
include "compat.pyx"
include "partition.pyx"
include "solver.pyx"
include "solver_pair.pyx"
include "solver_graph.pyx"
include "solver_kernel.pyx"
include "solver_bound.pyx"
include "aggregate.pyx"
include "records.pyx"
