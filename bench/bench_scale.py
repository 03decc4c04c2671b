"""A thousand workers on one dispatcher: what a task costs as the cluster grows.

Two parts:

* The pure scheduler (``bench_round_*``, pytest-benchmark): one placement round for a single
  task (submit it, place it, report it done) in a scheduler holding N registered workers of 2
  slots, N = 10 .. 3,000, as ratios to N = 10 measured in the same run. Flat is the goal: a
  round touches only the workers it places on. Three kinds of task: plain, pinned to one worker
  by label (a dataflow slice), and one demanding a resource every worker has.

* The cluster table (``python bench/bench_scale.py``): one real dispatcher process, N
  simulated workers of 2 slots (``_simulated_workers``: the real protocol, heartbeats every
  second, every task answered at once) and a real ``Client``, for N = 10, 100, 1,000 and
  3,000: time until all are registered; the idle dispatcher's CPU and RSS; a burst of 20k
  no-op tasks (tasks/s, and tasks per ``Run`` message); a lone task's round trip through the
  dispatcher (the simulated slots offer no direct lane), p50 and p99; and whether any worker
  was lost or any error seen. On a shared machine the rates follow its load; the dispatcher's
  CPU time per task in the bursts (idle heartbeats included) does much less.

Run::

    PYTHONPATH=src python -m pytest bench/bench_scale.py -q -s --benchmark-disable-gc
    PYTHONPATH=src python bench/bench_scale.py [--workers 10 100 1000 3000] [--rounds 3]

``bench_cluster_table`` runs the table for 10 and 100 workers under pytest
(``PYDISPATCH_BENCH_SCALE=10,100,1000,3000`` for more).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _simulated_workers import Counters, start_simulators
from pydispatch.runtime.client import Client, fetch_status
from pydispatch.scheduling import scheduler as s

SIZES = (10, 100, 1_000, 3_000)
BURST = 20_000
LONE = 1_000
IDLE_SECONDS = 5.0
TICKS = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ the pure scheduler


class _Round:
    """A scheduler with ``workers`` registered workers of 2 slots (prefetch as a dispatcher's),
    each slot's task duration measured, and one task placed and finished per call."""

    def __init__(self, workers: int, kind: str) -> None:
        self.scheduler = s.Scheduler(prefetch=64)
        self.names = [f"w{i}" for i in range(workers)]
        for name in self.names:
            identity = name.encode()
            self.scheduler.register_worker(
                identity,
                now=0.0,
                name=name,
                slots=2,
                resources={"cpu": 2.0},
                labels={"worker": name},
                slot_ids=[identity + b"/0", identity + b"/1"],
            )
        self.kind = kind
        self.task_id = 0
        self.round_seconds: list[float] = []
        # Measure every slot once, as a dispatcher's slots report their tasks' durations.
        for _ in range(workers * 2):
            self()
        self.round_seconds.clear()

    def _new_task(self) -> s.NewTask:
        self.task_id += 1
        if self.kind == "pinned":
            name = self.names[self.task_id % len(self.names)]
            return s.NewTask(self.task_id, None, labels={"worker": name})
        if self.kind == "resources":
            return s.NewTask(self.task_id, None, resources={"cpu": 1.0})
        return s.NewTask(self.task_id, None)

    def __call__(self) -> None:
        scheduler = self.scheduler
        scheduler.submit(b"client", [self._new_task()])
        started = time.perf_counter()
        instructions = scheduler.schedule()
        self.round_seconds.append(time.perf_counter() - started)
        for ins in instructions:
            if isinstance(ins, s.RunAttempts):
                outcomes = [s.AttemptOutcome(a, "ok", seconds=2e-6) for a, _ in ins.attempts]
                scheduler.attempts_finished(ins.slot, outcomes, 0.0)
        assert scheduler.waiting == 0


@pytest.mark.parametrize("kind", ["plain", "pinned", "resources"])
@pytest.mark.parametrize("workers", SIZES)
def bench_round_single_task(benchmark: Any, record: Any, workers: int, kind: str) -> None:
    one_round = _Round(workers, kind)
    benchmark.pedantic(one_round, rounds=2_000, iterations=1, warmup_rounds=50)
    group = f"one placement round for a single {kind} task (submit, place, finish)"
    record(group, f"{workers} workers", 1, baseline=workers == SIZES[0])


class _Registration:
    """A scheduler with ``workers`` registered workers; each call registers one more (with
    labels, a resource and 2 slots, as the dispatcher does) and removes it again."""

    def __init__(self, workers: int) -> None:
        self.scheduler = _Round(workers, "plain").scheduler
        self.seconds: list[float] = []

    def __call__(self) -> None:
        scheduler = self.scheduler
        started = time.perf_counter()
        scheduler.register_worker(
            b"newcomer",
            now=0.0,
            name="newcomer",
            slots=2,
            resources={"cpu": 2.0},
            labels={"worker": "newcomer", "node": "n"},
            slot_ids=[b"newcomer/0", b"newcomer/1"],
        )
        self.seconds.append(time.perf_counter() - started)
        scheduler.deregister_worker(b"newcomer", 0.0)


@pytest.mark.parametrize("workers", SIZES)
def bench_register_worker(benchmark: Any, record: Any, workers: int) -> None:
    register = _Registration(workers)
    benchmark.pedantic(register, rounds=2_000, iterations=1, warmup_rounds=50)
    record(
        "register one worker (and deregister it)",
        f"{workers} workers",
        1,
        baseline=workers == SIZES[0],
    )


def placement_rounds(sizes: tuple[int, ...], rounds: int = 3_000) -> dict[tuple[str, int], float]:
    """Median microseconds of ``Scheduler.schedule`` for one single-task round."""
    out: dict[tuple[str, int], float] = {}
    for kind in ("plain", "pinned", "resources"):
        for workers in sizes:
            one_round = _Round(workers, kind)
            for _ in range(rounds):
                one_round()
            out[kind, workers] = statistics.median(one_round.round_seconds) * 1e6
    for workers in sizes:
        register = _Registration(workers)
        for _ in range(rounds):
            register()
        out["registration", workers] = statistics.median(register.seconds) * 1e6
    return out


# ----------------------------------------------------------------- the cluster table


@dataclass
class Row:
    workers: int
    registered_seconds: float
    idle_cpu: float  # fraction of one core
    idle_rss: int  # bytes
    burst_rates: list[float]
    burst_cpu: float  # dispatcher CPU seconds per task during the bursts (robust to load)
    client_cpu: float  # this process's (the client's, both threads) CPU seconds per task
    tasks_per_run: float
    lone_p50: float  # seconds
    lone_p99: float
    status_workers: int
    problems: list[str]

    def cells(self) -> list[str]:
        return [
            f"{self.workers:,}",
            f"{self.registered_seconds:.2f} s",
            f"{self.idle_cpu * 100:.1f}% / {self.idle_rss / 2**20:.0f} MB",
            "/".join(f"{r / 1e3:.1f}k" for r in self.burst_rates) + " /s",
            f"{self.burst_cpu * 1e6:.1f} us",
            f"{self.client_cpu * 1e6:.1f} us",
            f"{self.tasks_per_run:.1f}",
            f"{self.lone_p50 * 1e3:.2f} / {self.lone_p99 * 1e3:.2f} ms",
            "none" if not self.problems else "; ".join(self.problems[:3]),
        ]


HEADER = [
    "workers",
    "all registered",
    "idle CPU / RSS",
    "burst of 20k no-ops",
    "dispatcher CPU per task",
    "client CPU per task",
    "tasks per Run",
    "lone round trip p50 / p99",
    "lost / errors",
]


def noop() -> None:
    return None


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def start_dispatcher() -> tuple[subprocess.Popen[str], str]:
    code = (
        "from pydispatch.runtime.dispatcher import run_dispatcher; "
        "run_dispatcher('tcp://127.0.0.1:*', job_masters=False)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"the dispatcher did not start: {line!r}")
    return process, line.rsplit(" ", 1)[1].strip()


def _burst(client: Client, count: int) -> float:
    started = time.perf_counter()
    futures = [client.submit(noop) for _ in range(count)]
    for future in futures:
        future.result(timeout=120)
    return count / (time.perf_counter() - started)


def _lone(client: Client, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        client.submit(noop).result(timeout=30)
        out.append(time.perf_counter() - started)
    return out


def measure(workers: int, rounds: int = 3, log: Callable[[str], None] = print) -> Row:
    dispatcher, address = start_dispatcher()
    fleet = None
    problems: list[str] = []
    try:
        fleet = start_simulators(address, workers)
        cpu_before = _cpu_seconds(dispatcher.pid)
        started = fleet.go()
        registered = fleet.wait_registered(time.monotonic() + 120)
        registering_cpu = _cpu_seconds(dispatcher.pid) - cpu_before  # the herd's cost to it
        if registered.registered < workers:
            problems.append(f"{workers - registered.registered} never registered")
        registered_seconds = registered.last_registered - started
        log(
            f"  {workers} workers: all registered in {registered_seconds:.2f} s "
            f"({registering_cpu:.2f} s of dispatcher CPU)"
        )
        time.sleep(3.0)  # paced heartbeats settle (workers told a longer interval: issue 21)
        fleet.counters()
        cpu_before, wall_before = _cpu_seconds(dispatcher.pid), time.monotonic()
        time.sleep(IDLE_SECONDS)
        idle_seconds = time.monotonic() - wall_before
        idle_cpu = (_cpu_seconds(dispatcher.pid) - cpu_before) / idle_seconds
        idle_rss = _rss(dispatcher.pid)
        beats = fleet.counters().heartbeats / idle_seconds
        memory = f"{idle_rss / 2**20:.0f} MB"
        log(f"  idle: {idle_cpu * 100:.1f}% CPU, {memory}, {beats:.0f} heartbeats/s")
        with Client(address) as client:
            _burst(client, BURST)  # warm-up: slots measure their tasks, prefetch opens
            fleet.counters()
            cpu_before, client_before = _cpu_seconds(dispatcher.pid), time.process_time()
            rates = [_burst(client, BURST) for _ in range(rounds)]
            burst_cpu = (_cpu_seconds(dispatcher.pid) - cpu_before) / (rounds * BURST)
            client_cpu = (time.process_time() - client_before) / (rounds * BURST)
            seen = fleet.counters()
            per_run = seen.attempts / max(1, seen.runs)
            log(
                f"  burst: {[round(r) for r in rates]} tasks/s, {per_run:.1f} tasks per Run, "
                f"{burst_cpu * 1e6:.1f} us of dispatcher CPU per task, "
                f"{client_cpu * 1e6:.1f} us of the client's"
            )
            _lone(client, 100)
            trips = sorted(_lone(client, LONE))
        p50, p99 = trips[len(trips) // 2], trips[int(len(trips) * 0.99)]
        log(f"  lone round trip: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms")
        status = fetch_status(address, timeout=30)
        total = Counters()
        total.add(fleet.stop())
        fleet = None
        if len(status.workers) != workers:
            problems.append(f"dispatcher lists {len(status.workers)} workers")
        if total.reregistered:
            problems.append(f"{total.reregistered} reregistered")
        if status.protocol_errors or status.failed:
            problems.append(f"{status.protocol_errors} protocol errors, {status.failed} failed")
        problems += total.errors[:5]
        return Row(
            workers,
            registered_seconds,
            idle_cpu,
            idle_rss,
            rates,
            burst_cpu,
            client_cpu,
            per_run,
            p50,
            p99,
            len(status.workers),
            problems,
        )
    finally:
        if fleet is not None:
            fleet.stop()
        dispatcher.terminate()
        try:
            dispatcher.wait(10)
        except subprocess.TimeoutExpired:
            dispatcher.kill()
            dispatcher.wait()


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


@pytest.mark.parametrize(
    "workers", [int(n) for n in os.environ.get("PYDISPATCH_BENCH_SCALE", "10,100").split(",")]
)
def bench_cluster_table(workers: int) -> None:
    row = measure(workers, rounds=1)
    print("\n" + table([row]))
    assert not row.problems, row.problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--rounds", type=int, default=3, help="measured bursts per size")
    parser.add_argument("--placement-only", action="store_true")
    parser.add_argument("--cluster-only", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    if not args.cluster_only:
        _placement_table(args.workers)
    if args.placement_only:
        return
    rows = []
    for workers in args.workers:
        rows.append(measure(workers, args.rounds))
    print()
    print(table(rows))
    print(f"load average after: {os.getloadavg()}")


def _placement_table(sizes: list[int]) -> None:
    rounds = placement_rounds(tuple(sizes))
    print("\none placement round (Scheduler.schedule) for a single task, and one worker's")
    print("registration (Scheduler.register_worker), median us:")
    print("| task | " + " | ".join(f"{n:,} workers" for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for kind in ("plain", "pinned", "resources", "registration"):
        cells = " | ".join(f"{rounds[kind, n]:.1f}" for n in sizes)
        print(f"| {kind} | {cells} |")


if __name__ == "__main__":
    main()
