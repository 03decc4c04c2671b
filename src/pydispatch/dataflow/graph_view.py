"""A running job's operator graph as plain data, for its metrics and the dashboard's job page.

Operators carry the ids the user's job graph gave them (the ids ``metrics()``'s
``records_in``/``records_out`` are keyed by), the chain each runs in (chained operators run as
one task per subtask), and each edge its partitioning (``forward``, ``hash``, ``rebalance``,
...) and whether it is chained (no exchange) or crosses subtasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..plan import ExecutionGraph

__all__ = ["describe_plan"]


def describe_plan(plan: ExecutionGraph, ids: Sequence[int]) -> dict[str, Any]:
    """``{"operators", "chains", "edges"}`` of ``plan``; ``ids[i]``: operator i's user id."""
    job = plan.job
    operators = [
        {
            "id": ids[op.id],
            "name": op.name,
            "kind": op.kind,
            "parallelism": plan.chains[plan.chain_of[op.id]].parallelism,
            "chain": plan.chain_of[op.id],
        }
        for op in job.operators
    ]
    chains = [
        {
            "id": chain.id,
            "name": chain.name,
            "parallelism": chain.parallelism,
            "operators": [ids[o] for o in chain.operators],
        }
        for chain in plan.chains
    ]
    edges = [
        {
            "source": ids[edge.source],
            "target": ids[edge.target],
            "partitioning": str(plan.edge_partitioning[index]),
            "chained": bool(plan.chained[index]),
        }
        for index, edge in enumerate(job.edges)
    ]
    return {"operators": operators, "chains": chains, "edges": edges}
