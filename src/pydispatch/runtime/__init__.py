"""The processes of a cluster and their glue (internal; ``pydispatch.Client`` and
``pydispatch.LocalCluster`` are the public names).

- ``dispatcher``: the dispatcher process: one ROUTER socket, feeding the scheduler events and
  performing its instructions (one handler per message kind);
- ``client_book``: the dispatcher's book of its clients (their sending sockets, when each was
  last heard from, which fell silent);
- ``leasing``: the dispatcher's end of leases (grants, closes and ends them, reserving their
  slots in the scheduler);
- ``outbox``: what the dispatcher tells clients of their tasks, one message per client per round;
- ``worker``: a worker process, registering, heartbeating and supervising its slots;
- ``slot``: a slot subprocess, running tasks (``python -m pydispatch.runtime.slot``);
- ``client``: the client, a ``concurrent.futures.Executor`` (the facade: argument checks and
  the executor's contract);
- ``client_io``: the client's I/O under that facade: its sockets and I/O thread, hello and
  heartbeat, batched ``Submit`` messages, and the futures of its tasks (``TaskFuture``);
- ``hellos``: when the client says hello, and what the dispatcher's silence calls for (a
  warning, then failing the unresolved futures after ``reconnect_timeout``);
- ``task_pickling``: functions pickled once per client, and batches of tasks framed into
  ``Submit`` messages;
- ``lane``: the client's end of a lease (the direct lane to one slot);
- ``cluster``: :class:`~pydispatch.LocalCluster`, a dispatcher and workers on this machine;
- ``job_masters``: the dispatcher's supervisor of dataflow job-master processes (it starts them
  by module name and never imports the dataflow layer);
- ``memory``: malloc and garbage-collector settings of the processes that move frames.
"""

from __future__ import annotations

__all__: list[str] = []
