"""``pydispatch demo``: the partitioner on a generated data set, timed.

Until the dispatcher lands, the main demo shows what every later part stands on: splitting
record batches across parallel subtasks by key, natively.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from . import partition as part

_T = TypeVar("_T")


def _timed(fn: Callable[[], _T], repeat: int = 3) -> tuple[_T, float]:
    best = float("inf")
    result: _T | None = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return result, best


def _imbalance(loads: np.ndarray) -> float:
    """Largest partition over the mean: 1.00 is perfect balance."""
    return float(loads.max() / loads.mean())


def run(rows: int = 5_000_000, parts: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    print(f"pydispatch demo: partitioning {rows:,} generated records across {parts} subtasks\n")

    user = rng.integers(0, 1 << 40, rows, dtype=np.int64)
    amount = rng.random(rows)
    (_order, offsets), seconds = _timed(lambda: part.scatter(part.partition(user, parts), parts))
    print(
        f"  hash + scatter, int64 keys : {seconds * 1e3:7.1f} ms  "
        f"{rows / seconds / 1e6:7.1f} M keys/s   imbalance {_imbalance(np.diff(offsets)):.3f}"
    )

    batch = {"user": user, "amount": amount}
    parts_of_batch, seconds = _timed(lambda: part.split(batch, part.partition(user, parts), parts))
    total = sum(float(p["amount"].sum()) for p in parts_of_batch)
    print(
        f"  split a 2-column batch     : {seconds * 1e3:7.1f} ms  "
        f"sum of amounts kept: {np.isclose(total, float(amount.sum()))}"
    )

    words = np.array([f"word-{w}" for w in rng.zipf(1.2, 1_000_000) % 100_000], dtype=object)
    for scheme in ("hash", "flink", "kafka"):

        def by_scheme(scheme: str = scheme) -> np.ndarray:
            return part.partition(words, parts, scheme)

        ids, seconds = _timed(by_scheme)
        print(
            f"  {scheme:<5} scheme, 1M str keys : {seconds * 1e3:7.1f} ms  "
            f"{1e6 / seconds / 1e6:7.1f} M keys/s   imbalance "
            f"{_imbalance(np.bincount(ids, minlength=parts)):.3f} (Zipf-skewed words)"
        )
    result, seconds = _timed(lambda: part.two_choices(words, parts))
    print(
        f"  two choices, same words    : {seconds * 1e3:7.1f} ms  "
        f"{1e6 / seconds / 1e6:7.1f} M keys/s   imbalance {_imbalance(result.loads):.3f}"
    )
    print(
        "\nFlink's key groups for subtask 0 of 16 (max parallelism 128):",
        part.key_group_range(0, parts, 128),
    )
