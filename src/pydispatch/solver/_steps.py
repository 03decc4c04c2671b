"""The clock of one solve: its deadline, and the record of each phase run or left out.

Every phase that is optional (a bound, an LP per topology level, the search) asks the log how
much time is left before it starts and records what it did (:class:`SolveStep`), so the caller
of ``solve`` sees in ``Placement.steps`` how its time limit shaped the result. Estimates of a
phase's cost are taken from phases of the same solve (the CSR build measures how fast this
machine walks the traffic graph right now, under whatever load it has).
"""

from __future__ import annotations

import math
import time

from ._result import SolveStep

__all__ = ["StepLog"]


class StepLog:
    """A deadline (``perf_counter`` seconds) and the steps taken so far."""

    def __init__(self, deadline: float = math.inf, time_limit: float = math.inf) -> None:
        self.deadline = deadline
        self.time_limit = time_limit  # the caller's, as given (reported by the placement)
        self.steps: list[SolveStep] = []
        # seconds the CSR build took: what one pass over the traffic graph costs right now
        self.graph_pass = 0.0

    @classmethod
    def within(cls, seconds: float) -> StepLog:
        return cls(time.perf_counter() + seconds)

    def until(self, seconds: float) -> StepLog:
        """The same record with a deadline ``seconds`` from now (or the outer one, if sooner):
        a phase's share of the time."""
        sub = StepLog(min(self.deadline, time.perf_counter() + max(seconds, 0.0)))
        sub.steps, sub.graph_pass = self.steps, self.graph_pass
        return sub

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def done(self, name: str, since: float, outcome: str = "done") -> None:
        """Record a phase that started at ``since`` (perf_counter) and has just ended."""
        self.steps.append(SolveStep(name, time.perf_counter() - since, outcome))

    def skip(self, name: str, why: str) -> None:
        self.steps.append(SolveStep(name, 0.0, f"skipped: {why}"))

    def affords(self, name: str, estimate: float) -> bool:
        """Whether a phase expected to take ``estimate`` seconds fits in what is left; a phase
        that does not is recorded as skipped."""
        left = self.left()
        if estimate <= left:
            return True
        self.skip(name, f"needs ~{estimate:.3f}s, {max(left, 0.0):.3f}s left")
        return False
