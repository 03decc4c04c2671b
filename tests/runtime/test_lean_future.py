"""LeanFuture: a Future that makes its condition and lists only when needed (issue 21).

Its contract is ``concurrent.futures.Future``'s (CPython's own checks of it, run against a real
cluster's futures, are in test_executor_stdlib.py); here: that it still holds across the
lock-free path and the condition made late, including the race between a caller starting to
wait and the outcome coming in, and that a client's futures cost the garbage collector one
tracked object each (a burst's futures used to cost eleven, and the full collections they set
off half the client's CPU).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import gc
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from _support.process_guard import eventually
from pydispatch.runtime.client import Client
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.runtime.lean_future import LeanFuture

CLUSTER = {"workers": 1, "slots": 2}


def noop() -> None:
    return None


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection meanwhile: counting tracked objects is then exact."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def tracked_made_by(make: object) -> int:
    assert callable(make)
    with collector_paused():
        before = len(gc.get_objects())
        kept = make()
        made = len(gc.get_objects()) - before
        del kept
    return made


def test_a_lean_future_has_every_attribute_of_this_pythons_future() -> None:
    # Future's own methods and wait()/as_completed() reach them by name.
    lean = LeanFuture()
    for name in vars(cf.Future()):
        assert hasattr(lean, name), name
    assert lean._waiters == []
    assert lean._done_callbacks == []
    assert isinstance(lean._condition, threading.Condition)


def test_resolved_and_read_without_waiting_it_never_makes_a_condition() -> None:
    future = LeanFuture()
    future.set_result(7)
    assert future.done()
    assert future.result() == 7
    assert future.exception() is None
    other = LeanFuture()
    other.set_exception(ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        other.result()
    assert isinstance(other.exception(), ValueError)
    assert future._lazy_condition is None
    assert other._lazy_condition is None


def test_a_thousand_futures_are_a_thousand_tracked_objects() -> None:
    def make() -> list[object]:
        futures: list[LeanFuture[int]] = [LeanFuture() for _ in range(1000)]
        for i, future in enumerate(futures):
            future.set_result(i)
            future.result()
        return futures

    plain = tracked_made_by(lambda: [cf.Future() for _ in range(1000)])
    assert tracked_made_by(make) <= 1001  # the futures and their list
    assert plain >= 10 * 1000  # what Future() makes (if this changes, so may the module's case)


def test_a_raised_exception_does_not_keep_its_future_alive() -> None:
    future = LeanFuture()
    future.set_exception(ValueError("bad"))
    alive = weakref.ref(future)
    with collector_paused():
        try:
            future.result()
        except ValueError as error:
            caught = error
        del future
        assert alive() is None  # freed by reference counting: no cycle through the traceback
    assert caught.__traceback__ is not None


def test_both_paths_refuse_a_second_outcome() -> None:
    lean = LeanFuture()
    lean.set_result(1)
    with pytest.raises(cf.InvalidStateError):
        lean.set_result(2)
    with pytest.raises(cf.InvalidStateError):
        lean.set_exception(ValueError())
    waited = LeanFuture()
    waited.add_done_callback(lambda _: None)  # the condition exists: Future's own path
    waited.set_result(1)
    with pytest.raises(cf.InvalidStateError):
        waited.set_result(2)
    assert lean.result() == waited.result() == 1
    cancelled = LeanFuture()
    assert cancelled.cancel()
    assert cancelled.cancelled()
    assert cancelled.done()
    with pytest.raises(cf.InvalidStateError):
        cancelled.set_result(1)
    with pytest.raises(cf.CancelledError):
        cancelled.result()


def test_callbacks_run_once_whether_added_before_or_after_the_outcome() -> None:
    calls: list[int] = []
    before = LeanFuture()
    before.add_done_callback(lambda f: calls.append(f.result()))
    before.set_result(1)
    after = LeanFuture()
    after.set_result(2)
    after.add_done_callback(lambda f: calls.append(f.result()))
    assert calls == [1, 2]


def test_a_caller_waiting_before_the_outcome_is_woken() -> None:
    future = LeanFuture()
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(future.result(timeout=60)))
    waiter.start()
    eventually(lambda: future._lazy_condition is not None and bool(future._condition._waiters),
               "the caller waits on the future's condition")  # fmt: skip
    future.set_result("ok")
    waiter.join(60)
    assert got == ["ok"]


def test_wait_and_as_completed_see_futures_resolved_before_and_after() -> None:
    early = [LeanFuture() for _ in range(3)]
    late = [LeanFuture() for _ in range(3)]
    for i, future in enumerate(early):
        future.set_result(i)
    done, pending = cf.wait(early + late, timeout=0)
    assert done == set(early)
    assert pending == set(late)
    resolver = threading.Thread(target=lambda: [f.set_result(9) for f in late])
    seen = []
    for future in cf.as_completed(early + late, timeout=60):
        seen.append(future)
        if len(seen) == len(early):
            resolver.start()
    resolver.join(60)
    assert set(seen) == set(early + late)
    assert [f.result() for f in late] == [9, 9, 9]


def test_no_wakeup_is_lost_between_a_caller_starting_to_wait_and_the_outcome() -> None:
    # The window the module's lock closes: one thread resolves futures in order while the
    # other waits on each, so many a wait starts just as its outcome is being stored.
    count = 20_000
    futures = [LeanFuture() for _ in range(count)]
    resolver = threading.Thread(target=lambda: [f.set_result(i) for i, f in enumerate(futures)])
    resolver.start()
    results = [future.result(timeout=60) for future in futures]
    resolver.join(60)
    assert results == list(range(count))


def test_awaitable_from_asyncio() -> None:
    async def main() -> list[int]:
        resolved, later = LeanFuture(), LeanFuture()
        resolved.set_result(1)
        asyncio.get_running_loop().call_later(0.01, later.set_result, 2)
        return [await asyncio.wrap_future(resolved), await asyncio.wrap_future(later)]

    assert asyncio.run(main()) == [1, 2]


def test_a_clients_outstanding_tasks_cost_one_tracked_object_each(cluster: LocalCluster) -> None:
    with Client(cluster.address) as client:
        client.submit(noop).result(timeout=60)  # hello, lane and imports out of the way
        with collector_paused():
            before = len(gc.get_objects())
            futures = [client.submit(noop) for _ in range(2000)]
            assert [f.result(timeout=60) for f in futures] == [None] * 2000
            made = len(gc.get_objects()) - before
        # 11 a task before (a Future's condition, its lock, deque, bound methods, lists); the
        # rest is the messages' and the lane's, which come and go.
        assert made < 2 * 2000, made
        assert sum(f._lazy_condition is not None for f in futures) < 2000


def test_a_forked_child_makes_conditions_even_if_the_lock_was_held_at_the_fork() -> None:
    import multiprocessing

    from pydispatch.runtime import lean_future

    def child(answer: multiprocessing.connection.Connection) -> None:
        future: LeanFuture[int] = LeanFuture()
        future.add_done_callback(lambda f: None)  # needs the condition (and the lock)
        future.set_result(5)
        answer.send(future.result(timeout=10))

    ours, theirs = multiprocessing.get_context("fork").Pipe()
    with lean_future._MAKING:  # held by this thread while the child is forked
        process = multiprocessing.get_context("fork").Process(target=child, args=(theirs,))
        process.start()
    try:
        assert ours.poll(60)
        assert ours.recv() == 5
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
