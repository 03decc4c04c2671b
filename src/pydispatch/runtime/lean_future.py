"""A ``concurrent.futures.Future`` that makes its lock and lists only when someone needs them.

``Future()`` makes ten objects that CPython's cyclic garbage collector tracks: its
``Condition``, the condition's ``RLock``, ``deque`` and five bound methods, and two lists. A
client holds one future per outstanding task, so a burst of 20,000 tasks holds 220,000 of
them, and each of the full collections that their number sets off (four per such burst) walks
every tracked object of the process; none of them is garbage. Measured in the client of
``bench/bench_scale.py``: half of its CPU per task (20 us with the collector, 10 us without),
with the I/O thread stopped meanwhile (a collection holds the GIL).

A :class:`LeanFuture` is one tracked object until something needs its condition: a caller
waiting in ``result()`` before the outcome is in, a done-callback, ``wait()`` or
``as_completed()``, a state change under its lock. A future resolved before anyone waits on
it (every one of a burst's but the first few) never gets one: ``set_result`` and
``set_exception`` then only store the outcome, and ``result()``, ``exception()`` and
``done()`` read a finished future without locking (its state never changes again).

Safety: the condition is made under one module lock (:data:`_MAKING`), and the lock-free
resolution stores the outcome under that same lock after checking that no condition exists.
Nothing can wait, register a callback or change the state without the condition, so if there
is none when the outcome is stored nobody is to be woken, and whoever makes one afterwards
finds the outcome stored.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final, TypeVar

__all__ = ["LeanFuture"]

T = TypeVar("T")

_MAKING = threading.Lock()  # makes conditions; orders lock-free resolutions with them
_FINISHED: Final = "FINISHED"
_DONE: Final = frozenset({"CANCELLED", "CANCELLED_AND_NOTIFIED", _FINISHED})


def _after_fork() -> None:
    # A fork while another thread held the lock would leave the child's copy held for ever.
    global _MAKING
    _MAKING = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


class LeanFuture(Future[T]):
    """A ``Future`` whose condition and waiter lists are made on first use (see the module)."""

    def __init__(self) -> None:
        # What Future.__init__ sets (tests/runtime/test_lean_future.py checks the names
        # against this Python's Future), but the condition and lists.
        self._state = "PENDING"
        self._result = None
        self._exception = None
        self._lazy_condition: threading.Condition | None = None  # with the lists below

    _lazy_waiters: list[Any]  # made with the condition, before it (read only after it)
    _lazy_callbacks: list[Callable[[Future[T]], object]]

    def _made(self) -> threading.Condition:
        with _MAKING:
            condition = self._lazy_condition
            if condition is None:
                self._lazy_waiters = []
                self._lazy_callbacks = []
                condition = self._lazy_condition = threading.Condition()
            return condition

    # Future's own code reaches these by name: each makes them all on first use.

    @property
    def _condition(self) -> threading.Condition:
        condition = self._lazy_condition
        return self._made() if condition is None else condition

    @_condition.setter
    def _condition(self, condition: threading.Condition) -> None:
        self._made()
        self._lazy_condition = condition

    @property
    def _waiters(self) -> list[Any]:
        if self._lazy_condition is None:
            self._made()
        return self._lazy_waiters

    @_waiters.setter
    def _waiters(self, waiters: list[Any]) -> None:
        self._made()
        self._lazy_waiters = waiters

    @property
    def _done_callbacks(self) -> list[Callable[[Future[T]], object]]:
        if self._lazy_condition is None:
            self._made()
        return self._lazy_callbacks

    @_done_callbacks.setter
    def _done_callbacks(self, callbacks: list[Callable[[Future[T]], object]]) -> None:
        self._made()
        self._lazy_callbacks = callbacks

    # --------------------------------------------------------------- lock-free paths

    def set_result(self, result: T) -> None:
        if not self._resolved_alone(result, None):
            super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        if not self._resolved_alone(None, exception):
            super().set_exception(exception)

    def _resolved_alone(self, result: T | None, exception: BaseException | None) -> bool:
        """Store the outcome if no condition exists (nobody waits, nothing to call back);
        False if one does, or the future is done already (Future's own code then raises)."""
        with _MAKING:
            if self._lazy_condition is not None or self._state in _DONE:
                return False
            self._result = result
            self._exception = exception
            self._state = _FINISHED
            return True

    def result(self, timeout: float | None = None) -> T:
        if self._state != _FINISHED:
            return super().result(timeout)
        exception = self._exception
        if exception is None:
            return self._result  # type: ignore[return-value]
        del self  # (as Future does: the traceback must not hold the future in a cycle)
        raise exception

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == _FINISHED:
            return self._exception
        return super().exception(timeout)

    def done(self) -> bool:
        return self._state in _DONE
