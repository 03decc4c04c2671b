"""The scheduler's task queue: tasks waiting for a slot, and the order a round takes them in.

A part of :class:`~pydispatch.scheduling.scheduler.Scheduler`'s state with one owner: the
scheduler keeps the table of live tasks and their attempts, the queue keeps those waiting:

* a heap per client, highest priority first, then in submission order (a re-queued task
  keeps its place ahead of later ones); a task taken out otherwise (cancelled, failed) is
  only marked and skipped when it comes up;
* which queued tasks demand resources or labels (rechecked when workers leave: one may have
  become impossible);
* Dominant Resource Fairness between clients (:class:`~.placer.FairShare`): what each
  client's running attempts hold, and which client was served last, to pick the next
  round's candidates.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping

from .placer import FairShare
from .records import Task

__all__ = ["TaskKey", "TaskQueue"]

TaskKey = tuple[bytes, int]  # (client identity, client's task id)


class TaskQueue:
    """Queued tasks per client, and the fair-share turns between clients."""

    def __init__(self, *, round_factor: int = 4) -> None:
        # Extra candidates a round may look at per constrained task (see candidates).
        self._round_factor = round_factor
        # Per-client heaps of (-priority, seq, task); cancelled tasks are skipped lazily.
        self._queues: dict[bytes, list[tuple[int, int, Task]]] = {}
        self._queued = 0
        self._constrained: set[TaskKey] = set()  # queued tasks with resources or labels
        # What running attempts hold, per client (the capacity is given for each round).
        self._fair = FairShare()
        # Ties in dominant share (common: a client's share drops to 0 the moment its task
        # ends, just before the round that refills the slot) go to the client served least
        # recently, so equal shares take turns instead of the oldest queue winning forever.
        self._serve_clock = itertools.count(1)
        self._last_served: dict[bytes, int] = {}
        self._seq = itertools.count()

    @property
    def queued(self) -> int:
        """Tasks queued (not taken for a round, not placed)."""
        return self._queued

    def next_seq(self) -> int:
        """A new task's place in line among tasks of its priority."""
        return next(self._seq)

    # ----------------------------------------------------------------- in and out

    def push(self, task: Task) -> None:
        """Queue ``task``, new or again (its original seq keeps it ahead of later ones)."""
        task.state = "queued"
        heapq.heappush(self._queues.setdefault(task.client, []), (-task.priority, task.seq, task))
        self._queued += 1
        if task.resources or task.labels:
            self._constrained.add((task.client, task.task_id))

    def dequeue(self, task: Task) -> None:
        """Take a queued task out (it is done with: cancelled or failed)."""
        task.state = "done"  # lazily skipped in its heap
        self._queued -= 1
        self._constrained.discard((task.client, task.task_id))

    def take_client(self, client: bytes) -> list[Task]:
        """Take out all a client's queued tasks (in heap order); its turn is kept."""
        out: list[Task] = []
        for _, _, task in self._queues.pop(client, []):
            if task.state == "queued":
                self.dequeue(task)
                out.append(task)
        return out

    def forget_client(self, client: bytes) -> None:
        """A client left, its queued tasks dequeued: drop its heap and its turn."""
        self._queues.pop(client, None)
        self._last_served.pop(client, None)

    def constrained(self, tasks: Mapping[TaskKey, Task]) -> list[Task]:
        """The queued tasks (of ``tasks``, the live ones) that demand resources or labels."""
        out: list[Task] = []
        for key in list(self._constrained):
            task = tasks.get(key)
            if task is None or task.state != "queued":
                self._constrained.discard(key)
                continue
            out.append(task)
        return out

    # -------------------------------------------------------------- fair share

    def started(self, task: Task) -> None:
        """An attempt of ``task`` (taken for a round) was placed: its client holds more."""
        self._fair.add(task.client, task.resources)
        self._last_served[task.client] = next(self._serve_clock)
        if task.resources or task.labels:
            self._constrained.discard((task.client, task.task_id))

    def released(self, task: Task) -> None:
        """An attempt of ``task`` ended: its client holds less."""
        self._fair.add(task.client, task.resources, sign=-1.0)

    # ------------------------------------------------------------------ rounds

    def candidates(self, free_slots: int, capacity: dict[str, float]) -> list[Task]:
        """Take queued tasks for a round: highest priority first, then DRF between clients
        (their shares of ``capacity``).

        As many as there are free slots, plus ``round_factor`` more for every constrained
        task among them (one that may not fit anywhere now must not block the ones behind
        it); a huge queue of plain tasks thus costs nothing but the tasks placed. The tasks
        taken are provisionally running: each is either started or pushed back.
        """
        limit = free_slots
        picked: list[Task] = []
        waiting = [c for c, queue in self._queues.items() if queue]
        if len(waiting) == 1:  # no one to share with: the order is the client's own
            return self._pop_own(waiting[0], limit)
        shares = FairShare(capacity, {c: dict(h) for c, h in self._fair.held.items()})
        served = dict(self._last_served)
        heads: list[tuple[int, float, int, int, bytes]] = []
        for client, queue in self._queues.items():
            self._skip_dead(queue)
            if queue:
                priority, seq, _ = queue[0]
                share = shares.dominant_share(client)
                heads.append((priority, share, served.get(client, 0), seq, client))
        heapq.heapify(heads)
        while heads and len(picked) < limit:
            client = heapq.heappop(heads)[-1]
            queue = self._queues[client]
            _, _, task = heapq.heappop(queue)
            limit += self._take(task, picked)
            shares.add(client, task.resources)
            served[client] = next(self._serve_clock)
            self._skip_dead(queue)
            if queue:
                priority, seq, _ = queue[0]
                share = shares.dominant_share(client)
                heapq.heappush(heads, (priority, share, served[client], seq, client))
        return picked

    def _pop_own(self, client: bytes, limit: int) -> list[Task]:
        """``candidates`` for a lone client: the same picks, without the fair-share heap."""
        picked: list[Task] = []
        queue = self._queues[client]
        self._skip_dead(queue)
        while queue and len(picked) < limit:
            _, _, task = heapq.heappop(queue)
            limit += self._take(task, picked)
            self._skip_dead(queue)
        return picked

    def _take(self, task: Task, picked: list[Task]) -> int:
        """Take a task popped from its queue into this round; returns how many more tasks the
        round may look at for it (a constrained one may fit nowhere now)."""
        picked.append(task)
        self._queued -= 1
        task.state = "running"  # provisionally: taken out of the queue for this round
        return self._round_factor if task.resources or task.labels else 0

    @staticmethod
    def _skip_dead(queue: list[tuple[int, int, Task]]) -> None:
        while queue and queue[0][2].state != "queued":
            heapq.heappop(queue)
