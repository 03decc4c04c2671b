"""The free-capacity index stays what a scan of the workers would give, whatever happens.

A hypothesis state machine drives a scheduler through random events (workers registering with
and without all their slots, draining, leaving, going silent; slots lost, replaced, unreachable,
leased; tasks plain and constrained submitted, placed, timed, finished, cancelled) and after
every step recomputes by brute force what the index must hold: the free places, the idle slots
and the busy ones by room, the workers with an idle slot (all, by label, by resource), the
active workers by label and resource, and the capacity.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pydispatch.scheduling.placer import SLOTS
from pydispatch.scheduling.scheduler import (
    AttemptOutcome,
    ForgetWorker,
    Instruction,
    NewTask,
    RunAttempts,
    Scheduler,
)

WORKERS = [b"w0", b"w1", b"w2", b"w3"]
CLIENTS = [b"c0", b"c1"]
RESOURCES = st.sampled_from([{}, {"cpu": 2.0}, {"cpu": 4.0, "gpu": 1.0}])
LABELS = st.sampled_from([{}, {"zone": "a"}, {"zone": "b", "disk": "ssd"}])
DEMANDS = st.sampled_from([{}, {}, {"cpu": 1.0}, {"gpu": 1.0}, {"cpu": 0.0}])
SELECTORS = st.sampled_from([{}, {}, {"zone": "a"}, {"disk": "ssd"}])


def brute_force(scheduler: Scheduler) -> dict[str, object]:
    """What the index must hold, from the worker records alone."""
    active = [w for w in scheduler.worker_table.records() if not w.draining]
    idle: set[bytes] = set()
    busy: dict[bytes, int] = {}
    idle_count: dict[bytes, int] = {}
    for worker in active:
        for slot in worker.slot_attempts:
            room = worker.slot_capacity[slot] - len(worker.slot_attempts[slot])
            if room <= 0:
                continue
            if worker.is_idle(slot):
                idle.add(slot)
                idle_count[worker.id] = idle_count.get(worker.id, 0) + 1
            else:
                busy[slot] = room
    idle_workers = [w for w in active if w.id in idle_count]

    def by_label(workers: list) -> dict[tuple[str, str], set[bytes]]:  # type: ignore[type-arg]
        out: dict[tuple[str, str], set[bytes]] = {}
        for w in workers:
            for pair in w.labels.items():
                out.setdefault(pair, set()).add(w.id)
        return out

    def by_resource(workers: list) -> dict[str, set[bytes]]:  # type: ignore[type-arg]
        out: dict[str, set[bytes]] = {}
        for w in workers:
            for name in w.resources:
                out.setdefault(name, set()).add(w.id)
        return out

    return {
        # A slot timed as slow may hold more than its new window (its room is below 0): that
        # takes nothing from other slots' room.
        "free_total": sum(busy.values())
        + sum(w.slot_capacity[slot] for w in active for slot in w.slot_attempts if slot in idle),
        "idle": idle,
        "busy": busy,
        "idle_count": idle_count,
        "idle_workers": {w.id for w in idle_workers},
        "idle_by_label": by_label(idle_workers),
        "idle_by_resource": by_resource(idle_workers),
        "by_label": by_label(active),
        "by_resource": by_resource(active),
    }


def capacity(scheduler: Scheduler) -> dict[str, float]:
    out: dict[str, float] = {}
    for w in scheduler.worker_table.records():
        if not w.draining:
            out[SLOTS] = out.get(SLOTS, 0.0) + w.slots
            for name, amount in w.resources.items():
                out[name] = out.get(name, 0.0) + amount
    return out


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s = Scheduler(prefetch=2, heartbeat_timeout=5)
        self.now = 0.0
        self.next_task = 0
        self.attempts: dict[int, tuple[bytes, bytes]] = {}  # attempt -> (worker, slot)
        self.generation = 0

    def apply(self, out: list[Instruction]) -> None:
        for ins in out:
            if isinstance(ins, RunAttempts):
                for attempt, _ in ins.attempts:
                    self.attempts[attempt] = (ins.worker, ins.slot)
            elif isinstance(ins, ForgetWorker):
                for a, (w, _) in list(self.attempts.items()):
                    if w == ins.worker:
                        del self.attempts[a]

    def slots_of(self, worker: bytes) -> list[bytes]:
        record = self.s.worker_table.get(worker)
        return [] if record is None else list(record.slot_attempts)

    @rule(
        worker=st.sampled_from(WORKERS),
        slots=st.integers(0, 3),
        ready=st.integers(0, 3),
        resources=RESOURCES,
        labels=LABELS,
    )
    def register(
        self,
        worker: bytes,
        slots: int,
        ready: int,
        resources: Mapping[str, float],
        labels: Mapping[str, str],
    ) -> None:
        self.generation += 1
        ids = [b"%s/s%d.%d" % (worker, i, self.generation) for i in range(min(slots, ready))]
        self.apply(
            self.s.register_worker(
                worker, now=self.now, slots=slots, resources=resources, labels=labels, slot_ids=ids
            )
        )

    @rule(
        client=st.sampled_from(CLIENTS),
        count=st.integers(1, 6),
        demand=DEMANDS,
        selector=SELECTORS,
        priority=st.integers(0, 1),
    )
    def submit(
        self,
        client: bytes,
        count: int,
        demand: Mapping[str, float],
        selector: Mapping[str, str],
        priority: int,
    ) -> None:
        new = [
            NewTask(self.next_task + i, None, demand, selector, priority, retries=1)
            for i in range(count)
        ]
        self.next_task += count
        self.apply(self.s.submit(client, new))

    @rule()
    def schedule(self) -> None:
        self.apply(self.s.schedule())

    @rule(
        pick=st.integers(0, 100),
        status=st.sampled_from(["ok", "lost"]),
        seconds=st.sampled_from([0.0, 1e-5, 1e-4, 0.01]),
        by_worker=st.booleans(),
    )
    def finish(self, pick: int, status: str, seconds: float, by_worker: bool) -> None:
        if not self.attempts:
            return
        attempt = sorted(self.attempts)[pick % len(self.attempts)]
        worker, slot = self.attempts.pop(attempt)
        sender = worker if by_worker else slot
        outcome = AttemptOutcome(attempt, status, seconds=seconds)  # type: ignore[arg-type]
        self.apply(self.s.attempts_finished(sender, [outcome], self.now))

    @rule(worker=st.sampled_from(WORKERS), pick=st.integers(0, 3), running=st.booleans())
    def slot_lost(self, worker: bytes, pick: int, running: bool) -> None:
        slots = self.slots_of(worker)
        if not slots:
            return
        slot = slots[pick % len(slots)]
        held = [a for a, (_, s) in self.attempts.items() if s == slot]
        run = held[0] if running and held else 0
        for a in held:
            del self.attempts[a]
        self.apply(self.s.slot_lost(worker, slot, run, "failed", "died", self.now))

    @rule(worker=st.sampled_from(WORKERS))
    def slot_ready(self, worker: bytes) -> None:
        self.generation += 1
        self.apply(self.s.slot_ready(worker, b"%s/r%d" % (worker, self.generation), self.now))

    @rule(worker=st.sampled_from(WORKERS), pick=st.integers(0, 3))
    def slot_unreachable(self, worker: bytes, pick: int) -> None:
        slots = self.slots_of(worker)
        if slots:
            self.apply(self.s.slot_unreachable(worker, slots[pick % len(slots)]))

    @rule(worker=st.sampled_from(WORKERS), pick=st.integers(0, 3), step=st.integers(0, 2))
    def lease(self, worker: bytes, pick: int, step: int) -> None:
        slots = self.slots_of(worker)
        if not slots:
            return
        slot = slots[pick % len(slots)]
        if step == 0:
            self.s.lease_slot(worker, slot)
        elif step == 1:
            self.s.close_lease(worker, slot)
        else:
            self.apply(self.s.unlease_slot(worker, slot))

    @rule(worker=st.sampled_from(WORKERS), how=st.sampled_from(["drain", "leave", "silent"]))
    def worker_goes(self, worker: bytes, how: str) -> None:
        if how == "drain":
            self.apply(self.s.drain_worker(worker, self.now))
        elif how == "leave":
            self.apply(self.s.deregister_worker(worker, self.now))
        else:
            self.now += 6
            for other in WORKERS:
                if other != worker:
                    self.s.heartbeat(other, self.now)
            self.apply(self.s.tick(self.now))

    @rule(client=st.sampled_from(CLIENTS), task=st.integers(0, 60), force=st.booleans())
    def cancel(self, client: bytes, task: int, force: bool) -> None:
        self.apply(self.s.cancel(client, [task], force))

    @invariant()
    def index_matches_a_scan(self) -> None:
        table = self.s.worker_table
        held = table.index.contents()
        expected = brute_force(self.s)
        assert held["free_total"] == expected["free_total"] == table.free_places
        assert set(held["idle"]) == expected["idle"]  # type: ignore[call-overload]
        assert len(held["idle"]) == len(expected["idle"])  # type: ignore[arg-type]
        assert held["busy"] == expected["busy"]
        assert all(room <= held["top"] for room in expected["busy"].values())  # type: ignore[attr-defined,operator]
        for key in ("idle_count", "idle_by_label", "idle_by_resource", "by_label", "by_resource"):
            assert held[key] == expected[key], key
        assert set(held["idle_workers"]) == expected["idle_workers"]  # type: ignore[call-overload]
        want = capacity(self.s)
        got = table.capacity
        assert got.keys() == want.keys(), (got, want)
        assert all(abs(got[k] - want[k]) < 1e-9 for k in want), (got, want)
        assert table.total_slots == int(want.get(SLOTS, 0))


IndexMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_free_index_stays_consistent = IndexMachine.TestCase
