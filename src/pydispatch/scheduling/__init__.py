"""Scheduling: the dispatcher's decisions, as pure state machines (internal).

Events in, instructions out, no sockets and no clocks (as dask's worker state machine): the
runtime feeds them what happened and performs what they return, and the tests drive them
without I/O.

- ``scheduler``: :class:`~pydispatch.scheduling.scheduler.Scheduler`, the queue, placement
  rounds, attempts, retries, failover and draining;
- ``vocabulary``: the instructions it returns, the inputs it takes, the snapshots it gives;
- ``records``: a task as queued or running, a worker and its slots;
- ``placer``: the placer interface, greedy best-fit, and Dominant Resource Fairness ordering;
- ``solver_placer``: the default placer, greedy first and the allocation solver where greedy
  strands work;
- ``leases``: which client may send lone tasks straight to which slot (the direct lane).

Nothing here imports numpy at module load: the dispatcher starts without it.
"""

from __future__ import annotations

__all__: list[str] = []
