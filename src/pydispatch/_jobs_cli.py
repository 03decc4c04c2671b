"""``pydispatch submit | jobs | cancel``: dataflow jobs from the command line (private).

``submit ADDRESS job.py`` runs ``job.py`` (as ``__main__``-less module code) and calls its
``build(env)`` with a :class:`~pydispatch.stream.StreamEnvironment` on the dispatcher at
``ADDRESS``; ``build`` adds sinks, or returns a stream whose records are collected and printed.
The job master runs in the ``submit`` process (see ``pydispatch._jobrun``), which waits for
the job and exits 0 when it finished, 1 when it failed or was cancelled; Ctrl-C cancels it.

``jobs ADDRESS`` lists the jobs the dispatcher was told of (their masters announce every change
of state); ``cancel ADDRESS JOB`` asks the job's master to cancel it.
"""

from __future__ import annotations

import json
import runpy
import sys
from concurrent.futures import CancelledError
from typing import Any

import zmq

from . import protocol as p
from .transport import make_socket, parse_job, request, send, split_envelope


def fetch_jobs(address: str, timeout: float = 5.0) -> list[p.JobInfo]:
    """The dataflow jobs a dispatcher knows of, oldest change first."""
    message = request(address, p.JobsRequest(), timeout)
    if not isinstance(message, p.JobsReply):
        raise p.ProtocolError(f"expected JobsReply, got {type(message).__name__}")
    return message.jobs


def cancel_job(address: str, job: str, timeout: float = 10.0) -> bool:
    """Cancel the job whose id (or unique id prefix, or unique name) is ``job``."""
    jobs = fetch_jobs(address, timeout)
    matches = [j for j in jobs if j.job_id == job] or [
        j for j in jobs if j.job_id.startswith(job) or j.name == job
    ]
    if len(matches) != 1:
        found = "no job" if not matches else f"{len(matches)} jobs"
        raise LookupError(f"{found} named {job!r} at {address}")
    context: zmq.Context[Any] = zmq.Context()
    sock = make_socket(context, zmq.DEALER)
    try:
        sock.connect(matches[0].endpoint)
        send(sock, p.JobCancel())
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"the master of job {matches[0].job_id} did not answer")
        _, body = split_envelope(sock.recv_multipart(copy=False), routed=False)
        answer = parse_job(body)
        if not isinstance(answer, p.JobCancelled):
            raise p.ProtocolError(f"expected JobCancelled, got {type(answer).__name__}")
        return answer.cancelled
    finally:
        sock.close(linger=0)
        context.term()


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


def submit_command(address: str, path: str, name: str | None, parallelism: int) -> int:
    from ._stream_ops import DataStream
    from .stream import JobHandle, StreamEnvironment

    namespace = runpy.run_path(path, run_name="pydispatch_job")
    build = namespace.get("build")
    if not callable(build):
        print(f"{path} must define build(env)", file=sys.stderr)
        return 2
    env = StreamEnvironment(address, parallelism=parallelism)
    try:
        out = build(env)
        sink = None
        if isinstance(out, DataStream):
            sink = out._sink("Collect", {"sink": "collect", "columnar": out.schema.columnar}).id
        handle = env.execute(name or path)
        assert isinstance(handle, JobHandle)
        print(f"submitted {handle.job_id}", flush=True)
        try:
            result = handle.result()
        except KeyboardInterrupt:
            handle.cancel()
            print(f"cancelled {handle.job_id}", file=sys.stderr)
            return 1
        except CancelledError:
            print(f"{handle.job_id} was cancelled", file=sys.stderr)
            return 1
        except Exception as error:  # the job's failure, reported, not a crash of the CLI
            print(f"{handle.job_id} failed: {error}", file=sys.stderr)
            return 1
        if sink is not None:
            for record in _records(result.collected[sink]):
                print(record)
        metrics = handle.metrics()
        summary = {k: metrics[k] for k in ("status", "restarts", "bytes_shuffled", "seconds")}
        print(json.dumps(summary), file=sys.stderr)
        return 0
    finally:
        env.close()


def _records(collected: Any) -> list[Any]:
    if isinstance(collected, dict):
        names = list(collected)
        columns = [collected[n].tolist() for n in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    return list(collected)
