"""The job master's lifecycle of one dataflow job, as a pure state machine (private).

Events in (``start``, ``slice_ready``, ``slice_finished``, ``slice_failed``, ``timer_fired``,
``cancel``), instructions out (:class:`Deploy`, :class:`SendPeers`, :class:`CancelAttempt`,
:class:`StartTimer`, :class:`Finish`, :class:`Fail`); no sockets, no clock (``now`` is passed
in), so every failure path is tested without processes (``tests/test_jobmaster.py``). The glue
that performs the instructions is ``pydispatch._jobrun``.

Lifecycle (Flink's ``JobStatus``, reduced): CREATED -> RUNNING -> FINISHED; on a failure
RUNNING -> RESTARTING -> (after the strategy's delay) RUNNING with a new attempt, or FAILED when
the strategy gives up; CANCELED from any non-terminal state. Failover is the whole job (one
pipelined region: pydispatch's exchanges are all pipelined, and a keyed or rebalance exchange
joins every subtask into one region, as Flink's region failover would find). Results come only
from an attempt whose slices all finished; an attempt's results never mix with another's, so a
restarted job's output has nothing missing and nothing twice.

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
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    slices: int


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


class JobMaster:
    """One job's lifecycle (see the module docstring)."""

    def __init__(self, slices: int, strategy: RestartStrategy | None = None) -> None:
        if slices < 1:
            raise ValueError("a job has at least one slice")
        self.slices = slices
        self.strategy: RestartStrategy = strategy if strategy is not None else FixedDelay()
        self.state = CREATED
        self.attempt = 0
        self.restarts = 0
        self.failures: list[str] = []
        self._ready: dict[int, dict[int, str]] = {}
        self._results: dict[int, Any] = {}

    def start(self) -> list[Instruction]:
        if self.state != CREATED:
            raise RuntimeError(f"start: the job is {self.state}")
        return self._deploy()

    def _deploy(self) -> list[Instruction]:
        self.attempt += 1
        self.state = RUNNING
        self._ready = {}
        self._results = {}
        return [Deploy(self.attempt, self.slices)]

    def _current(self, attempt: int) -> bool:
        return attempt == self.attempt and self.state == RUNNING

    def slice_ready(self, attempt: int, index: int, endpoints: dict[int, str]) -> list[Instruction]:
        if not self._current(attempt):
            return []
        self._ready[index] = endpoints
        if len(self._ready) < self.slices:
            return []
        peers: dict[int, str] = {}
        for endpoints_of_slice in self._ready.values():
            peers.update(endpoints_of_slice)
        return [SendPeers(attempt, peers)]

    def slice_finished(self, attempt: int, index: int, result: Any) -> list[Instruction]:
        if not self._current(attempt):
            return []
        self._results[index] = result
        if len(self._results) < self.slices:
            return []
        self.state = FINISHED
        return [Finish(dict(sorted(self._results.items())))]

    def slice_failed(self, attempt: int, index: int, error: str, now: float) -> list[Instruction]:
        if not self._current(attempt):
            return []  # a stale attempt, or a second report of the same failure
        self.failures.append(f"attempt {attempt}, slice {index}: {error}")
        delay = self.strategy.next_delay(now)
        if delay is None:
            self.state = FAILED
            return [CancelAttempt(attempt), Fail(error)]
        self.state = RESTARTING
        self.restarts += 1
        return [CancelAttempt(attempt), StartTimer(attempt, delay)]

    def timer_fired(self, attempt: int) -> list[Instruction]:
        if self.state != RESTARTING or attempt != self.attempt:
            return []
        return self._deploy()

    def cancel(self) -> list[Instruction]:
        if self.state in TERMINAL:
            return []
        running = self.state == RUNNING
        self.state = CANCELED
        return [CancelAttempt(self.attempt)] if running else []
