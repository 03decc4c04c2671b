"""Ratios against baselines measured in the same run.

Each benchmark records its time under a group with ``record``; the baseline of a group is the
entries recorded with ``baseline=True``. At the end of the run a table gives, per group, each
entry's time, its throughput and its speed-up over each baseline. Times are pytest-benchmark's
minimum over rounds: on a shared machine the minimum is the least disturbed measurement.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The tests' pure-Python reference implementations double as the "per-key Python loop"
# baselines, so that the loop being beaten is the one whose results the tests check.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


@dataclass
class _Entry:
    name: str
    seconds: float
    items: int
    baseline: bool


_GROUPS: dict[str, list[_Entry]] = {}


class Recorder:
    def __init__(self, benchmark: Any) -> None:
        self._benchmark = benchmark

    def __call__(
        self,
        group: str,
        name: str,
        items: int,
        *,
        baseline: bool = False,
        seconds: float | None = None,
    ) -> None:
        """Record this benchmark's time (``seconds``: a time of several benchmarks' rounds,
        e.g. their best, for rounds run one per benchmark so as to alternate sides)."""
        if seconds is None:
            seconds = float(self._benchmark.stats.stats.min)
        _GROUPS.setdefault(group, []).append(_Entry(name, seconds, items, baseline))


@pytest.fixture
def record(benchmark: Any) -> Recorder:
    return Recorder(benchmark)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _GROUPS:
        return
    write = terminalreporter.write_line
    write("")
    write("ratios against the baseline measured in this run (min time over rounds):")
    for group, entries in _GROUPS.items():
        baselines = [e for e in entries if e.baseline]
        write(f"  {group}")
        for e in entries:
            rate = e.items / e.seconds
            line = f"    {e.name:<48} {e.seconds * 1e3:10.2f} ms {rate / 1e6:9.2f} M items/s"
            if e.baseline:
                line += "  (baseline)"
            else:
                line += "".join(
                    f"  {rate / (b.items / b.seconds):7.2f}x [{b.name}]" for b in baselines
                )
            write(line)
