"""``pydispatch submit | jobs | cancel | result``: dataflow jobs from the command line (private).

``submit ADDRESS job.py`` runs ``job.py`` (as ``__main__``-less module code) and calls its
``build(env)`` with a :class:`~pydispatch.stream.StreamEnvironment` on the dispatcher at
``ADDRESS``; ``build`` adds sinks, or returns a stream whose records are collected and printed. The
dispatcher runs the job's master in a process of its own (``pydispatch.dataflow.master_process``).
By default ``submit`` stays attached: it waits for the job and exits 0 when it finished, 1 when it
failed or was cancelled; Ctrl-C cancels it. ``--detach`` prints the job's id and exits 0 at once:
the job runs on, and ``result ADDRESS JOB`` prints its records later (from any machine that reaches
the dispatcher, within the job's result retention).

``jobs ADDRESS`` lists the jobs the dispatcher knows of (their masters announce every change
of state); ``cancel ADDRESS JOB`` asks the job's master to cancel it.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from concurrent.futures import CancelledError
from typing import Any

from ..dataflow.checkpoint_storage import directory_name
from ..dataflow.handle import JobHandle, JobRefusedError, fetch_jobs
from ..wire import protocol as p

__all__ = [
    "CommandError",
    "cancel_command",
    "cancel_job",
    "fetch_jobs",
    "format_jobs",
    "jobs_command",
    "result_command",
    "savepoint_command",
    "submit_command",
]


class CommandError(Exception):
    """An ordinary mistake on the command line (a missing file, an unknown job): ``main``
    prints it as one line, ``pydispatch COMMAND: message``, exit status 1, no traceback."""


def _handle_of(address: str, job: str, timeout: float) -> JobHandle:
    return JobHandle.attach(address, job, timeout=timeout)  # keys: the environment's


def cancel_job(address: str, job: str, timeout: float = 10.0) -> bool:
    """Cancel the job ``job`` names (its id, else its name, else the start of its id: see
    :func:`~pydispatch.dataflow.handle.find_job`); False if it had ended already."""
    return _handle_of(address, job, timeout).cancel()


def savepoint_command(address: str, job: str, path: str, stop: bool, timeout: float) -> int:
    """``pydispatch savepoint ADDRESS JOB [--path DIR] [--stop]``: prints the savepoint."""
    handle = _handle_of(address, job, min(timeout, 10.0))
    where = path or os.path.abspath(f"savepoint-{directory_name(handle.job_id)}")
    try:
        print(handle.savepoint(where, stop=stop, timeout=timeout))
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def format_jobs(jobs: list[p.JobInfo]) -> str:
    lines = [f"{'job':<36} {'state':<10} {'attempt':>7} {'slices':>6}  name"]
    for j in jobs:
        lines.append(f"{j.job_id:<36} {j.state:<10} {j.attempt:>7} {j.slices:>6}  {j.name}")
    return "\n".join(lines)


def jobs_command(address: str, as_json: bool, timeout: float) -> int:
    jobs = fetch_jobs(address, timeout)
    if as_json:
        print(json.dumps([{f: getattr(j, f) for f in j.__struct_fields__} for j in jobs]))
    else:
        print(format_jobs(jobs))
    return 0


def cancel_command(address: str, job: str, timeout: float) -> int:
    if cancel_job(address, job, timeout):
        print(f"cancelled {job}")
        return 0
    print(f"{job} had ended already", file=sys.stderr)
    return 1


def submit_command(
    address: str,
    path: str,
    name: str | None,
    parallelism: int,
    detach: bool = False,
    retention: float | None = None,
    progress_every: float = 5.0,
    from_savepoint: str = "",
) -> int:
    from ..stream import StreamEnvironment
    from ..stream._datastream import DataStream

    if not os.path.isfile(path):
        what = "is a directory, not a job file" if os.path.isdir(path) else "no such job file"
        raise CommandError(f"{path}: {what}")
    # Errors in the job file are the user's code: their traceback is what helps.
    namespace = runpy.run_path(path, run_name="pydispatch_job")
    build = namespace.get("build")
    if not callable(build):
        raise CommandError(f"{path} defines no build(env) function")
    env = StreamEnvironment(address, parallelism=parallelism)
    if retention is not None:
        env.set_result_retention(retention)
    out = build(env)
    sink = None
    if isinstance(out, DataStream):
        sink = out._sink("Collect", {"sink": "collect", "columnar": out.schema.columnar}).id
    if not env.job_graph.sinks():
        raise CommandError(f"{path}: build(env) added no sink and returned no stream")
    try:
        savepoint = os.path.abspath(from_savepoint) if from_savepoint else ""
        handle = env.execute(name or path, from_savepoint=savepoint)
    except (ValueError, JobRefusedError) as error:  # never fits, cannot be planned, no host
        print(f"refused: {error}", file=sys.stderr)
        return 1
    assert isinstance(handle, JobHandle)
    if detach:
        print(handle.job_id)
        return 0
    print(f"submitted {handle.job_id}", flush=True)
    return _wait_and_print(handle, sink, cancel_on_interrupt=True, progress_every=progress_every)


def result_command(address: str, job: str, timeout: float | None) -> int:
    """Print the records of a job's collect sinks once it has finished (waiting for it)."""
    return _wait_and_print(JobHandle.attach(address, job), None, timeout=timeout)


def _wait_and_print(
    handle: JobHandle,
    sink: int | None,
    cancel_on_interrupt: bool = False,
    timeout: float | None = None,
    progress_every: float = 0.0,
) -> int:
    try:
        if progress_every > 0:
            _show_progress(handle, progress_every)
        result = handle.result(timeout)
    except KeyboardInterrupt:
        if not cancel_on_interrupt:
            return 130
        handle.cancel()
        print(f"cancelled {handle.job_id}", file=sys.stderr)
        return 1
    except CancelledError:
        print(f"{handle.job_id} was cancelled", file=sys.stderr)
        return 1
    except (TimeoutError, LookupError) as error:  # still running, or its result is gone
        print(error, file=sys.stderr)
        return 1
    except Exception as error:  # the job's failure, reported, not a crash of the CLI
        print(f"{handle.job_id} failed: {error}", file=sys.stderr)
        return 1
    sinks = [sink] if sink is not None else sorted(result.collected)
    for index in sinks:
        for record in _records(result.collected[index]):
            print(record)
    metrics = handle.metrics()
    summary = {k: metrics.get(k) for k in ("status", "restarts", "bytes_shuffled", "seconds")}
    print(json.dumps(summary), file=sys.stderr)
    return 0


def _show_progress(handle: JobHandle, every: float) -> None:
    """Live per-operator progress on stderr: tqdm bars on a terminal, else a plain line every
    ``every`` seconds (logs and pipes want lines, not redrawn bars)."""
    from ..runtime.progress import job_progress_lines, progress

    if sys.stderr.isatty():
        progress(handle, file=sys.stderr, interval=min(every, 0.5))
    else:
        job_progress_lines(handle, _to_stderr, interval=every)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _records(collected: Any) -> list[Any]:
    if isinstance(collected, dict):
        names = list(collected)
        columns = [collected[n].tolist() for n in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    return list(collected)
