"""Placement of subtasks on workers: compute cost + network cost under every capacity.

The public face of the allocation solver (``solve(problem, method=...)``; see
:mod:`pydispatch.solver._solve` for the methods and their bounds). Modules inside are private:

- ``_problem``: :class:`PlacementProblem`, validated and coerced numpy arrays;
- ``_result``: :class:`Placement`, :class:`SolveStep`, :class:`InfeasibleError` and the checks
  behind them;
- ``_steps``: the clock of one solve (deadline, what each phase did or why it was left out);
- ``_native``: the bridge to the native kernels of ``pydispatch._core``;
- ``_exact``: the exact methods and bounds with OR-Tools (CP-SAT, min-cost flow, LP);
- ``_bounds``: the lower bounds (Lagrangian for capacities, per-level network bounds that see
  a shuffle as a whole) and ``_network_lp``, the joint network LP per topology level (GLOP);
- ``_solve``: ``solve``, ``lower_bound`` and the baselines (Flink's slot sharing, fair share).
"""

from __future__ import annotations

from .._exports import publish
from ._problem import PlacementProblem
from ._result import InfeasibleError, Placement, SolveStep
from ._solve import BASELINES, METHODS, fair_share, flink_slot_sharing, lower_bound, solve

__all__ = [
    "BASELINES",
    "METHODS",
    "InfeasibleError",
    "Placement",
    "PlacementProblem",
    "SolveStep",
    "fair_share",
    "flink_slot_sharing",
    "lower_bound",
    "solve",
]

publish(__name__, globals(), __all__)
