# Placement solver kernels (greedy construction, local search). Filled by the solver work.
