"""The scheduler state machine, driven by events alone: no sockets, no clocks."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from pydispatch.scheduling.placer import PlacementRequest, WorkerCapacity, greedy_best_fit
from pydispatch.scheduling.scheduler import (
    AskToReregister,
    AttemptOutcome,
    ForgetWorker,
    Instruction,
    KillAttempts,
    NewTask,
    NotifyStarted,
    ReleaseWorker,
    Resolve,
    RunAttempts,
    Scheduler,
)

C1, C2 = b"client-1", b"client-2"
W1, W2 = b"worker-1", b"worker-2"


def runs(instructions: Sequence[Instruction]) -> dict[bytes, list[int]]:
    """worker -> attempt ids started by these instructions."""
    out: dict[bytes, list[int]] = {}
    for ins in instructions:
        if isinstance(ins, RunAttempts):
            out.setdefault(ins.worker, []).extend(a for a, _ in ins.attempts)
    return out


def payloads(instructions: Sequence[Instruction]) -> list[object]:
    return [p for ins in instructions if isinstance(ins, RunAttempts) for _, p in ins.attempts]


def resolved(instructions: Sequence[Instruction]) -> list[Resolve]:
    return [ins for ins in instructions if isinstance(ins, Resolve)]


def tasks(n: int, start: int = 0, **kwargs: object) -> list[NewTask]:
    return [NewTask(i, payload=i, **kwargs) for i in range(start, start + n)]  # type: ignore[arg-type]


def test_places_tasks_on_free_slots_and_resolves_on_done() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=2)
    assert s.submit(C1, tasks(3)) == []
    out = s.schedule()
    assert len(runs(out)[W1]) == 2
    # Placed is not started: the client hears of a start from the slot (see attempts_started).
    assert not [i for i in out if isinstance(i, NotifyStarted)]
    attempt = runs(out)[W1][0]
    slot = next(ins.slot for ins in out if isinstance(ins, RunAttempts))
    assert s.attempts_started(slot, [attempt]) == [NotifyStarted(C1, [0])]
    assert s.attempts_started(slot, [attempt]) == []  # once
    assert s.attempts_started(b"nobody", [attempt]) == []
    done = s.attempts_finished(W1, [AttemptOutcome(attempt, "ok", value="v")], now=1)
    assert resolved(done) == [Resolve(C1, 0, "ok", "v", worker=W1.hex())]
    # The freed slot takes the third task.
    assert payloads(s.schedule()) == [2]
    assert s.snapshot(1).queued == 0
    assert s.snapshot(1).running == 2


def test_tasks_wait_while_no_worker_is_registered() -> None:
    s = Scheduler()
    assert s.submit(C1, tasks(1, resources={"gpu": 8})) == []
    assert s.schedule() == []
    s.register_worker(W1, now=0, slots=1, resources={"gpu": 8})
    assert runs(s.schedule()) == {W1: [1]}


def test_impossible_demand_fails_at_once_with_reason() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=1, resources={"cpu": 4}, labels={"zone": "a"})
    (too_big,) = resolved(s.submit(C1, [NewTask(1, None, resources={"cpu": 5})]))
    assert too_big.status == "failed"
    assert "cpu=5" in too_big.error
    assert "cpu=4" in too_big.error
    (wrong_zone,) = resolved(s.submit(C1, [NewTask(2, None, labels={"zone": "b"})]))
    assert wrong_zone.status == "failed"
    assert "zone=b" in wrong_zone.error
    (negative,) = resolved(s.submit(C1, [NewTask(3, None, resources={"cpu": -1})]))
    assert "invalid demand" in negative.error
    (nan,) = resolved(s.submit(C1, [NewTask(5, None, resources={"cpu": float("nan")})]))
    assert "invalid demand" in nan.error
    # Busy but possible: waits.
    assert s.submit(C1, [NewTask(4, None, resources={"cpu": 4})]) == []


def test_queued_task_fails_when_the_only_capable_worker_leaves() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=1, resources={"gpu": 1})
    s.register_worker(W2, now=0, slots=1)
    s.submit(C1, [NewTask(1, None, resources={"gpu": 1}), NewTask(2, None, resources={"gpu": 1})])
    s.schedule()
    out = s.deregister_worker(W1, now=1)
    statuses = sorted((r.task_id, r.status) for r in resolved(out))
    assert statuses == [(1, "failed"), (2, "failed")]


def test_resources_and_labels_are_honoured() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=4, resources={"cpu": 2}, labels={"zone": "a"})
    s.register_worker(W2, now=0, slots=4, resources={"cpu": 8}, labels={"zone": "b"})
    s.submit(C1, [NewTask(i, i, resources={"cpu": 2}) for i in range(5)])
    s.submit(C1, [NewTask(10, 10, labels={"zone": "a"})])
    placed = runs(s.schedule())
    # W1 has cpu for one task, W2 for four; the labelled task goes to zone a (slot-only).
    assert len(placed[W1]) == 2
    assert len(placed[W2]) == 4
    snap = {w.name: w for w in s.snapshot(0).workers}
    assert snap[W1.hex()].free_resources == {"cpu": 0.0}
    assert snap[W2.hex()].free_resources == {"cpu": 0.0}


def test_priorities_order_tasks() -> None:
    s = Scheduler()
    s.submit(C1, [NewTask(i, f"low{i}") for i in range(3)])
    s.submit(C1, [NewTask(9, "high", priority=5)])
    s.register_worker(W1, now=0, slots=1)
    assert payloads(s.schedule()) == ["high"]


def test_fair_share_interleaves_clients() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=2)
    s.submit(C1, tasks(100))
    s.schedule()  # C1 holds both slots
    s.submit(C2, [NewTask(0, "short")])
    attempt = runs(s.schedule() or [])  # nothing free yet
    assert attempt == {}
    first = s.snapshot(0)
    assert first.running == 2
    # When one of C1's tasks ends, C2 (share 0) goes before C1's 98 queued tasks.
    (attempt_id,) = [a for a in range(1, 3)][:1]
    s.attempts_finished(W1, [AttemptOutcome(attempt_id, "ok")], now=1)
    assert payloads(s.schedule()) == ["short"]


def test_equal_shares_take_turns() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=1)
    s.submit(C1, tasks(10))
    (attempt,) = runs(s.schedule())[W1]
    s.submit(C2, [NewTask(100, "c2-a"), NewTask(101, "c2-b")])
    order = []
    for now in range(1, 5):
        # The slot frees: both clients hold nothing at this instant.
        s.attempts_finished(W1, [AttemptOutcome(attempt, "ok")], now=now)
        out = s.schedule()
        order += payloads(out)
        (attempt,) = runs(out)[W1]
    assert order == ["c2-a", 1, "c2-b", 2]


def test_worker_lost_requeues_with_numbered_attempts_and_late_result_is_discarded() -> None:
    s = Scheduler(heartbeat_timeout=10)
    s.register_worker(W1, now=0, slots=1)
    s.register_worker(W2, now=0, slots=1)
    s.submit(C1, tasks(2, retries=1))
    first = runs(s.schedule())
    s.heartbeat(W2, now=8)
    out = s.tick(now=11)
    assert ForgetWorker(W1, "heartbeat timeout") in out
    assert s.snapshot(11).queued == 1
    assert s.counters.retried == 1
    # W2 finishes its task, then takes over W1's.
    s.attempts_finished(W2, [AttemptOutcome(first[W2][0], "ok")], now=12)
    second = runs(s.schedule())
    assert list(second) == [W2]
    # W1 comes back with a late result: discarded, and asked to register again.
    late = s.attempts_finished(W1, [AttemptOutcome(first[W1][0], "ok")], now=13)
    assert late == [AskToReregister(W1)]
    assert s.counters.discarded_late_results == 1
    done = s.attempts_finished(W2, [AttemptOutcome(second[W2][0], "ok", value="x")], now=14)
    assert [(r.task_id, r.status) for r in resolved(done)] == [(first_task_of(first, W1), "ok")]


def test_a_paused_dispatcher_does_not_count_its_pause_as_its_workers_silence() -> None:
    s = Scheduler(heartbeat_timeout=1)
    s.register_worker(W1, now=0, slots=1)
    s.register_worker(W2, now=0, slots=1)
    s.submit(C1, tasks(2, retries=0))
    s.schedule()
    s.heartbeat(W1, now=0.5)
    s.heartbeat(W2, now=0.5)
    # The dispatcher stopped for 5 s from 0.6: on waking, its workers are not presumed lost.
    assert s.dispatcher_paused(5.0, now=5.6) == []
    assert s.tick(now=5.6) == []
    # Silence after the pause still counts: W2's heartbeats, queued meanwhile, arrive; W1's
    # never do, and a second later W1 is lost with its task.
    s.heartbeat(W2, now=5.7)
    out = s.tick(now=6.7)
    forgotten = [i for i in out if isinstance(i, ForgetWorker)]
    assert forgotten == [ForgetWorker(W1, "heartbeat timeout")]
    assert [r.status for r in resolved(out)] == ["failed"]


def first_task_of(placed: dict[bytes, list[int]], worker: bytes) -> int:
    # Attempt ids are handed out in task order in these tests: attempt n ran task n-1.
    return placed[worker][0] - 1


def test_retries_exhausted_fails_the_task() -> None:
    s = Scheduler(heartbeat_timeout=1)
    s.submit(C1, tasks(1, retries=1))
    out: list[Instruction] = []
    for round_ in range(2):
        s.register_worker(W1, now=10 * round_, slots=1)
        s.schedule()
        out = s.tick(now=10 * round_ + 5)
    (failure,) = resolved(out)
    assert failure.status == "failed"
    assert "gave up after 2 attempt(s)" in failure.error


def test_reregistration_under_same_identity_requeues_the_old_incarnations_work() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=1)
    s.submit(C1, tasks(1))
    (old_attempt,) = runs(s.schedule())[W1]
    s.register_worker(W1, now=1, slots=1)
    (new_attempt,) = runs(s.schedule())[W1]
    assert new_attempt != old_attempt
    assert s.attempts_finished(W1, [AttemptOutcome(old_attempt, "ok")], now=2) == []
    assert s.counters.discarded_late_results == 1
    assert resolved(s.attempts_finished(W1, [AttemptOutcome(new_attempt, "ok")], now=3))


def test_cancel_pending_and_running() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=1)
    s.submit(C1, tasks(3))
    (attempt,) = runs(s.schedule())[W1]
    (cancelled,) = resolved(s.cancel(C1, [2], force=False))
    assert cancelled.status == "cancelled"
    # Not forced: a running task keeps running.
    s.attempts_started(W1 + b"/0", [attempt])
    assert s.cancel(C1, [0], force=False) == []
    assert s.cancel(C1, [0], force=True) == [KillAttempts(W1, W1 + b"/0", [attempt])]
    out = s.attempts_finished(W1, [AttemptOutcome(attempt, "cancelled")], now=1)
    assert [(r.task_id, r.status) for r in resolved(out)] == [(0, "cancelled")]
    # The slot is free again and the last task runs; unknown ids are ignored.
    assert payloads(s.schedule()) == [1]
    assert s.cancel(C1, [42], force=True) == []


def test_a_task_prefetched_to_a_slot_is_cancelled_there_until_it_starts() -> None:
    s = Scheduler(prefetch=4)
    s.register_worker(W1, now=0, slots=1, slot_ids=[S1])
    s.submit(C1, tasks(3))
    running, waiting, _last = by_slot(s.schedule())[S1]
    # Nothing reported running there: the slot decides (skips it, or reports it started).
    assert s.cancel(C1, [1], force=False) == [KillAttempts(W1, S1, [waiting], force=False)]
    out = s.attempts_finished(S1, [AttemptOutcome(waiting, "cancelled")], now=1)
    assert [(r.task_id, r.status) for r in resolved(out)] == [(1, "cancelled")]
    # Started in the slot before the skip reached it: it ran, and its outcome is delivered.
    s.cancel(C1, [0], force=False)
    out = s.attempts_finished(S1, [AttemptOutcome(running, "ok", value="v")], now=2)
    assert [(r.task_id, r.status) for r in resolved(out)] == [(0, "ok")]
    assert s.snapshot(2).running == 1


def test_the_first_task_an_idle_slot_holds_counts_as_started_for_a_plain_cancel() -> None:
    # Cancelled in the same breath as submitted (shutdown(cancel_futures=True)): the task sent
    # to an idle slot starts as the slot reads it, so it runs; those behind it are skipped.
    s = Scheduler(prefetch=4)
    s.register_worker(W1, now=0, slots=1, slot_ids=[S1])
    s.submit(C1, tasks(3))
    first, second, third = by_slot(s.schedule())[S1]
    out = s.cancel(C1, [0, 1, 2], force=False)
    assert NotifyStarted(C1, [0]) in out
    assert KillAttempts(W1, S1, [second, third], force=False) in out
    # Those behind it are answered once the slot reports it running (then it waits for the
    # Kills before it starts another: Done.sync), not before (a short one is not followed by
    # that wait: their Kill could reach the slot after it started the next).
    assert resolved(out) == []
    out = s.attempts_started(S1, [first])
    assert [(r.task_id, r.status) for r in resolved(out)] == [(1, "cancelled"), (2, "cancelled")]
    # Forced, the first is killed too.
    s.submit(C1, tasks(1, start=3))
    s.attempts_finished(S1, [AttemptOutcome(first, "ok", value="v")], now=1)
    (fourth,) = by_slot(s.schedule())[S1]
    assert KillAttempts(W1, S1, [fourth], force=True) in s.cancel(C1, [3], force=True)


def test_behind_a_task_reported_running_a_cancel_is_answered_at_once() -> None:
    s = Scheduler(prefetch=4)
    s.register_worker(W1, now=0, slots=1, slot_ids=[S1])
    s.submit(C1, tasks(3))
    running, second, third = by_slot(s.schedule())[S1]
    # Cancelled before the slot reported its task running: answered once it does.
    assert s.cancel(C1, [1], force=False) == [KillAttempts(W1, S1, [second], force=False)]
    out = s.attempts_started(S1, [running])
    assert NotifyStarted(C1, [0]) in out
    assert [(r.task_id, r.status) for r in resolved(out)] == [(1, "cancelled")]
    # After: answered at once (the slot runs one task at a time: these wait behind it).
    out = s.cancel(C1, [2], force=False)
    assert [(r.task_id, r.status) for r in resolved(out)] == [(2, "cancelled")]
    assert KillAttempts(W1, S1, [third], force=False) in out
    assert s.cancel(C1, [0], force=False) == []  # started: it goes on
    # The slot's places stay taken until it reports the skipped attempts, then are free;
    # nothing is resolved twice.
    assert s.snapshot(1).running == 3
    done = [AttemptOutcome(second, "cancelled"), AttemptOutcome(third, "cancelled")]
    assert s.attempts_finished(S1, done, now=1) == []
    assert s.snapshot(1).running == 1
    # A skipped attempt on a slot that is lost is not re-queued: its task stays cancelled.
    s.submit(C1, tasks(1, start=3))
    (_fourth,) = by_slot(s.schedule())[S1]
    assert [r.task_id for r in resolved(s.cancel(C1, [3], force=False))] == [3]
    assert s.attempts_started(S1, [running]) == []  # again: nothing new
    out = s.slot_lost(W1, S1, running, "failed", "its process died", now=3)
    assert [(r.task_id, r.status) for r in resolved(out)] == [(0, "failed")]
    assert (s.snapshot(3).queued, s.snapshot(3).running) == (0, 0)


def test_force_cancel_when_worker_dies_resolves_cancelled_not_retried() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=1)
    s.submit(C1, tasks(1))
    s.schedule()
    s.cancel(C1, [0], force=True)
    out = s.deregister_worker(W1, now=1)
    assert [r.status for r in resolved(out)] == ["cancelled"]


def test_drain_finishes_running_then_releases() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=2)
    s.submit(C1, tasks(3))
    attempts = runs(s.schedule())[W1]
    assert s.drain_worker(W1, now=1) == []
    assert s.schedule() == []  # nothing new on a draining worker
    s.attempts_finished(W1, [AttemptOutcome(attempts[0], "ok")], now=2)
    out = s.attempts_finished(W1, [AttemptOutcome(attempts[1], "ok")], now=3)
    assert ReleaseWorker(W1) in out
    assert not s.knows_worker(W1)
    assert s.snapshot(3).queued == 1  # the third waits for another worker


def test_lost_outcome_from_draining_worker_requeues() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=1)
    s.submit(C1, tasks(1))
    (attempt,) = runs(s.schedule())[W1]
    s.drain_worker(W1, now=1)
    out = s.attempts_finished(W1, [AttemptOutcome(attempt, "lost", error="grace over")], now=2)
    assert ReleaseWorker(W1) in out
    assert not resolved(out)
    s.register_worker(W2, now=3, slots=1)
    assert runs(s.schedule()) == {W2: [2]}


def test_prefetch_places_extra_attempts_per_slot() -> None:
    s = Scheduler(prefetch=2)
    s.register_worker(W1, now=0, slots=2, resources={"gpu": 1})
    s.submit(C1, tasks(10))
    s.submit(
        C2, [NewTask(0, "gpu", resources={"gpu": 1}), NewTask(1, "gpu2", resources={"gpu": 1})]
    )
    placed = runs(s.schedule())[W1]
    # 2 slots x (1 + 2) attempts; the gpu task takes one of the 2 execution slots only
    # (resource holders are never prefetched), the second waits for the gpu.
    assert len(placed) == 6
    (worker,) = s.snapshot(0).workers
    assert worker.slots_used == 2
    assert worker.free_resources == {"gpu": 0.0}


def test_resource_tasks_go_where_they_can_start_not_into_a_prefetch_queue() -> None:
    s = Scheduler(prefetch=4)
    s.register_worker(W1, now=0, slots=1, resources={"gpu": 1})  # the tighter fit...
    s.submit(C1, [NewTask(0, "plain")])
    assert runs(s.schedule()) == {W1: [1]}  # ...but its only slot is busy
    s.register_worker(W2, now=0, slots=1, resources={"gpu": 2})
    s.submit(C1, [NewTask(1, "gpu", resources={"gpu": 1})])
    assert runs(s.schedule()) == {W2: [2]}


def test_labelled_tasks_wait_for_a_slot_not_in_a_prefetch_queue() -> None:
    # A dataflow job's slices are pinned by label and must all start to make progress: one
    # queued behind a busy slot would hold up its whole job.
    s = Scheduler(prefetch=4)
    s.register_worker(W1, now=0, slots=1, labels={"worker": "one"})
    s.submit(C1, [NewTask(0, "busy")])
    assert runs(s.schedule()) == {W1: [1]}
    s.submit(C2, [NewTask(1, "slice", labels={"worker": "one"})])
    assert runs(s.schedule()) == {}  # not prefetched...
    s.submit(C1, [NewTask(2, "plain")])
    assert runs(s.schedule()) == {W1: [2]}  # ...while a plain task still is (attempt 2)
    snapshot = s.snapshot(0)
    assert snapshot.queued == 1  # the slice waits for the slot
    (worker,) = snapshot.workers
    assert worker.slots_used == 1


def test_unknown_worker_heartbeat_asks_to_reregister() -> None:
    assert Scheduler().heartbeat(W1, now=0) == [AskToReregister(W1)]


def test_client_gone_drops_its_queue() -> None:
    s = Scheduler()
    s.submit(C1, tasks(5))
    s.client_gone(C1)
    s.register_worker(W1, now=0, slots=5)
    assert s.schedule() == []


def test_duplicate_task_id_is_ignored() -> None:
    s = Scheduler()
    s.submit(C1, tasks(1))
    s.submit(C1, tasks(1))
    assert s.snapshot(0).queued == 1


class _BadPlacer:
    def __call__(
        self, requests: Sequence[PlacementRequest], workers: Sequence[WorkerCapacity]
    ) -> list[tuple[int, int]]:
        return [(0, 0), (0, 0), (1, 0), (2, 7), (99, 0)]


def test_a_wrong_placer_cannot_overcommit() -> None:
    s = Scheduler(placer=_BadPlacer())
    s.register_worker(W1, now=0, slots=1)
    s.submit(C1, tasks(3))
    assert len(runs(s.schedule())[W1]) == 1
    assert s.snapshot(0).queued == 2


def test_greedy_best_fit_prefers_tightest_worker() -> None:
    workers = [
        WorkerCapacity(4, {"mem": 64}, {}),
        WorkerCapacity(4, {"mem": 8}, {}),
    ]
    assert greedy_best_fit([PlacementRequest({"mem": 8}, {})], workers) == [(0, 1)]
    assert greedy_best_fit([PlacementRequest({"mem": 9}, {})], workers) == [(0, 0)]


# ------------------------------------------------------------- property: exactly once

events = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(1, 4), st.integers(0, 2)),
        st.tuples(st.just("register"), st.integers(0, 2), st.integers(0, 2)),
        st.tuples(st.just("finish"), st.integers(0, 50), st.sampled_from(["ok", "error", "lost"])),
        st.tuples(st.just("tick"), st.integers(0, 2), st.integers(0, 0)),
        st.tuples(st.just("cancel"), st.integers(0, 40), st.booleans()),
        st.tuples(st.just("drain"), st.integers(0, 2), st.integers(0, 0)),
        st.tuples(st.just("leave"), st.integers(0, 2), st.integers(0, 0)),
    ),
    max_size=60,
)


@given(events)
def test_every_task_resolves_exactly_once_and_slots_balance(script: list[tuple]) -> None:  # type: ignore[type-arg]
    s = Scheduler(heartbeat_timeout=5)
    now = 0.0
    next_id = 0
    submitted: set[int] = set()
    outcomes: dict[int, int] = {}
    running: dict[int, bytes] = {}  # attempt -> worker
    workers = [b"w0", b"w1", b"w2"]

    def apply(out: list[Instruction]) -> None:
        for ins in out:
            if isinstance(ins, Resolve):
                outcomes[ins.task_id] = outcomes.get(ins.task_id, 0) + 1
            elif isinstance(ins, ForgetWorker):
                for a in [a for a, w in running.items() if w == ins.worker]:
                    del running[a]
        for worker, attempts in runs(out).items():
            for a in attempts:
                running[a] = worker

    for kind, a, b in script:
        now += 1
        if kind == "submit":
            new = [NewTask(next_id + i, None, retries=b) for i in range(a)]
            submitted.update(t.task_id for t in new)
            next_id += a
            apply(s.submit(C1, new))
        elif kind == "register":
            apply(s.register_worker(workers[a], now=now, slots=b + 1))
        elif kind == "finish" and running:
            attempt = sorted(running)[a % len(running)]
            worker = running.pop(attempt)
            apply(s.attempts_finished(worker, [AttemptOutcome(attempt, b)], now=now))
        elif kind == "tick":
            now += 6 * a
            for w in workers[:1]:
                apply(s.heartbeat(w, now))
            apply(s.tick(now))
        elif kind == "cancel":
            apply(s.cancel(C1, [a], force=b))
        elif kind == "drain":
            apply(s.drain_worker(workers[a], now))
        elif kind == "leave":
            apply(s.deregister_worker(workers[a], now))
        apply(s.schedule())
        for snap in s.snapshot(now).workers:
            assert 0 <= snap.slots_used <= snap.slots
    assert all(count == 1 for count in outcomes.values()), outcomes
    assert set(outcomes) <= submitted
    # Whatever has not resolved is still queued or running, never forgotten.
    final = s.snapshot(now)
    assert len(submitted) - len(outcomes) == final.queued + final.running


# --------------------------------------------------------------------- slots (own sockets)

S1, S2 = b"worker-1/slot-a", b"worker-1/slot-b"


def by_slot(instructions: Sequence[Instruction]) -> dict[bytes, list[int]]:
    out: dict[bytes, list[int]] = {}
    for ins in instructions:
        if isinstance(ins, RunAttempts):
            out.setdefault(ins.slot, []).extend(a for a, _ in ins.attempts)
    return out


def test_attempts_go_to_ready_slots_least_loaded_first() -> None:
    s = Scheduler(prefetch=1)
    s.register_worker(W1, now=0, slots=2, slot_ids=[S1])  # the second slot is still starting
    s.submit(C1, tasks(5))
    assert {slot: len(ids) for slot, ids in by_slot(s.schedule()).items()} == {S1: 2}
    s.slot_ready(W1, S2, now=1)
    assert {slot: len(ids) for slot, ids in by_slot(s.schedule()).items()} == {S2: 2}
    # A slot beyond the declared count is ignored: capacity never exceeds what was declared.
    s.slot_ready(W1, b"worker-1/slot-c", now=1)
    assert s.schedule() == []


def test_results_are_accepted_only_from_the_slot_holding_the_attempt_or_its_worker() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=2, slot_ids=[S1, S2])
    s.submit(C1, tasks(2))
    placed = by_slot(s.schedule())
    a1, a2 = placed[S1][0], placed[S2][0]
    assert s.attempts_finished(S2, [AttemptOutcome(a1, "ok")], now=1) == []  # not S2's
    assert s.counters.discarded_late_results == 1
    assert [
        r.task_id for r in resolved(s.attempts_finished(S1, [AttemptOutcome(a1, "ok")], 1))
    ] == [0]
    # The worker itself may report its slots' attempts (a cancel before the attempt started).
    assert [
        r.status for r in resolved(s.attempts_finished(W1, [AttemptOutcome(a2, "cancelled")], 1))
    ] == ["cancelled"]


def test_a_lost_slot_settles_its_running_attempt_and_requeues_the_rest_uncounted() -> None:
    s = Scheduler(prefetch=2)
    s.register_worker(W1, now=0, slots=1, slot_ids=[S1])
    s.submit(C1, tasks(3, retries=0))
    running, *queued = by_slot(s.schedule())[S1]
    out = s.slot_lost(W1, S1, running, "failed", "the slot died (exit code 3)", now=1)
    (crashed,) = resolved(out)
    assert (crashed.task_id, crashed.status) == (0, "failed")
    assert "exit code 3" in crashed.error
    assert (s.snapshot(1).queued, s.snapshot(1).running) == (2, 0)
    assert s.schedule() == []  # no slot left until its replacement is ready
    s.slot_ready(W1, S2, now=2)
    again = by_slot(s.schedule())[S2]
    # retries=0, yet the two that never started run: losing them was not their attempt.
    assert len(again) == 2
    done = s.attempts_finished(S2, [AttemptOutcome(a, "ok") for a in again], now=3)
    assert sorted(r.task_id for r in resolved(done)) == [1, 2]
    # A late report from the lost slot is discarded (an unknown sender is asked to register:
    # a slot process ignores that, its worker replaced it already).
    late = s.attempts_finished(S1, [AttemptOutcome(queued[0], "ok")], now=3)
    assert late == [AskToReregister(S1)]
    assert s.counters.discarded_late_results == 1


def test_force_cancel_kills_through_the_slot_and_a_lost_drain_attempt_is_retried() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=2, slot_ids=[S1, S2])
    s.submit(C1, tasks(2))
    placed = by_slot(s.schedule())
    (kill,) = s.cancel(C1, [0], force=True)
    assert kill == KillAttempts(W1, S1, placed[S1])
    out = s.slot_lost(W1, S1, placed[S1][0], "cancelled", "force-cancelled (slot killed)", 1)
    assert [(r.task_id, r.status) for r in resolved(out)] == [(0, "cancelled")]
    # Abandoned by a draining worker: lost, re-queued (counted as an attempt).
    assert s.slot_lost(W1, S2, placed[S2][0], "lost", "drain grace ended", now=1) == []
    assert (s.snapshot(1).queued, s.counters.retried) == (1, 1)
    # Unknown slots and workers: nothing happens, or the worker must register again.
    assert s.slot_lost(W1, b"nobody", 0, "failed", "", now=1) == []
    assert s.slot_lost(W2, S1, 0, "failed", "", now=1) == [AskToReregister(W2)]


@given(st.lists(st.integers(0, 4), max_size=8), st.integers(0, 40), st.integers(0, 3))
def test_slot_only_rounds_fill_free_places_idle_slots_first_spread_while_untimed(
    slots: list[int], count: int, prefetch: int
) -> None:
    s = Scheduler(prefetch=prefetch)
    for index, n in enumerate(slots):
        s.register_worker(b"w%d" % index, now=0, slots=n)
    window = 1 + min(prefetch, 2)  # untimed slots queue at most 2
    total = sum(slots)
    s.submit(C1, tasks(count))
    held = [len(ids) for ids in by_slot(s.schedule()).values()]
    assert sum(held) == min(count, total * window)
    assert all(n <= window for n in held)
    # No task waits in a queue while a slot is idle; untimed slots are filled evenly.
    assert len(held) == min(count, total)
    assert not held or max(held) - min(held) <= 1


def _timed(s: Scheduler, seconds: float) -> None:
    """Run one task on every idle slot and report it took ``seconds``."""
    s.submit(C2, tasks(s.total_slots, start=10_000))
    for ins in s.schedule():
        if isinstance(ins, RunAttempts):
            outcomes = [AttemptOutcome(a, "ok", seconds=seconds) for a, _ in ins.attempts]
            s.attempts_finished(ins.slot, outcomes, now=1)


def test_a_burst_fills_timed_slots_windows_rather_than_a_sliver_on_each() -> None:
    s = Scheduler(prefetch=64, queue_budget=0.002)
    for index in range(10):
        s.register_worker(b"w%d" % index, now=0, slots=2)
    _timed(s, 2e-5)  # 2 ms of 20 us tasks: 100, so every slot may hold 1 + 64
    s.submit(C1, tasks(200))
    sizes = sorted(len(ins.attempts) for ins in s.schedule() if isinstance(ins, RunAttempts))
    assert sizes == [5, 65, 65, 65]  # four Run messages, not twenty of ten
    # A lone task goes to an idle slot, not behind a window.
    s.submit(C1, [NewTask(500, "lone")])
    ((slot, _),) = by_slot(s.schedule()).items()
    (worker,) = [w for w in s.snapshot(0).workers if slot.startswith(bytes.fromhex(w.name))]
    assert worker.slots_used == 1
    # Enough work keeps every slot busy, each window full: the idle ones get 65 each, the
    # two partly filled ones what they still have room for.
    s.submit(C1, tasks(20 * 65, start=1_000))
    assert sorted(len(ids) for ids in by_slot(s.schedule()).values()) == [60, 64] + [65] * 15
    assert s.worker_table.free_places == 0


def test_slow_timed_slots_take_one_task_each() -> None:
    s = Scheduler(prefetch=64, queue_budget=0.002)
    for index in range(4):
        s.register_worker(b"w%d" % index, now=0, slots=2)
    _timed(s, 0.05)  # 50 ms tasks: no window at all
    s.submit(C1, tasks(20))
    assert sorted(len(ids) for ids in by_slot(s.schedule()).values()) == [1] * 8


def test_a_slot_queues_about_the_budget_of_work_measured_on_it() -> None:
    s = Scheduler(prefetch=8, queue_budget=0.002)
    s.register_worker(W1, now=0, slots=2, slot_ids=[S1, S2])
    s.submit(C1, tasks(40))
    placed = by_slot(s.schedule())
    # Nothing measured yet: a running task and 2 queued per slot.
    assert {slot: len(ids) for slot, ids in placed.items()} == {S1: 3, S2: 3}
    # S1's tasks take 10 ms: nothing may wait behind its running one. S2's take 100 µs:
    # 2 ms of them is 20, capped by prefetch at 8 queued.
    slow = s.attempts_finished(S1, [AttemptOutcome(a, "ok", seconds=0.01) for a in placed[S1]], 1)
    quick = s.attempts_finished(S2, [AttemptOutcome(a, "ok", seconds=1e-4) for a in placed[S2]], 1)
    assert len(resolved(slow)) == len(resolved(quick)) == 3
    again = {slot: len(ids) for slot, ids in by_slot(s.schedule()).items()}
    assert again == {S1: 1, S2: 9}


def test_a_constrained_task_goes_to_an_idle_slot_not_the_roomiest() -> None:
    s = Scheduler(prefetch=8)
    s.register_worker(W1, now=0, slots=2, resources={"cpu": 4}, slot_ids=[S1, S2])
    s.submit(C1, tasks(2))
    placed = by_slot(s.schedule())
    # S2's task took 10 ms: it may hold its running task only. S1 runs one, room for 8.
    s.attempts_finished(S2, [AttemptOutcome(placed[S2][0], "ok", seconds=0.01)], now=1)
    s.submit(C1, [NewTask(100, "cpu-task", resources={"cpu": 1}), NewTask(101, "plain")])
    out = s.schedule()
    assert {p: slot for slot, ids in by_slot(out).items() for p in ids} == {
        placed[S1][0] + 2: S2,  # the constrained one: idle S2, though S1 has more room
        placed[S1][0] + 3: S1,  # the plain one: the roomiest
    }


def test_an_unreachable_slot_gets_nothing_more_and_its_worker_report_settles_it() -> None:
    s = Scheduler(prefetch=2)
    s.register_worker(W1, now=0, slots=2, slot_ids=[S1, S2])
    s.submit(C1, tasks(2, retries=0))
    placed = by_slot(s.schedule())
    assert s.slot_unreachable(W1, S1) == []
    s.submit(C1, tasks(4, start=10))
    # Only S2 takes work now: its room is 3 - 1 held.
    assert {slot: len(ids) for slot, ids in by_slot(s.schedule()).items()} == {S2: 2}
    # A result from S1 still counts, and frees nothing on it.
    (done,) = resolved(s.attempts_finished(S1, [AttemptOutcome(placed[S1][0], "ok")], now=1))
    assert done.status == "ok"
    assert s.schedule() == []
    # Task 1 (retries=0) was running on S2 when it died: it fails for good rather than come
    # back uncounted (a task that crashes its slot must not loop); 10 and 11 never started.
    s.slot_unreachable(W1, S2)
    crashing = placed[S2][0]
    out = s.slot_lost(W1, S2, crashing, "lost", "the dispatcher could not reach its slot", 2)
    assert [(r.task_id, r.status) for r in resolved(out)] == [(1, "failed")]
    assert (s.snapshot(2).queued, s.counters.retried) == (4, 0)
    # A new slot gets exactly its own capacity; the closed S1 (still holding nothing) none.
    s.slot_ready(W1, b"worker-1/slot-c", now=2)
    assert {slot: len(ids) for slot, ids in by_slot(s.schedule()).items()} == {
        b"worker-1/slot-c": 3
    }


def test_a_slot_killed_for_another_attempt_requeues_the_one_it_ran() -> None:
    s = Scheduler(prefetch=2)
    s.register_worker(W1, now=0, slots=1, slot_ids=[S1])
    s.submit(C1, tasks(2))
    first, second = by_slot(s.schedule())[S1]
    s.cancel(C1, [0], force=True)
    # The slot finished `first` and started `second` before the kill landed.
    s.attempts_finished(S1, [AttemptOutcome(first, "ok")], now=1)
    out = s.slot_lost(W1, S1, second, "cancelled", "force-cancelled (slot killed)", now=1)
    assert resolved(out) == []  # not failed: back in the queue
    assert (s.snapshot(1).queued, s.counters.retried) == (1, 1)


def test_a_silent_clients_queued_tasks_are_dropped_and_its_running_ones_finish() -> None:
    s = Scheduler()
    s.register_worker(W1, now=0, slots=1)
    s.submit(C1, tasks(3))
    s.submit(C2, tasks(1))
    (running,) = runs(s.schedule())[W1]
    assert s.drop_queued(C1) == 2  # nothing said to the client: it may be only cut off
    assert (s.snapshot(0).queued, s.counters.cancelled, s.counters.failed) == (1, 2, 0)
    assert s.drop_queued(C1) == 0
    # The running one still finishes; C2's queued task is untouched and runs next.
    assert [
        r.task_id for r in resolved(s.attempts_finished(W1, [AttemptOutcome(running, "ok")], 1))
    ] == [0]
    assert payloads(s.schedule()) == [0]
    s.submit(C1, tasks(3)[1:])  # back, the client sends its unresolved tasks again
    assert s.snapshot(1).queued == 2
