"""Job graph -> chained execution graph -> traffic estimates -> placement input.

The planner of dataflow jobs, as Apache Flink plans them (see :mod:`pydispatch.plan._execution`
for the steps). Modules inside are private:

- ``_job_graph``: the job graph, what a user's program describes: built by ``pydispatch.stream``
  (which re-exports its classes), read here, and shipped to job masters and slots in jobs;
- ``_sources``: what each parallel instance of a source reads, shared by every executor;
- ``_execution``: partitioning, chaining, subtasks and channels, traffic estimates;
- ``_placement_input``: from an execution graph to the solver's placement problem.
"""

from __future__ import annotations

from .._exports import publish
from ._execution import (
    DEFAULT_BYTES_PER_RECORD,
    DEFAULT_SELECTIVITY,
    DEFAULT_SOURCE_RECORDS,
    DEFAULT_WORK_PER_RECORD,
    Chain,
    Exchange,
    ExecutionGraph,
    execution_graph,
    is_chainable,
    resolve_partitioning,
)
from ._job_graph import Edge, JobGraph, KeySpec, Operator
from ._placement_input import PlacementInput, placement_input, placement_problem, why_not_fit

__all__ = [
    "DEFAULT_BYTES_PER_RECORD",
    "DEFAULT_SELECTIVITY",
    "DEFAULT_SOURCE_RECORDS",
    "DEFAULT_WORK_PER_RECORD",
    "Chain",
    "Edge",
    "Exchange",
    "ExecutionGraph",
    "JobGraph",
    "KeySpec",
    "Operator",
    "PlacementInput",
    "execution_graph",
    "is_chainable",
    "placement_input",
    "placement_problem",
    "resolve_partitioning",
    "why_not_fit",
]

publish(__name__, globals(), __all__)
