"""A placement round: which free slot each task the queue offers goes to.

Split from :class:`~pydispatch.scheduling.scheduler.Scheduler` because a round only reads the
worker table and the queue and starts attempts through the scheduler (which keeps the task and
attempt bookkeeping): the question of *where* is separate from the state machine's *what
happened*. Pure, as the scheduler is: no sockets, no clocks.
"""

from __future__ import annotations

from collections.abc import Callable

from .placer import PlacementRequest, Placer, WorkerCapacity, fits
from .records import Task, Worker
from .task_queue import TaskQueue
from .vocabulary import Instruction, RunAttempts
from .workers import WorkerTable

__all__ = ["StartAttempt", "place_round"]

# Starts an attempt of a task on a worker (on the slot given, or where the worker places it)
# and returns the attempt's id: the scheduler's, which counts and numbers attempts.
StartAttempt = Callable[[Task, Worker, bytes | None], int]

# A round's output as it is built: the attempts (id, payload) per (worker, slot).
_Runs = dict[tuple[bytes, bytes], list[tuple[int, object]]]


def place_round(
    queue: TaskQueue, workers: WorkerTable, placer: Placer, start: StartAttempt
) -> list[Instruction]:
    """One placement round over the free slots.

    Its cost is that of the tasks it takes and the slots and workers it places them on, not of
    the cluster: free slots come from the worker table's index (:mod:`.free_index`).
    Constrained tasks (resources or labels) are placed first, by the placer, among the workers
    with an idle slot that the index says may fit them: they can only start on an idle slot,
    where plain tasks may also wait in a slot's prefetch window. Then plain tasks go to slots
    (:func:`_place_plain`). Tasks left over go back to the queue, in their place.
    """
    if not queue.queued:
        return []
    free_places = workers.free_places
    if not free_places:
        return []
    candidates = queue.candidates(free_places, workers.capacity)
    runs: _Runs = {}
    plain = [t for t in candidates if not t.resources and not t.labels]
    left: list[Task] = []
    if len(plain) < len(candidates):
        constrained = [t for t in candidates if t.resources or t.labels]
        left = _place_constrained(constrained, workers, placer, start, runs)
    left += _place_plain(plain, workers, start, runs)
    for task in left:
        queue.push(task)  # back in its place, ahead of later tasks
    out: list[Instruction] = [
        RunAttempts(worker, slot, attempts) for (worker, slot), attempts in runs.items()
    ]
    return out


def _place_plain(
    tasks: list[Task], workers: WorkerTable, start: StartAttempt, runs: _Runs
) -> list[Task]:
    """Place plain tasks in order; returns those left over.

    An idle slot first (the one idle longest), so that nothing waits in a queue while a slot
    could start it; else the slot with the most room. A slot whose tasks have been timed takes
    a whole window at once (as many as its room: about ``queue_budget`` seconds of them): a
    burst then goes out in few large ``Run`` messages rather than a sliver to every slot, and
    no task waits behind more than that budget of work. A slot not timed yet takes one at a
    time (its first tasks may be long: spread them).
    """
    index = workers.index
    count, done = len(tasks), 0
    while done < count:
        found = index.next_slot()
        if found is None:
            break
        worker, slot = found
        take = min(count - done, worker.room(slot)) if worker.measured(slot) else 1
        batch = runs.setdefault((worker.id, slot), [])
        worker.defer_changes()  # the index hears of the slot once, not once a task
        try:
            for task in tasks[done : done + take]:
                batch.append((start(task, worker, slot), task.payload))
        finally:
            worker.tell_changes()
        done += take
    return tasks[done:]


def _place_constrained(
    tasks: list[Task], table: WorkerTable, placer: Placer, start: StartAttempt, runs: _Runs
) -> list[Task]:
    """Place tasks with demands or selectors, by the placer, on idle slots only: one holding
    resources while it waits in a worker's queue would keep them idle; one placed by label was
    placed on purpose (a dataflow job's slices, pinned to their workers, must all start to make
    progress: queued behind another job's slice they would wait forever). Returns those left
    over."""
    workers = table.constrained_candidates(tasks)
    if not workers:
        return tasks
    capacities = [WorkerCapacity(table.idle_slots(w), w.free, w.labels) for w in workers]
    requests = [PlacementRequest(t.resources, t.labels) for t in tasks]
    assignments = placer(requests, capacities)
    placed: set[int] = set()
    for request_index, worker_index in assignments:
        if request_index in placed or not 0 <= request_index < len(tasks):
            continue
        if not 0 <= worker_index < len(workers):
            continue
        task, worker = tasks[request_index], workers[worker_index]
        if not worker.has_idle_slot() or not fits(
            task.resources, task.labels, 1, worker.free, worker.labels
        ):
            continue  # never trust a placer with the invariants
        placed.add(request_index)
        attempt_id = start(task, worker, None)
        runs.setdefault((worker.id, worker.attempt_slot[attempt_id]), []).append(
            (attempt_id, task.payload)
        )
    return [task for index, task in enumerate(tasks) if index not in placed]
