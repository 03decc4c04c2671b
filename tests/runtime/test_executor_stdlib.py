"""The standard library's own executor checks (after CPython's test_concurrent_futures), each
run against a ``ProcessPoolExecutor`` and against a ``Client`` of a real two-worker cluster:
the same assertions hold for both. (The cancel-and-wait points pydispatch adds are in
test_executor_contract.py.)"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import multiprocessing
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import pytest

from _support.clusters import make_cluster
from pydispatch.runtime.cluster import LocalCluster

# Functions defined here travel by value to the cluster's slots, and by name to the pool's
# forked workers.

Make = Callable[[], cf.Executor]


def mul(x: int, y: int) -> int:
    return x * y


def capture(*args: object, **kwargs: object) -> tuple[tuple[object, ...], dict[str, object]]:
    return args, kwargs


def fails_at(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad {x}")
    return x


def _drain(values: Iterator[object], into: list[object]) -> None:
    for value in values:
        into.append(value)


class _Object:
    def method(self) -> None:
        pass


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with make_cluster(2, 1) as running:
        yield running


@pytest.fixture(params=["ProcessPoolExecutor", "Client"])
def make(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[Make]:
    made: list[cf.Executor] = []

    def new() -> cf.Executor:
        executor: cf.Executor
        if request.param == "Client":
            executor = cluster.client()
        else:
            executor = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
        made.append(executor)
        return executor

    yield new
    for executor in made:
        executor.shutdown(wait=True, cancel_futures=True)


def test_shutdown_with_cancel_futures_cancels_many_and_runs_the_rest(make: Make) -> None:
    executor = make()
    futures = [executor.submit(time.sleep, 0.1) for _ in range(50)]
    executor.shutdown(cancel_futures=True)
    cancelled = [f for f in futures if f.cancelled()]
    others = [f for f in futures if not f.cancelled()]
    assert len(cancelled) > 20
    for future in others:
        assert future.done()
        assert future.exception() is None
    # As CPython's test_cancel_futures asks: idle workers took some at once, and those ran.
    # (A Client sends even the tasks not sent yet, then the cancellation: an idle slot
    # starts the first task it is given before it reads a Kill that followed.)
    assert others


def test_results_survive_shutdown_without_wait_and_the_executor_dropped(make: Make) -> None:
    executor = make()
    results = executor.map(abs, range(-5, 5))
    executor.shutdown(wait=False)
    assert list(results) == [abs(v) for v in range(-5, 5)]
    executor = make()
    results = executor.map(abs, range(-5, 5))
    del executor
    gc.collect()
    assert list(results) == [abs(v) for v in range(-5, 5)]


def test_map_timeout_yields_what_came_before_it(make: Make) -> None:
    executor = make()
    results: list[object] = []
    with pytest.raises(cf.TimeoutError):
        _drain(executor.map(time.sleep, [0, 0, 3], timeout=1.5), results)
    assert results == [None, None]


def test_map_raises_at_the_failing_item(make: Make) -> None:
    executor = make()
    seen: list[object] = []
    with pytest.raises(ValueError, match="bad 3"):
        _drain(executor.map(fails_at, range(6)), seen)
    assert seen == [0, 1, 2]
    assert list(executor.map(mul, [1, 2, 3], [10, 20])) == [10, 40]  # shortest input
    assert list(executor.map(mul, [], [])) == []
    with pytest.raises(ValueError, match="chunksize"):
        executor.map(mul, [1], [2], chunksize=0)


def test_submit_keywords_and_no_stale_references(make: Make) -> None:
    executor = make()
    assert executor.submit(mul, 2, y=8).result(timeout=60) == 16
    assert executor.submit(capture, 1, self=2, fn=3).result(timeout=60) == (
        (1,),
        {"self": 2, "fn": 3},
    )
    with pytest.raises(TypeError):
        executor.submit(fn=capture, arg=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        executor.submit(arg=1)  # type: ignore[call-arg]
    target = _Object()
    collected = threading.Event()
    watch = weakref.ref(target, lambda _: collected.set())
    future = executor.submit(target.method)
    del target
    assert collected.wait(timeout=30), watch
    future.result(timeout=60)


def test_shutdown_waits_and_submit_after_it_raises(make: Make) -> None:
    executor = make()
    futures = [executor.submit(time.sleep, 0.05) for _ in range(20)]
    executor.shutdown()
    assert all(f.done() for f in futures)
    executor.shutdown()  # twice: nothing
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        executor.submit(mul, 1, 1)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        list(executor.map(abs, [1]))
    futures = []

    def leave_with_an_exception() -> None:
        with make() as executor:
            futures.append(executor.submit(time.sleep, 0.2))
            raise KeyError("leaving the block with an exception still waits")

    with pytest.raises(KeyError):
        leave_with_an_exception()
    assert futures[0].done()
