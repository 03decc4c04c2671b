"""A whole plan run on the distributed executor's subtask runners, in this process.

Every subtask of every chain is a real ``SubtaskRunner``; what one sends another is queued and
pushed in order (no sockets: the data plane is tested elsewhere), watermarks included. A test
can stop between any two steps, take ``snapshot_state()`` of every runner, and start another
plan (another parallelism) from those snapshots with ``restore_state()``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from pydispatch.dataflow.keyed_state import KeyedSnapshot
from pydispatch.dataflow.operators import Batch, rows
from pydispatch.dataflow.subtask import SubtaskRunner
from pydispatch.plan import ExecutionGraph

__all__ = ["RunnerPipeline"]


class RunnerPipeline:
    def __init__(self, plan: ExecutionGraph, restore: dict[int, list[KeyedSnapshot]] | None = None):
        self.plan = plan
        self.queue: deque[tuple[str, Any, int, Any, Any]] = deque()
        self.runners: dict[tuple[int, int], SubtaskRunner] = {}
        for chain in plan.chains:
            for index in range(chain.parallelism):
                gid = plan.subtask(chain.id, index)
                runner = SubtaskRunner(plan, chain.id, index, self._sender(gid), self._marker(gid))
                if restore:
                    runner.restore_state(restore)
                self.runners[chain.id, index] = runner

    def _sender(self, gid: int) -> Any:
        def send(edge: int, index: int, batch: Batch) -> None:
            self.queue.append(("batch", gid, edge, index, batch))

        return send

    def _marker(self, gid: int) -> Any:
        def mark(edge: int, index: int, value: Any) -> None:
            self.queue.append(("mark", gid, edge, index, value))

        return mark

    def _target(self, edge: int, index: int) -> tuple[SubtaskRunner, int]:
        op_id = self.plan.job.edges[edge].target
        chain = next(c for c in self.plan.chains if op_id in c.operators)
        return self.runners[chain.id, index], op_id

    def drain(self) -> None:
        while self.queue:
            what, gid, edge, index, payload = self.queue.popleft()
            runner, op_id = self._target(edge, index)
            if what == "batch":
                runner.push(op_id, payload)
            else:
                runner.watermark(op_id, (gid, edge), payload)

    def run_sources(self, batch_records: int = 7) -> None:
        for (chain, _), runner in self.runners.items():
            if self.plan.chains[chain].operators and runner.head.kind == "source":
                runner.run_source(batch_records, lambda: False)
                self.drain()

    def finish(self) -> None:
        for chain in self.plan.chains:
            for index in range(chain.parallelism):
                self.drain()
                self.runners[chain.id, index].finish()
        self.drain()

    def snapshot(self) -> dict[int, list[KeyedSnapshot]]:
        """Every keyed operator's snapshots, one per subtask (as a checkpoint gathers them)."""
        parts: dict[int, list[KeyedSnapshot]] = {}
        for runner in self.runners.values():
            for op_id, snapshot in runner.snapshot_state().items():
                parts.setdefault(op_id, []).append(snapshot)
        return parts

    def collected(self, op_id: int) -> list[Any]:
        out: list[Any] = []
        for runner in self.runners.values():
            for batch in runner.collected.get(op_id, []):
                out.extend(rows(batch))
        return out
