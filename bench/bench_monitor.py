"""The monitor's cost: benchmarks (a) and (c) of bench_dispatch.py on two clusters in the same
run, one with metrics on (counting on the dispatcher's hot path, its HTTP endpoint up) and one
with metrics off and no endpoint; and, apart, what one scrape of ``/metrics`` costs the
dispatcher (a Prometheus scrapes every 15 s by default: that cost is per scrape, not per task).

Run: ``PYTHONPATH=src python -m pytest bench/bench_monitor.py -q -s --benchmark-disable-gc``.
``bench_a_overhead`` and ``bench_c_overhead``: pytest-benchmark rounds of each side, one per
benchmark, alternating; each side's best round goes into the ratio table printed at the end of
the run, "metrics off" the baseline (conftest), with the dispatcher's CPU per round beside.
In the other two benchmarks the rounds alternate too (on, off, on, off, ...) within one
benchmark. Two figures per benchmark: the wall-clock rate (the best round
of each: on a shared machine the least disturbed one), and the CPU seconds the dispatcher
process used over all rounds (psutil), which a busy neighbour disturbs far less: the cost of
the counting itself.

``PYDISPATCH_BENCH_MONITOR_AA=1`` turns metrics off on the "on" side too (its endpoint stays
up): the noise floor of the same comparison, an A/A test.
"""

from __future__ import annotations

import gc
import os
import statistics
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from bench_dispatch import N_MAP, N_NOOP, WORKERS, _submit_gather, report, square, timed
from pydispatch.runtime.client import Client
from pydispatch.runtime.cluster import LocalCluster

ROUNDS = 15
_AA = os.environ.get("PYDISPATCH_BENCH_MONITOR_AA") == "1"
SCRAPES = 50


class _Side:
    def __init__(self, cluster: LocalCluster, client: Client) -> None:
        assert cluster.dispatcher is not None
        self.client = client
        self.dispatcher = psutil.Process(cluster.dispatcher.pid)
        self.http_url = ""

    def cpu(self) -> float:
        times = self.dispatcher.cpu_times()
        return float(times.user + times.system)


@pytest.fixture(scope="module")
def sides() -> Iterator[tuple[_Side, _Side]]:
    with (
        LocalCluster(workers=WORKERS, slots=1, http=True, metrics=not _AA) as on,
        LocalCluster(workers=WORKERS, slots=1, metrics=False) as off,
        on.client() as client_on,
        off.client() as client_off,
    ):
        side_on = _Side(on, client_on)
        side_on.http_url = on.http_url
        yield side_on, _Side(off, client_off)


def _alternating(
    name: str, items: int, unit: str, work: Callable[[Client], Any], on: _Side, off: _Side
) -> None:
    """ROUNDS alternating rounds of ``work`` on each side (after one warm-up each); prints
    the best rounds' rates and the dispatchers' CPU seconds per round, on against off."""
    work(on.client)
    work(off.client)
    seconds: dict[str, list[float]] = {"on": [], "off": []}
    cpu = {"on": 0.0, "off": 0.0}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(ROUNDS):
            for label, side in (("on", on), ("off", off)):
                before = side.cpu()
                seconds[label].append(timed(lambda side=side: work(side.client)))
                cpu[label] += side.cpu() - before
    finally:
        if enabled:
            gc.enable()
    best_on, best_off = min(seconds["on"]), min(seconds["off"])
    report(f"{name}, metrics on", items / best_on, {"metrics off": items / best_off}, unit, True)
    print(
        f"[{name}] dispatcher CPU per round: metrics on {cpu['on'] / ROUNDS * 1000:.1f} ms, "
        f"off {cpu['off'] / ROUNDS * 1000:.1f} ms (on/off {cpu['on'] / cpu['off']:.3f}); "
        f"median wall on/off "
        f"{statistics.median(seconds['on']) / statistics.median(seconds['off']):.3f}"
    )


# The same-run ratios (conftest's table at the end of the run: "metrics off" the baseline).
# One pytest-benchmark round per benchmark, parametrised so that the sides alternate round by
# round (off, on, off, on, ...: a noisy neighbour disturbs both alike); each side's best round
# is recorded after its last.
_BEST: dict[tuple[str, str], float] = {}
_CPU: dict[tuple[str, str], float] = {}
_SIDES = {"off": "metrics off, no endpoint", "on": "metrics on, HTTP endpoint up"}


def _mapped(client: Client) -> None:
    assert list(client.map(square, range(N_MAP)))[-1] == (N_MAP - 1) ** 2


def _overhead_round(
    benchmark: Any, record: Any, sides: tuple[_Side, _Side], side: str, round_: int,
    group: str, items: int, work: Callable[[Client], Any],
) -> None:  # fmt: skip
    chosen = sides[0 if side == "on" else 1]
    if not round_:
        work(chosen.client)  # the warm-up, outside the CPU count
    before = chosen.cpu()
    benchmark.pedantic(work, args=(chosen.client,), rounds=1, iterations=1)
    _CPU[(group, side)] = _CPU.get((group, side), 0.0) + chosen.cpu() - before
    best = min(_BEST.get((group, side), float("inf")), float(benchmark.stats.stats.min))
    _BEST[(group, side)] = best
    if round_ == ROUNDS - 1:
        record(group, _SIDES[side], items, baseline=side == "off", seconds=best)
        # The dispatcher's own CPU per round (psutil): what the counting costs it, which a
        # busy neighbour disturbs far less than the wall clock.
        cpu = _CPU[(group, side)] / ROUNDS
        record(f"{group}: dispatcher CPU", _SIDES[side], items, baseline=side == "off", seconds=cpu)


@pytest.mark.parametrize("side", ["off", "on"])
@pytest.mark.parametrize("round_", range(ROUNDS))
def bench_a_overhead(
    benchmark: Any, record: Any, sides: tuple[_Side, _Side], side: str, round_: int
) -> None:
    group = "a: 10k no-op tasks, monitoring overhead (best of alternating rounds)"
    _overhead_round(benchmark, record, sides, side, round_, group, N_NOOP, _submit_gather)


@pytest.mark.parametrize("side", ["off", "on"])
@pytest.mark.parametrize("round_", range(ROUNDS))
def bench_c_overhead(
    benchmark: Any, record: Any, sides: tuple[_Side, _Side], side: str, round_: int
) -> None:
    group = "c: map 100k items, monitoring overhead (best of alternating rounds)"
    _overhead_round(benchmark, record, sides, side, round_, group, N_MAP, _mapped)


def bench_a_noop_tasks_metrics_on_and_off(benchmark: Any, sides: tuple[_Side, _Side]) -> None:
    on, off = sides
    _alternating("a: 10k no-op tasks", N_NOOP, "tasks/s", _submit_gather, on, off)
    benchmark.pedantic(_submit_gather, args=(on.client,), rounds=1, iterations=1)


def bench_c_map_small_items_metrics_on_and_off(benchmark: Any, sides: tuple[_Side, _Side]) -> None:
    on, off = sides
    items = list(range(N_MAP))

    def mapped(client: Client) -> None:
        assert list(client.map(square, items))[-1] == (N_MAP - 1) ** 2

    _alternating("c: map 100k items", N_MAP, "items/s", mapped, on, off)
    benchmark.pedantic(mapped, args=(on.client,), rounds=1, iterations=1)


def bench_scrape_cost(benchmark: Any, sides: tuple[_Side, _Side]) -> None:
    on, _ = sides
    _submit_gather(on.client)  # histograms and counters with something in them

    def scrape() -> None:
        with urllib.request.urlopen(on.http_url + "/metrics", timeout=10) as answer:
            answer.read()

    scrape()
    before = on.cpu()
    seconds = [timed(scrape) for _ in range(SCRAPES)]
    cpu = (on.cpu() - before) / SCRAPES
    print(
        f"\n[scrape of /metrics, {WORKERS} workers] dispatcher CPU {cpu * 1000:.2f} ms a scrape, "
        f"wall median {statistics.median(seconds) * 1000:.2f} ms (at one scrape per 15 s: "
        f"{cpu / 15 * 100:.3f}% of a core)"
    )
    benchmark.pedantic(scrape, rounds=1, iterations=1)
