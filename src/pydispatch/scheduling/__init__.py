"""Scheduling: the dispatcher's decisions, as pure state machines (internal).

Events in, instructions out, no sockets and no clocks (as dask's worker state machine): the
runtime feeds them what happened and performs what they return, and the tests drive them
without I/O.

- ``scheduler``: :class:`~pydispatch.scheduling.scheduler.Scheduler`, the state machine's
  entry points (one method per event): placement rounds, attempts, retries, failover and
  draining, over the two parts of its state below;
- ``placement_round``: a round's placing of the tasks the queue offers on free slots
  (constrained ones by the placer on idle slots, plain ones a prefetch window at a time);
- ``cancellation``: what a cancel does to a queued, placed or started task;
- ``workers``: :class:`~pydispatch.scheduling.workers.WorkerTable`, the registered workers and
  their slots, slot prefetch, the cluster's capacity, and why a task could never run;
- ``free_index``: :class:`~pydispatch.scheduling.free_index.FreeIndex`, the table's index of
  free slots and of the workers with an idle one, kept up to date on events (a placement
  round touches only the workers it places on);
- ``task_queue``: :class:`~pydispatch.scheduling.task_queue.TaskQueue`, the tasks waiting, per
  client by priority, and the fair-share (DRF) order a round takes them in;
- ``vocabulary``: the instructions it returns, the inputs it takes, the snapshots it gives;
- ``snapshots``: a worker's snapshot, which a ``StatusReply`` also carries;
- ``records``: a task as queued or running, a worker and its slots (kept consistent as
  attempts are placed and released);
- ``placer``: the placer interface, greedy best-fit, and Dominant Resource Fairness ordering;
- ``solver_placer``: the default placer, greedy first and the allocation solver where greedy
  strands work;
- ``leases``: which client may send lone tasks straight to which slot (the direct lane).
- ``prefetch``: the default prefetch window (named by processes that import no scheduler).

Nothing here imports numpy at module load: the dispatcher starts without it.
"""

from __future__ import annotations

__all__: list[str] = []
