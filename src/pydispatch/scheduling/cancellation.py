"""Cancelling tasks: what a cancel does to a task in each state, and when a slot's report of a
started attempt settles the attempts being cancelled behind it.

Split from :class:`~pydispatch.scheduling.scheduler.Scheduler` because the rules are their own
(a queued task resolves at once; a placed one not reported started is skipped by its slot; a
started one stops only when forced) and read only the scheduler's tables. Resolving stays the
scheduler's (it counts and forgets resolved tasks): it is passed in as ``resolve_cancelled``.
Pure, as the scheduler is: no sockets, no clocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from .records import Task, Worker
from .task_queue import TaskKey, TaskQueue
from .vocabulary import Instruction, KillAttempts, NotifyStarted, Resolve
from .workers import WorkerTable

__all__ = ["ResolveCancelled", "cancel_tasks", "note_started"]

# Resolves a task as cancelled with the reason given (the scheduler's: it counts the task and
# forgets it).
ResolveCancelled = Callable[[Task, str], Resolve]


def cancel_tasks(
    client: bytes,
    task_ids: Iterable[int],
    force: bool,
    *,
    tasks: Mapping[TaskKey, Task],
    queue: TaskQueue,
    workers: WorkerTable,
    resolve_cancelled: ResolveCancelled,
) -> list[Instruction]:
    """Cancel queued tasks, and placed ones their slot has not started (it skips them); with
    ``force``, kill running ones too. Placed ones are resolved on the slot's report."""
    out: list[Instruction] = []
    kills: dict[tuple[bytes, bytes, bool], list[int]] = {}
    for task_id in task_ids:
        task = tasks.get((client, task_id))
        if task is None:
            continue
        if task.state == "queued":
            queue.dequeue(task)
            out.append(resolve_cancelled(task, "cancelled while queued"))
        elif task.state == "running" and (force or not task.started):
            worker = workers[task.worker]
            slot = worker.attempt_slot[task.attempt_id]
            if not force and next(iter(worker.slot_attempts[slot])) == task.attempt_id:
                # The first its slot holds: sent to an idle slot, which starts it as it reads
                # it (as the standard executors' idle workers take a task at once). Had the
                # slot read the Kill with its Run, every task would be cancelled in
                # shutdown(cancel_futures=True) just after submit.
                task.started = True
                out.append(NotifyStarted(task.client, [task.task_id]))
                continue
            # Not reported started: waiting in its slot's queue, or started in the last
            # millisecond or so. The slot skips it and reports it "cancelled", or reports it
            # started (a plain cancel then lets it finish) or its outcome.
            task.state = "cancelling"
            kills.setdefault((task.worker, slot, force), []).append(task.attempt_id)
            out += _cancel_behind_started(worker, slot, resolve_cancelled)
        # Running without force: it finishes; the client has dropped interest already.
    out += [KillAttempts(w, slot, ids, force) for (w, slot, force), ids in kills.items()]
    return out


def note_started(
    workers: WorkerTable,
    slot: bytes,
    attempt_ids: Iterable[int],
    resolve_cancelled: ResolveCancelled,
) -> list[Instruction]:
    """A slot reports attempts it has been running for a while: their futures go RUNNING (and
    a plain cancel no longer stops them); the attempts being cancelled behind them resolve."""
    worker = workers.get(workers.owner(slot))
    if worker is None:
        return []
    held = worker.slot_attempts.get(slot, {})
    started: dict[bytes, list[int]] = {}
    for attempt_id in attempt_ids:
        task = held.get(attempt_id)
        if task is not None:
            task.reported = True
            if not task.started:
                task.started = True
                if task.state != "done":
                    started.setdefault(task.client, []).append(task.task_id)
    out: list[Instruction] = [NotifyStarted(c, ids) for c, ids in started.items()]
    return out + _cancel_behind_started(worker, slot, resolve_cancelled)


def _cancel_behind_started(
    worker: Worker, slot: bytes, resolve_cancelled: ResolveCancelled
) -> list[Instruction]:
    """Resolve as cancelled, now, the attempts being cancelled on ``slot`` while another
    attempt there is reported running by the slot: a slot runs one task at a time, so they
    have not started, and the slot, once that task ends, waits for every Kill sent before it
    starts another (``Done.sync``): the skip may still be on its way when the task ends. (The
    first attempt of an idle slot, counted started without a report, does not count here: a
    short one is not followed by that wait.) They stay the slot's until it reports them."""
    held = worker.slot_attempts.get(slot, {})
    if not any(task.reported for task in held.values()):
        return []
    return [
        resolve_cancelled(task, "cancelled before it started")
        for task in list(held.values())
        if task.state == "cancelling" and not task.started
    ]
