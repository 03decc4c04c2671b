"""``pydispatch demo``: an embedded cluster running a real workload, then the partitioner.

Part one starts a dispatcher and three worker processes on loopback (one of them a "gpu-box"
with a GPU, memory and a zone label), maps a function over a million items, measures round
trips, and runs a batch of resource-constrained tasks, saying where each kind ran. Part two
partitions generated records natively, as dataflow jobs do between their operators.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from .. import partition as part

__all__ = ["run", "run_cluster", "square", "where_am_i"]

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


def square(x: int) -> int:
    return x * x


def where_am_i(tag: str) -> str:
    return tag


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_cluster(items: int = 1_000_000) -> None:
    from ..runtime.cluster import LocalCluster

    start = time.perf_counter()
    with LocalCluster(workers=2, slots=1) as cluster:
        cluster.start_worker(
            name="gpu-box", slots=2, resources={"gpu": 1, "memory": 8 * 2**30}, labels={"zone": "b"}
        )
        cluster.wait_for_workers(3)
        up = time.perf_counter() - start
        client = cluster.client()
        print(f"pydispatch demo: embedded cluster of 3 workers up in {up:.2f} s\n")

        begin = time.perf_counter()
        total = sum(client.map(square, range(items)))
        seconds = time.perf_counter() - begin
        assert total == sum(x * x for x in range(items))
        print(
            f"  map(square) over {items:,} items : {seconds:6.2f} s  "
            f"{items / seconds / 1e6:6.2f} M items/s  (result checked)"
        )

        trips = []
        for i in range(300):
            begin = time.perf_counter()
            client.submit(square, i).result()
            trips.append(time.perf_counter() - begin)
        print(
            f"  round trip, one task at a time : p50 {_percentile(trips, 0.5) * 1e6:6.0f} us  "
            f"p99 {_percentile(trips, 0.99) * 1e6:6.0f} us"
        )

        batch = (
            [client.submit(where_am_i, "gpu", resources={"gpu": 1}) for _ in range(8)]
            + [client.submit(where_am_i, "zone=b", labels={"zone": "b"}) for _ in range(8)]
            + [
                client.submit(where_am_i, "8 GiB", resources={"memory": 6 * 2**30})
                for _ in range(4)
            ]
            + [client.submit(where_am_i, "any") for _ in range(16)]
        )
        placed: dict[str, dict[str, int]] = {}
        for future in batch:
            kind = future.result(timeout=60)
            by_worker = placed.setdefault(kind, {})
            by_worker[future.worker] = by_worker.get(future.worker, 0) + 1
        print("  resource-constrained batch, where each kind ran:")
        for kind, by_worker in placed.items():
            ran = ", ".join(f"{worker} x{count}" for worker, count in sorted(by_worker.items()))
            print(f"    {kind:<7} -> {ran}")

        begin = time.perf_counter()
        impossible = client.submit(where_am_i, "never", resources={"gpu": 4})
        try:
            impossible.result(timeout=30)
        except Exception as error:  # the reason comes back as the task's exception
            print(
                f"  an impossible demand (4 GPUs) failed in "
                f"{(time.perf_counter() - begin) * 1e3:.0f} ms:\n    {str(error).splitlines()[0]}"
            )
        client.shutdown()
    print()


def _imbalance(loads: np.ndarray) -> float:
    """Largest partition over the mean: 1.00 is perfect balance."""
    return float(loads.max() / loads.mean())


def run(rows: int = 5_000_000, parts: int = 16, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    print(f"partitioning {rows:,} generated records across {parts} subtasks, natively\n")

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
