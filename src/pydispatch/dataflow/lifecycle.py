"""The job master's lifecycle of one dataflow job, as a pure state machine (private).

Events in (``start``, ``slice_ready``, ``slice_finished``, ``slice_failed``, ``timer_fired``,
``cancel``), instructions out (:class:`Deploy`, :class:`SendPeers`, :class:`CancelAttempt`,
:class:`StartTimer`, :class:`Finish`, :class:`Fail`); no sockets, no clock (``now`` is passed
in), so every failure path is tested without processes (``tests/test_jobmaster.py``). The glue
that performs the instructions is ``pydispatch.dataflow.job_run``.

Lifecycle (Flink's ``JobStatus``, reduced): CREATED -> RUNNING -> FINISHED; on a failure
RUNNING -> RESTARTING -> (after the strategy's delay) RUNNING with a new attempt, or FAILED when
the strategy gives up; CANCELED from any non-terminal state. Failover is by pipelined region
(Flink's ``RestartPipelinedRegionFailoverStrategy``): every exchange is pipelined, so a region
is a connected group of slices (:func:`regions_of`); a keyed or rebalance exchange joins every
slice into one region, a job of forward edges has one region per slice. A region's results
count only from an attempt whose slices all finished; attempts never mix, so a restarted job's
output has nothing missing and nothing twice.

Restart strategies (Flink's names and defaults):

- :class:`FixedDelay` (``restart-strategy.fixed-delay``): ``attempts`` restarts (default 1),
  ``delay`` seconds apart (default 1 s);
- :class:`ExponentialDelay`: ``initial`` 1 s, times ``multiplier`` 1.5 per restart up to ``max``
  60 s, back to ``initial`` after ``reset_after`` 3600 s without failure; ``jitter`` 0.1
  (Flink's defaults in 1.19); ``attempts`` unlimited unless given;
- :class:`FailureRate`: at most ``max_failures`` (1) failures within ``interval`` (60 s),
  ``delay`` (1 s) between restarts;
- :class:`NoRestart`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "TERMINAL",
    "CancelAttempt",
    "Deploy",
    "ExponentialDelay",
    "Fail",
    "FailureRate",
    "Finish",
    "FixedDelay",
    "Instruction",
    "JobMaster",
    "NoRestart",
    "RestartStrategy",
    "SendPeers",
    "StartTimer",
    "regions_of",
]

CREATED, RUNNING, RESTARTING = "CREATED", "RUNNING", "RESTARTING"
FINISHED, FAILED, CANCELED = "FINISHED", "FAILED", "CANCELED"
TERMINAL = frozenset({FINISHED, FAILED, CANCELED})


class RestartStrategy(Protocol):
    def next_delay(self, now: float) -> float | None:
        """Seconds to wait before restarting after a failure at ``now``, or None: give up."""


@dataclass
class NoRestart:
    def next_delay(self, now: float) -> float | None:
        return None


@dataclass
class FixedDelay:
    attempts: int = 1
    delay: float = 1.0
    _used: int = 0

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.delay < 0:
            raise ValueError("FixedDelay: attempts and delay must be >= 0")

    def next_delay(self, now: float) -> float | None:
        if self._used >= self.attempts:
            return None
        self._used += 1
        return self.delay


@dataclass
class ExponentialDelay:
    initial: float = 1.0
    max: float = 60.0
    multiplier: float = 1.5
    reset_after: float = 3600.0
    jitter: float = 0.1
    attempts: int | None = None
    seed: int | None = None
    _current: float = 0.0
    _last_failure: float | None = None
    _used: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.initial < 0 or self.max < self.initial or self.multiplier < 1:
            raise ValueError("ExponentialDelay: need 0 <= initial <= max and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("ExponentialDelay: jitter must be in [0, 1]")
        if self.seed is not None:
            self._rng.seed(self.seed)

    def next_delay(self, now: float) -> float | None:
        if self.attempts is not None and self._used >= self.attempts:
            return None
        self._used += 1
        quiet = self._last_failure is not None and now - self._last_failure >= self.reset_after
        if self._last_failure is None or quiet:
            self._current = self.initial
        else:
            self._current = min(self.max, self._current * self.multiplier)
        self._last_failure = now
        spread = self._current * self.jitter
        return max(0.0, self._current + self._rng.uniform(-spread, spread))


@dataclass
class FailureRate:
    max_failures: int = 1
    interval: float = 60.0
    delay: float = 1.0
    _failures: deque[float] = field(default_factory=deque)

    def next_delay(self, now: float) -> float | None:
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.interval:
            self._failures.popleft()
        if len(self._failures) > self.max_failures:
            return None
        return self.delay


@dataclass(frozen=True)
class Deploy:
    attempt: int
    slices: tuple[int, ...]  # the slice indices this attempt runs (one region)


@dataclass(frozen=True)
class SendPeers:
    attempt: int
    peers: dict[int, str]


@dataclass(frozen=True)
class CancelAttempt:
    attempt: int


@dataclass(frozen=True)
class StartTimer:
    attempt: int
    delay: float


@dataclass(frozen=True)
class Finish:
    results: dict[int, Any]  # slice index -> that slice's result


@dataclass(frozen=True)
class Fail:
    error: str


Instruction = Deploy | SendPeers | CancelAttempt | StartTimer | Finish | Fail


@dataclass
class _Region:
    slices: tuple[int, ...]
    attempt: int = 0
    state: str = CREATED  # RUNNING, RESTARTING or FINISHED (its slices all done)
    ready: dict[int, dict[int, str]] = field(default_factory=dict)
    results: dict[int, Any] = field(default_factory=dict)


class JobMaster:
    """One job's lifecycle (see the module docstring).

    ``regions``: the job's pipelined regions as groups of slice indices (no channel joins two
    regions); a failure restarts only its region, the others keep running and keep their
    results. Default: one region of every slice (the whole job)."""

    def __init__(
        self,
        slices: int,
        strategy: RestartStrategy | None = None,
        regions: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if slices < 1:
            raise ValueError("a job has at least one slice")
        groups = [tuple(range(slices))] if regions is None else [tuple(r) for r in regions]
        if sorted(i for g in groups for i in g) != list(range(slices)) or not all(groups):
            raise ValueError(f"regions must partition the slices 0..{slices - 1}: {groups}")
        self.slices = slices
        self.strategy: RestartStrategy = strategy if strategy is not None else FixedDelay()
        self.state = CREATED
        self.attempt = 0  # attempts deployed so far (each region's deployment takes one)
        self.restarts = 0
        self.failures: list[str] = []
        self._regions = [_Region(g) for g in groups]
        self._region_of = {i: r for r in self._regions for i in r.slices}

    @property
    def regions(self) -> list[tuple[int, ...]]:
        return [r.slices for r in self._regions]

    def attempt_of(self, index: int) -> int:
        """The attempt slice ``index`` currently belongs to."""
        return self._region_of[index].attempt

    def running_attempts(self) -> list[int]:
        return [r.attempt for r in self._regions if r.state == RUNNING]

    def start(self) -> list[Instruction]:
        if self.state != CREATED:
            raise RuntimeError(f"start: the job is {self.state}")
        out: list[Instruction] = []
        for region in self._regions:
            out += self._deploy(region)
        return out

    def _deploy(self, region: _Region) -> list[Instruction]:
        self.attempt += 1
        region.attempt = self.attempt
        region.state = RUNNING
        region.ready = {}
        region.results = {}
        self._update_state()
        return [Deploy(self.attempt, region.slices)]

    def _update_state(self) -> None:
        if self.state in TERMINAL:
            return
        states = {r.state for r in self._regions}
        if states == {FINISHED}:
            self.state = FINISHED
        elif RESTARTING in states:
            self.state = RESTARTING
        else:
            self.state = RUNNING

    def _current(self, attempt: int, index: int) -> _Region | None:
        region = self._region_of.get(index)
        if self.state in TERMINAL or region is None:
            return None
        if region.attempt != attempt or region.state != RUNNING:
            return None
        return region

    def slice_ready(self, attempt: int, index: int, endpoints: dict[int, str]) -> list[Instruction]:
        region = self._current(attempt, index)
        if region is None:
            return []
        region.ready[index] = endpoints
        if len(region.ready) < len(region.slices):
            return []
        peers: dict[int, str] = {}
        for endpoints_of_slice in region.ready.values():
            peers.update(endpoints_of_slice)
        return [SendPeers(attempt, peers)]

    def slice_finished(self, attempt: int, index: int, result: Any) -> list[Instruction]:
        region = self._current(attempt, index)
        if region is None:
            return []
        region.results[index] = result
        if len(region.results) < len(region.slices):
            return []
        region.state = FINISHED
        self._update_state()
        if self.state != FINISHED:
            return []
        results = {i: res for r in self._regions for i, res in r.results.items()}
        return [Finish(dict(sorted(results.items())))]

    def slice_failed(
        self, attempt: int, index: int, error: str, now: float, *, fatal: bool = False
    ) -> list[Instruction]:
        """``index`` -1: the attempt as a whole (e.g. it could not be deployed in time).
        ``fatal``: a failure no restart can mend (a worker cannot see an input file): the job
        fails at once, without asking the restart strategy."""
        region = next((r for r in self._regions if r.attempt == attempt), None)
        if region is None or self._current(attempt, region.slices[0]) is None:
            return []  # a stale attempt, or a second report of the same failure
        self.failures.append(f"attempt {attempt}, slice {index}: {error}")
        delay = None if fatal else self.strategy.next_delay(now)
        if delay is None:
            self.state = FAILED
            return [*(CancelAttempt(a) for a in self.running_attempts()), Fail(error)]
        region.state = RESTARTING
        self.restarts += 1
        self._update_state()
        return [CancelAttempt(attempt), StartTimer(attempt, delay)]

    def timer_fired(self, attempt: int) -> list[Instruction]:
        region = next((r for r in self._regions if r.attempt == attempt), None)
        if self.state in TERMINAL or region is None or region.state != RESTARTING:
            return []
        return self._deploy(region)

    def cancel(self) -> list[Instruction]:
        if self.state in TERMINAL:
            return []
        running = self.running_attempts()
        self.state = CANCELED
        return [CancelAttempt(a) for a in running]


def regions_of(slice_pairs: Sequence[tuple[int, int]], slices: int) -> list[list[int]]:
    """Connected groups of slices, given the (upstream slice, downstream slice) of every
    channel: the job's pipelined regions at slice granularity."""
    parent = list(range(slices))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in slice_pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(slices):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())
