"""What the dispatcher counts as it works: plain integers and bucket counts, cheap on the hot path.

The dispatcher's loop handles tens of thousands of tasks a second; ``prometheus_client``'s own
``Histogram.observe`` takes a lock and costs about 1.1 us, its ``Counter.inc`` 0.4 us (measured
on this project's machine), which at 40k tasks/s and two observations a task would cost the loop
several percent. So the loop only bumps integers and bucket counts here (a ``bisect`` and an
add: about 0.07 us), and :mod:`.collector` turns them into Prometheus metric families at scrape
time: the exposition format, names and types stay ``prometheus_client``'s.

A :class:`Recorder` belongs to one dispatcher and is touched by its loop thread only; the HTTP
thread sees copies (:meth:`Recorder.copy`, made in the loop).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "CANCELLED",
    "FAILED",
    "FINISHED",
    "LOOP_BUCKETS",
    "QUEUE_WAIT_BUCKETS",
    "RETRIED",
    "RUN_TIME_BUCKETS",
    "SUBMITTED",
    "TALLY_NAMES",
    "Buckets",
    "Recorder",
]

#: Upper bounds (seconds) of the histograms' buckets (Prometheus ``le``): tasks run from tens
#: of microseconds to hours, queue waits likewise; a loop iteration is micro- to milliseconds.
RUN_TIME_BUCKETS: Final = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 3600.0
)  # fmt: skip
QUEUE_WAIT_BUCKETS: Final = RUN_TIME_BUCKETS
LOOP_BUCKETS: Final = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)

#: A client's tally (:attr:`Recorder.client_tasks`) is a list of counts at these indices: a
#: list and an index rather than an object with attributes, the cheapest to bump per task.
SUBMITTED, FINISHED, FAILED, CANCELLED, RETRIED = range(5)
TALLY_NAMES: Final = ("submitted", "finished", "failed", "cancelled", "retried")


@dataclass(slots=True)
class Buckets:
    """A histogram's state: a count per bucket (the last one above every bound) and the sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def observe_many(self, values: Sequence[float]) -> None:
        counts, bounds = self.counts, self.bounds
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1
        self.total += sum(values)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count of observations <= le)`` pairs, ``+Inf`` last (the exposition's form)."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip([*map(repr, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    def copy(self) -> Buckets:
        return Buckets(self.bounds, list(self.counts), self.total)


@dataclass(slots=True)
class Recorder:
    """A dispatcher's counters (see the module docstring); ints only grow."""

    submitted: int = 0
    #: Tasks by (client label, priority) (see :mod:`.client_labels`), a tally each: submitted,
    #: finished (a result or the user's error), failed, cancelled (as their client was told)
    #: and retried (attempts placed again), at the indices above.
    client_tasks: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    placed: int = 0  # attempts sent to slots (by the solver's answer or greedily)
    messages_in: int = 0
    messages_out: int = 0
    payload_bytes_in: int = 0  # the frames after a message's header
    payload_bytes_out: int = 0
    workers_removed: dict[str, int] = field(default_factory=dict)  # by reason
    queue_wait: Buckets = field(default_factory=lambda: Buckets(QUEUE_WAIT_BUCKETS))
    run_time: Buckets = field(default_factory=lambda: Buckets(RUN_TIME_BUCKETS))
    loop: Buckets = field(default_factory=lambda: Buckets(LOOP_BUCKETS))

    @property
    def submitted_by_priority(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for (_, priority), tally in self.client_tasks.items():
            out[priority] = out.get(priority, 0) + tally[SUBMITTED]
        return {priority: count for priority, count in out.items() if count}

    def tally(self, client: str, priority: int) -> list[int]:
        """The counts of ``client``'s tasks of ``priority`` (to bump)."""
        key = (client, priority)
        found = self.client_tasks.get(key)
        if found is None:
            found = self.client_tasks[key] = [0] * len(TALLY_NAMES)
        return found

    def worker_removed(self, reason: str) -> None:
        self.workers_removed[reason] = self.workers_removed.get(reason, 0) + 1

    def copy(self) -> Recorder:
        return Recorder(
            self.submitted,
            {key: list(tally) for key, tally in self.client_tasks.items()},
            self.placed,
            self.messages_in,
            self.messages_out,
            self.payload_bytes_in,
            self.payload_bytes_out,
            dict(self.workers_removed),
            self.queue_wait.copy(),
            self.run_time.copy(),
            self.loop.copy(),
        )
