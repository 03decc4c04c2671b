# cython: language_level=3
# The native core of pydispatch: one extension module built from this file, which includes the
# kernels' sources so they share one module and the typedefs of _typedefs.pxd (asyncpg's layout).
# Directives are set once, in setup.py.
#
# Error contract of the cdef kernels: `noexcept nogil` where nothing can fail; `except -1 nogil`
# where input can be invalid (the def entry point raises once the GIL is back, naming the problem).
# Python-facing entry points are thin `def`s; validation and dtype dispatch live in the Python
# wrappers (pydispatch.partition, pydispatch.solver).

include "hashing.pyx"
include "compat.pyx"
include "partition.pyx"
include "solver.pyx"
include "solver_graph.pyx"
include "solver_kernel.pyx"
