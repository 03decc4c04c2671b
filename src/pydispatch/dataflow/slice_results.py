"""What a finished job's slices return, gathered into the job's collected records (private;
split from ``dataflow.job_run``)."""

from __future__ import annotations

from typing import Any

from ..plan import ExecutionGraph
from .operators import Batch, concat, size

__all__ = ["gather_collected"]


def gather_collected(
    plan: ExecutionGraph, ids: list[int], results: dict[int, Any]
) -> tuple[dict[int, Any], dict[int, list[Batch]]]:
    """Each collect sink's records (by user operator id), and what each of its subtasks
    received (index order), from the slices' results (by slice index)."""
    collected: dict[int, Any] = {}
    per_subtask: dict[int, list[Batch]] = {}
    for op in plan.job.sinks():
        if op.params.get("sink") != "collect":
            continue
        parts: list[Batch] = [results[i]["collected"].get(op.id, []) for i in range(op.parallelism)]
        per_subtask[ids[op.id]] = parts
        parts = [part for part in parts if size(part)]
        empty: Any = {} if op.params.get("columnar") else []
        collected[ids[op.id]] = concat(parts) if parts else empty
    return collected, per_subtask
