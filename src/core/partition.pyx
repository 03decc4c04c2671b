# Scatter, range, round-robin, rescale and two-choices kernels.
