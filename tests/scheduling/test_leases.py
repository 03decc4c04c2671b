"""Leases, pure: the lease book and the scheduler's reservations, driven by events alone.

The lane itself, against real processes, is tested in ``tests/runtime/test_lane.py``.
"""

from __future__ import annotations

from typing import Any

from pydispatch.scheduling.leases import Leases
from pydispatch.scheduling.scheduler import (
    AttemptOutcome,
    NewTask,
    ReleaseWorker,
    RunAttempts,
    Scheduler,
)

C1, C2 = b"client-1", b"client-2"
W1, W2 = b"worker-1", b"worker-2"
S1, S2 = b"slot-1", b"slot-2"


# ------------------------------------------------------------------- the book, pure


def test_a_lease_needs_a_direct_endpoint_and_a_client_holds_one_open_lease_at_a_time() -> None:
    book = Leases()
    assert book.grant(C1, S1, W1) is None  # no endpoint known for it
    book.slot_endpoint(S1, "ipc:///tmp/s1")
    book.slot_endpoint(S2, "ipc:///tmp/s2")
    first = book.grant(C1, S1, W1)
    assert first is not None
    assert first.address == "ipc:///tmp/s1"
    assert book.grant(C1, S2, W1) is None  # one open lease per client
    second = book.grant(C2, S1, W1)  # another client may lease the same slot
    assert second is not None
    assert second.lease_id != first.lease_id
    assert book.get(first.lease_id, C2) is None  # nobody else's to use
    assert book.get(first.lease_id, C1) is first


def test_closed_leases_stay_until_their_slot_confirms_or_goes() -> None:
    book = Leases()
    book.slot_endpoint(S1, "tcp://127.0.0.1:1")
    lease = book.grant(C1, S1, W1)
    assert lease is not None
    assert book.any_open
    assert book.confirm_closed(lease.lease_id, S1) is None  # still open: no confirmation
    assert book.close_all() == [lease]
    assert not book.any_open
    assert book.close_all() == []  # closed once
    assert book.grant(C1, S1, W1) is not None  # a closed lease does not block a new one
    assert book.confirm_closed(lease.lease_id, S2) is None  # only its own slot confirms
    assert book.confirm_closed(lease.lease_id, S1) is lease
    assert book.confirm_closed(lease.lease_id, S1) is None  # once


def test_a_slot_or_worker_gone_ends_its_leases_only_if_the_owner_says_so() -> None:
    book = Leases()
    book.slot_endpoint(S1, "tcp://127.0.0.1:1")
    book.slot_endpoint(S2, "tcp://127.0.0.1:2")
    one, two = book.grant(C1, S1, W1), book.grant(C2, S2, W2)
    assert one is not None
    assert two is not None
    assert book.slot_gone(W2, S1) == []  # not W2's slot
    assert book.slot_gone(W1, S1) == [one]
    assert book.grant(C1, S1, W1) is None  # its endpoint is gone with it
    assert book.worker_gone(W2) == [two]
    assert len(book) == 0


# ------------------------------------------------------------ the scheduler, pure


def _one_slot(prefetch: int = 0) -> Scheduler:
    s = Scheduler(prefetch=prefetch)
    s.register_worker(W1, now=0, slots=1, slot_ids=[S1], resources={"cpu": 4})
    return s


def _placed(instructions: list[Any]) -> list[object]:
    return [x for i in instructions if isinstance(i, RunAttempts) for _, x in i.attempts]


def test_a_leased_slot_gets_nothing_until_its_lease_is_closed_and_confirmed() -> None:
    s = _one_slot()
    assert s.lease_slot(W1, S1)
    s.submit(C2, [NewTask(1, "queued")])
    assert _placed(s.schedule()) == []  # reserved for the lease holder
    assert s.waiting == 1
    s.close_lease(W1, S1)
    assert _placed(s.schedule()) == []  # it may still run a direct attempt (prefetch 0)
    assert s.unlease_slot(W1, S1) == []
    assert _placed(s.schedule()) == ["queued"]


def test_with_prefetch_a_closing_slot_queues_one_less_and_is_never_idle() -> None:
    s = _one_slot(prefetch=4)  # an unmeasured slot holds 1 + 2 attempts
    assert s.lease_slot(W1, S1)
    s.close_lease(W1, S1)
    # Constrained tasks wait for an idle slot, and a closing one is not; plain ones queue
    # there, one fewer than usual (the direct attempt may still be running).
    s.submit(C1, [NewTask(0, "constrained", resources={"cpu": 1})])
    s.submit(C1, [NewTask(i, f"plain{i}") for i in range(1, 5)])
    assert _placed(s.schedule()) == ["plain1", "plain2"]
    s.unlease_slot(W1, S1)
    assert _placed(s.schedule()) == ["plain3"]


def test_no_lease_while_tasks_wait_or_the_worker_drains() -> None:
    s = _one_slot()
    s.submit(C1, [NewTask(1, "a"), NewTask(2, "b")])
    s.schedule()
    assert s.waiting == 1
    assert not s.lease_slot(W1, S1)
    s2 = _one_slot()
    s2.drain_worker(W1, now=0)
    assert not s2.lease_slot(W1, S1)


def test_a_draining_worker_is_released_only_after_its_leases_are_confirmed() -> None:
    s = _one_slot()
    assert s.lease_slot(W1, S1)
    s.close_lease(W1, S1)
    assert s.drain_worker(W1, now=0) == []  # a direct attempt may still run there
    assert ReleaseWorker(W1) in s.unlease_slot(W1, S1)


def test_a_slot_is_not_leased_again_before_its_closed_lease_is_confirmed() -> None:
    s = _one_slot(prefetch=64)
    s.submit(C1, [NewTask(1, "lone")])
    (lone,) = [a for i in s.schedule() if isinstance(i, RunAttempts) for a, _ in i.attempts]
    assert s.lease_slot(W1, S1)
    s.attempts_finished(S1, [AttemptOutcome(lone, "ok")], now=0)
    s.close_lease(W1, S1)  # its holder's direct attempt may still run there
    s.submit(C2, [NewTask(1, "another lone one")])
    assert _placed(s.schedule()) == ["another lone one"]  # placed behind it (prefetch)...
    assert not s.lease_slot(W1, S1)  # ...but no second lease until the first is confirmed
    s.drain_worker(W1, now=0)
    assert s.unlease_slot(W1, S1) == []  # its placed attempt still runs: not released
    assert s.snapshot(0).running == 1


def test_closing_a_lease_on_a_slot_still_running_its_lone_task_hides_no_other_slot() -> None:
    s = Scheduler(prefetch=0)
    s.register_worker(W1, now=0, slots=2, slot_ids=[S1, S2])
    s.submit(C1, [NewTask(1, "long lone task")])
    assert _placed(s.schedule()) == ["long lone task"]
    assert s.lease_slot(W1, S1)
    s.submit(C2, [NewTask(1, "x1"), NewTask(2, "x2")])
    out = s.schedule()
    assert _placed(out) == ["x1"]  # on the other slot
    s.close_lease(W1, S1)  # x2 waits: the lease closes while the lone task still runs
    (x1,) = [a for i in out if isinstance(i, RunAttempts) for a, _ in i.attempts]
    s.attempts_finished(S2, [AttemptOutcome(x1, "ok")], now=1)
    assert _placed(s.schedule()) == ["x2"]  # the idle slot is used at once


def test_lease_ids_are_random_and_keep_attempt_ids_in_int64() -> None:
    """Lease ids cannot be found by counting (the capability itself is the 128-bit token and
    the holder's key); as the high half of direct attempt ids they stay below 2**31."""
    book = Leases()
    ids = []
    for n in range(64):
        slot = f"s{n}".encode()
        book.slot_endpoint(slot, f"tcp://x:{n + 1}")
        lease = book.grant(f"c{n}".encode(), slot, b"w")
        assert lease is not None
        ids.append(lease.lease_id)
    assert len(set(ids)) == 64
    assert all(0 < i < 2**31 for i in ids)
    assert sorted(ids) != list(range(min(ids), min(ids) + 64))  # not a sequence
    assert max(ids) > 64
    assert -(max(ids) << 32 | (2**32 - 1)) >= -(2**63)
