"""Outcomes of attempts a restarted dispatcher did not place (its predecessor did): the slots
report them naming their task, and they resolve the task if it is still wanted. Pure: the
scheduler alone, no sockets, no clocks."""

from __future__ import annotations

from pydispatch.scheduling.orphans import OrphanOutcomes
from pydispatch.scheduling.scheduler import (
    AskToReregister,
    AttemptOutcome,
    NewTask,
    Resolve,
    RunAttempts,
    Scheduler,
)

C1 = b"client-1"
W1 = b"worker-1"
FIRST = 1_000  # this incarnation's first attempt id: lower ones are a predecessor's


def restarted() -> Scheduler:
    s = Scheduler(first_attempt_id=FIRST)
    s.register_worker(W1, now=0, slots=1)
    return s


def before_restart(attempt_id: int, task_id: int, value: str = "v") -> AttemptOutcome:
    return AttemptOutcome(attempt_id, "ok", value=value, owner=C1, task_id=task_id)


def test_an_outcome_before_its_task_is_resubmitted_resolves_it_on_submit() -> None:
    s = restarted()
    # The slot reports before the worker registered again: kept, and the sender asked to.
    assert s.attempts_finished(b"slot-x", [before_restart(7, 3)], now=1) == [
        AskToReregister(b"slot-x")
    ]
    out = s.submit(C1, [NewTask(3, payload="p"), NewTask(4, payload="q")])
    assert out == [Resolve(C1, 3, "ok", "v")]  # not run again
    assert [p for ins in s.schedule() if isinstance(ins, RunAttempts) for _, p in ins.attempts] == [
        "q"
    ]
    assert s.counters.adopted_results == 1
    assert s.counters.finished == 1


def test_a_queued_task_is_resolved_by_its_earlier_attempt_and_a_running_one_is_not() -> None:
    s = restarted()
    s.submit(C1, [NewTask(1, payload="a"), NewTask(2, payload="b")])
    placed = [a for ins in s.schedule() if isinstance(ins, RunAttempts) for a, _ in ins.attempts]
    assert len(placed) == 1
    assert placed[0] >= FIRST
    out = s.attempts_finished(W1, [before_restart(5, 2, "two"), before_restart(6, 1)], now=1)
    assert out == [Resolve(C1, 2, "ok", "two")]  # task 1 runs again: that attempt answers
    assert s.counters.discarded_late_results == 1
    assert s.snapshot(1).queued == 0


def test_a_late_outcome_of_our_own_removed_attempt_is_discarded_not_kept() -> None:
    s = restarted()
    s.submit(C1, [NewTask(1, payload="a", retries=0)])
    (attempt,) = [
        a for ins in s.schedule() if isinstance(ins, RunAttempts) for a, _ in ins.attempts
    ]
    s.tick(now=100)  # the worker is removed for silence: the task fails (no retries)
    late = AttemptOutcome(attempt, "ok", value="late", owner=C1, task_id=1)
    s.attempts_finished(W1, [late], now=101)
    assert s.counters.discarded_late_results == 1
    assert s.submit(C1, [NewTask(1, payload="a")]) == []  # nothing kept for it: it runs


def test_failures_and_anonymous_outcomes_are_not_adopted() -> None:
    s = restarted()
    s.submit(C1, [NewTask(1, payload="a")])
    failed = AttemptOutcome(3, "failed", error="x", owner=C1, task_id=1)
    anonymous = AttemptOutcome(4, "ok", value="v")
    assert s.attempts_finished(W1, [failed, anonymous], now=1) == []
    assert s.counters.discarded_late_results == 2
    assert s.snapshot(1).queued == 1


def test_orphans_expire_and_are_bounded() -> None:
    kept = OrphanOutcomes(keep_for=10.0, at_most=2)
    for task_id in range(3):
        kept.add((C1, task_id), before_restart(task_id, task_id), now=float(task_id))
    assert len(kept) == 2
    assert kept.dropped == 1
    kept.expire(now=11.5)  # task 1's (added at 1) is too old; task 2's is not
    assert kept.take((C1, 1)) is None
    taken = kept.take((C1, 2))
    assert taken is not None
    assert taken.value == "v"
