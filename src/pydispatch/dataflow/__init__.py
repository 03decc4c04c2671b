"""Running a dataflow plan, in this process or on a cluster (internal; users reach it through
``pydispatch.stream``).

- ``lifecycle``: a job's lifecycle as a pure state machine (Flink's JobMaster), and the restart
  strategies;
- ``job_run``: :class:`~pydispatch.dataflow.job_run.JobRun`, the glue around it in a job's
  master process: deploying slices as dispatcher tasks, peers, restarts, the result;
- ``slice_placement``: the solver's choice of a worker for each slice, and its record;
- ``job_metrics``: a job's figures summed from its subtasks' reports;
- ``master_process``: the job-master processes the dispatcher starts
  (``python -m pydispatch.dataflow.master_process``);
- ``handle``: submitting a job, and :class:`~pydispatch.stream.JobHandle`, its remote handle;
- ``slice``: one slice of a job in a worker slot, a thread per subtask;
- ``subtask``: one subtask of a chain, run batch by batch;
- ``operators``: what each operator kind does to a batch, shared by both executors;
- ``routing``: which downstream subtask a record goes to, shared by both executors;
- ``local``: the reference executor, a job in this process;
- ``result``: :class:`~pydispatch.stream.JobResult`.
"""

from __future__ import annotations

__all__: list[str] = []
