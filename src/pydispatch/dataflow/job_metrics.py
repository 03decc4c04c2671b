"""A cluster job's figures: per-subtask metrics summed into the job's, and made sendable.

Split from :class:`~pydispatch.dataflow.job_run.JobRun` because the arithmetic depends only on
the plan (which chain each subtask runs, the user's operator ids) and the slices' reports: the
job master calls it for live figures while the job runs and once for the final ones.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ..plan import ExecutionGraph
from .slice import SubtaskMetrics

__all__ = ["checkpoint_figures", "job_figures", "sendable"]


def job_figures(
    plan: ExecutionGraph,
    ids: Sequence[int],
    metrics: Mapping[int, SubtaskMetrics],
    started: float,
) -> dict[str, Any]:
    """Job figures from per-subtask ones (keyed by global subtask id); ``ids[i]``: operator
    i's user id (what ``records_in``/``records_out`` are keyed by); ``started``: when the job
    began (``time.monotonic()``)."""
    records_in: dict[int, int] = {ids[op.id]: 0 for op in plan.job.operators}
    records_out = dict(records_in)
    bytes_in, bytes_out = dict(records_in), dict(records_in)
    marks: dict[int, tuple[float, float]] = {}  # per operator: least watermark, newest mark
    busy: dict[str, float] = {}
    pressured: dict[str, float] = {}
    for gid, m in metrics.items():
        chain = plan.chains[int(plan.subtask_chain[gid])].name
        busy[chain] = busy.get(chain, 0.0) + m.busy
        pressured[chain] = pressured.get(chain, 0.0) + m.backpressured
        for op_id, n in m.records_in.items():
            records_in[ids[op_id]] += n
        for op_id, n in m.records_out.items():
            records_out[ids[op_id]] += n
        for op_id, n in m.operator_bytes_in.items():
            bytes_in[ids[op_id]] += n
        for op_id, n in m.operator_bytes_out.items():
            bytes_out[ids[op_id]] += n
        for op_id, (mark, newest) in m.watermarks.items():
            least, most = marks.get(ids[op_id], (mark, newest))
            marks[ids[op_id]] = (min(least, mark), max(most, newest))
    return {
        "records_in": records_in,
        "records_out": records_out,
        # Per operator, what crossed between subtasks (serialised batches); time windows in
        # streaming mode: the watermark and how far it trails the newest input's mark.
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "watermark": {op: mark for op, (mark, _) in marks.items()},
        "watermark_lag": {op: newest - mark for op, (mark, newest) in marks.items()},
        "bytes_shuffled": sum(m.bytes_out for m in metrics.values()),
        "batches_shuffled": sum(m.batches_out for m in metrics.values()),
        "max_in_flight_batches": max((m.max_in_flight for m in metrics.values()), default=0),
        "busy_seconds": busy,
        "backpressured_seconds": pressured,
        "seconds": time.monotonic() - started,
    }


def checkpoint_figures(
    completed: int, aborted: int, latest: int, duration: float, size: int, restored_from: str
) -> dict[str, Any]:
    """A checkpointing job's ``metrics()["checkpoints"]`` (the monitor shows them):
    checkpoints completed and aborted so far, the latest's id, how long the last one took
    from trigger to the last acknowledgement (seconds), its stored size (bytes), and the
    checkpoint or savepoint the job's latest deployment started from ("" if none)."""
    return {
        "completed": completed,
        "aborted": aborted,
        "latest": latest,
        "last_duration": duration,
        "last_size": size,
        "restored_from": restored_from,
    }


def sendable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as msgpack carries them: builtins only (a tuple becomes a list)."""
    plain: dict[str, Any] = msgspec.to_builtins(metrics, str_keys=False)
    return plain
