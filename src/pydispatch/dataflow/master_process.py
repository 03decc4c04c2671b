"""Dataflow jobs' master processes (private; Flink's per-job JobMaster): the launcher, and what
each forked master does.

``python -m pydispatch.dataflow.master_process ADDRESS --parent PID`` is the launcher, started by
the dispatcher at ``ADDRESS`` (``pydispatch.runtime.job_masters``). It imports what a job master
needs (numpy, zmq, cloudpickle, the planner, OR-tools), then reads lines ``["JOB_ID", "TOKEN",
KEYS]`` (JSON; KEYS: the job's credentials, or null) on stdin and forks one job master per line,
reporting ``["started", JOB_ID, PID]`` and, once reaped, ``["exited", JOB_ID, CODE]`` on stdout.
Forking a warm process makes a job master ready in milliseconds; starting Python and importing all
that takes a third of a second on an idle machine and seconds on a loaded one, which every
``execute()`` would wait for. The launcher starts no thread and no zmq context, so forking it is
safe (its environment pins numpy's BLAS to one thread: ``job_masters``). On end-of-file (the
dispatcher stopped or died), on SIGTERM, or when the dispatcher is no longer its parent, it ends its
job masters (SIGTERM, then SIGKILL after a grace) and exits.

A job master (:func:`_master`, in the forked child)

1. connects to the dispatcher as an ordinary :class:`~pydispatch.Client` (its slices are
   tasks of that client: the dispatcher places, heartbeats and force-cancels them as any);
2. fetches its job (``JobPayloadRequest``) and unpickles it: the first place a job is ever
   unpickled outside its submitter, so a broken or hostile payload fails this process only;
3. plans and deploys it (:class:`~pydispatch.dataflow.job_run.JobRun`: a job that can never fit the
   cluster is refused here) and reports the outcome (``JobHostReport``) through its client's
   socket, after its slices' ``Submit`` on the same socket, so that the submitter's
   ``JobAccepted`` means the slices are queued at the dispatcher;
4. serves the job's control endpoint (slices; handles' status, metrics, result, cancel)
   until the job has ended and then until a handle has fetched the outcome (and
   ``_FETCHED_LINGER`` more, for a second look) or ``JobOptions.result_retention`` seconds
   have passed, whichever is first (a cancelled job's: the linger only); then it exits 0.

It exits early on SIGTERM or SIGINT, and when the launcher is no longer its parent (no job
master outlives its dispatcher); a job still running then fails and its slices are killed
through the dispatcher if it still serves. A master killed outright leaves its slices to end
themselves after the job's ``master_timeout`` (they hear nothing from it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Final

from ..errors import UnfitError
from ..plan._job_graph import JobGraph
from ..runtime.client import Client
from ..wire import protocol as p
from ..wire import transport
from ..wire.addresses import ADVERTISE_ENV, LOOPBACK, is_loopback, is_wildcard
from ..wire.security import JobCredentials
from .job_run import JobOptions, JobRun

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)

_FETCHED_LINGER: Final = 1.0  # seconds a fetched outcome stays available
_TICK: Final = 0.2  # seconds between checks of the parent, the job and the clock
_PAYLOAD_TIMEOUT: Final = 30.0
_STOP_GRACE: Final = 4.0  # seconds job masters get to exit before SIGKILL
_WARM_AFTER: Final = 1.0  # seconds idle before the launcher imports OR-tools


# ------------------------------------------------------------------------------ job master


def _unpack(obj: Any) -> tuple[JobGraph, JobOptions, list[int]]:
    """The job a payload holds, or TypeError: a payload of anything else is refused. (A
    payload of an earlier version, kept in a job store, has no fourth item.)"""
    if isinstance(obj, tuple) and len(obj) in (3, 4):
        job, options, ids = obj[:3]
        reached = obj[3] if len(obj) == 4 else ""
        if (
            isinstance(job, JobGraph)
            and isinstance(options, JobOptions)
            and isinstance(ids, list)
            and len(ids) == len(job.operators)
            and all(type(i) is int for i in ids)
            and isinstance(reached, str)
        ):
            if not options.host:
                options = dataclasses.replace(options, host=master_host(reached))
            return job, options, ids
    raise TypeError(f"the payload is not a pydispatch job: {type(obj).__name__}")


def master_host(reached: str) -> str:
    """Where a job master binds when its job names no host: the dispatcher's advertised host
    (``--advertise-host``, or the address it binds if that is one), else the address the
    submitter reached the dispatcher by unless that was loopback (workers elsewhere could not
    use it), else loopback."""
    named = os.environ.get(ADVERTISE_ENV, "")
    if named:
        return named
    if reached and not is_loopback(reached) and not is_wildcard(reached):
        return reached
    return LOOPBACK


class _Host:
    def __init__(
        self, address: str, job_id: str, token: str, credentials: JobCredentials | None
    ) -> None:
        self.address = address
        self.job_id = job_id
        self.token = token
        self.credentials = credentials
        # With keys: the job's own key (role job-master, this job only), never the
        # dispatcher's; "": no keys, whatever the environment names.
        self.keys = credentials.keys(job_id) if credentials is not None else None
        self.client = Client(address, name=f"job master {job_id}", keys=self.keys or "")
        self.durable = False  # whether the dispatcher keeps the job in a store
        self.took_outcome = False  # whether the dispatcher took the finished job's outcome

    def report(self, endpoint: str = "", code: str = "", error: str = "") -> None:
        report = p.JobHostReport(self.job_id, self.token, endpoint, code, error)
        self.client._send_control(report)

    def start(self) -> tuple[JobRun, JobOptions] | None:
        """The running job, or None when it was refused (the dispatcher was told why)."""
        try:
            request = p.JobPayloadRequest(self.job_id, self.token)
            keys = self.keys or ""
            answer, frames = transport.ask(self.address, request, (), _PAYLOAD_TIMEOUT, keys)
            if not isinstance(answer, p.JobPayload):
                text = answer.message if isinstance(answer, p.Error) else type(answer).__name__
                raise RuntimeError(f"the dispatcher did not hand over the job: {text}")
            job, options, ids = _unpack(transport.loads(answer.payload, frames))
        except Exception as error:
            log.error(
                "job %s could not be loaded: %r", self.job_id, error, extra={"job_id": self.job_id}
            )
            self.report(code="invalid", error=f"could not load the job: {error}")
            return None
        options = dataclasses.replace(options, priority=answer.priority)
        self.durable = answer.durable
        try:
            run = JobRun(
                self.client,
                job,
                answer.name,
                options,
                ids,
                job_id=self.job_id,
                credentials=self.credentials,
                token=self.token,
            )
        except UnfitError as error:
            self.report(code="unfit", error=str(error))
            return None
        except Exception as error:  # a plan the planner refuses: the submitter's error
            log.error(
                "job %s could not be planned: %r", self.job_id, error, extra={"job_id": self.job_id}
            )
            self.report(code="invalid", error=f"{type(error).__name__}: {error}")
            return None
        self.report(endpoint=run.endpoint)
        return run, options

    def keep_outcome(self, run: JobRun, keep_for: float) -> None:
        """Hand a finished job's outcome to the dispatcher, which keeps it in its job store
        for ``keep_for`` seconds: fetchable after this process (or the dispatcher) is gone."""
        reply, frames = run.outcome()
        if reply.state != "FINISHED":
            return
        message = p.JobOutcome(self.job_id, self.token, keep_for, p.encode(reply))
        try:
            transport.ask(self.address, message, frames, _PAYLOAD_TIMEOUT)
        except Exception as error:  # it is still served from here until its retention
            log.warning("job %s: the dispatcher did not take its outcome: %r", self.job_id, error)
            return
        self.took_outcome = True  # its shared-memory files are the dispatcher's to remove


def serve(
    run: JobRun,
    retention: float,
    parent: int,
    stop: threading.Event,
    ended: Callable[[], None] = lambda: None,
    durable: bool = False,
) -> None:
    """Serve until the outcome was fetched or kept ``retention`` seconds, or until told to
    stop; a job still running then fails (its slices are killed). ``ended`` is called once,
    when the job has ended.

    A ``durable`` job (its dispatcher keeps it in a store) told to stop is not failed but
    handed over: its slices are killed and no outcome is given, for the dispatcher that
    starts next on that store runs it again, and its handles follow the new master (a
    FAILED answered here, as the dispatcher died, ended a handle that was waiting)."""
    ended_at: float | None = None
    stopped = True
    reason = "its master was stopped (the dispatcher stopped?)"
    while not stop.wait(_TICK):
        if parent and os.getppid() != parent:
            reason = "its master lost the dispatcher's job launcher (killed?)"
            stopped = False
            log.warning(
                "job %s: its launcher is gone: exiting", run.job_id, extra={"job_id": run.job_id}
            )
            break
        if not run.alive():
            return
        if not run.done():
            continue
        now = time.monotonic()
        if ended_at is None:
            ended()
        ended_at = ended_at or now
        # A cancelled job has nothing to keep that the dispatcher's listing does not say.
        fetched = ended_at if run.status() == "CANCELED" else run.fetched_at
        if fetched is not None and now - fetched >= _FETCHED_LINGER:
            return
        if now - ended_at >= retention:
            log.info(
                "job %s: its result was kept %g s unfetched: exiting",
                run.job_id,
                retention,
                extra={"job_id": run.job_id},
            )
            return
    if run.alive() and not run.done():
        if durable and stopped:
            log.warning(
                "job %s: its dispatcher stopped; the next one on its job store runs it again",
                run.job_id,
                extra={"job_id": run.job_id},
            )
            run.abort(reason, hand_over=True)
            return
        log.warning("job %s fails: %s", run.job_id, reason, extra={"job_id": run.job_id})
        run.abort(reason)


def _master(
    address: str, job_id: str, token: str, parent: int, credentials: JobCredentials | None
) -> int:
    """The forked child's life: the master of ``job_id``; its exit code."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # The launcher's pipes to the dispatcher are not the master's to hold open.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write("pydispatch-job")  # how ps and top show a job master
    # The id holds the user's job name: a % in it must reach the log as itself, not as a
    # formatting directive (which broke every record the master logged).
    label = job_id.replace("%", "%%")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s job {label} %(levelname)s %(message)s")
        )
    host = _Host(address, job_id, token, credentials)
    try:
        started = host.start()
        if started is None:
            return 0  # refused, and the submitter was told why: nothing went wrong here
        run, options = started
        try:
            retention = options.result_retention
            keep = lambda: host.keep_outcome(run, retention)  # noqa: E731
            serve(run, retention, parent, stop, keep, host.durable)
        finally:
            run.close(keep_collected=host.took_outcome)
        return 0
    finally:
        host.client.terminate("the job master exits")


# -------------------------------------------------------------------------------- launcher


def _warm() -> None:
    """Import now, once, what every job master's planning imports lazily, and the user API
    that a job's payload names (its restart strategies are pickled as ``pydispatch.stream``'s):
    else each forked master would import it while unpickling its job."""
    from .. import plan, solver, stream  # noqa: F401  (documented in tests/test_layers.py)


def _warm_placement() -> None:
    """Import OR-tools (half a second), which a job master's placement uses; done once the
    launcher has been idle a while, so that neither the cluster's start nor a job submitted
    at once waits for it (a master forked before imports it when it places its job)."""
    # Placement falls back without OR-tools, and says why in the job's metrics.
    with contextlib.suppress(ImportError):
        from ortools.sat.python import cp_model  # noqa: F401
    # The solver's LP bound and min-cost flow too: pywraplp alone took 0.2 s to import in
    # every job master that placed a job (py-spy of the word count benchmark's masters).
    with contextlib.suppress(ImportError):
        from ortools.graph.python import min_cost_flow  # noqa: F401
        from ortools.linear_solver import pywraplp  # noqa: F401


class _Launcher:
    def __init__(self, address: str, parent: int) -> None:
        self.address = address
        self.parent = parent
        self.children: dict[int, str] = {}  # pid -> job id
        self.stop = threading.Event()  # set by SIGTERM (no thread: a flag that can wait)

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the dispatcher ends us, not a Ctrl-C
        pending = b""
        # Not while the cluster starts (2 cores go a long way less far shared with it).
        warm_at: float | None = time.monotonic() + _WARM_AFTER
        while not self.stop.is_set():
            with contextlib.suppress(InterruptedError):
                ready, _, _ = select.select([0], [], [], _TICK)
                if not ready and warm_at is not None and time.monotonic() >= warm_at:
                    _warm_placement()
                    warm_at = None
                if ready:
                    data = os.read(0, 65536)
                    if not data:
                        break  # end-of-file: the dispatcher stopped, or died
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        self._launch(line)
            self._reap()
            if self.parent and os.getppid() != self.parent:
                log.warning("the dispatcher is gone: ending its job masters")
                break
        self._end_children()

    def _launch(self, line: bytes) -> None:
        try:
            job_id, token, keys = json.loads(line)
            if not isinstance(job_id, str) or not isinstance(token, str):
                raise TypeError("expected two strings")
            credentials = None
            if keys is not None:
                keys["admins"] = tuple(keys["admins"])
                credentials = JobCredentials(**keys)
        except (ValueError, TypeError, KeyError) as error:
            log.error("the launcher ignored a line from the dispatcher: %s", error)
            return
        if len(os.listdir("/proc/self/task")) > 1:  # fork copies only this thread
            log.warning("the job launcher has threads: forking it may hang the job master")
        pid = os.fork()
        if pid == 0:  # the job master; it never returns into the launcher's loop
            code = 1
            try:
                code = _master(self.address, job_id, token, os.getppid(), credentials)
            except BaseException:
                traceback.print_exc()
            finally:
                logging.shutdown()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = job_id
        self._tell(["started", job_id, pid])

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job_id = self.children.pop(pid, None)
            if job_id is not None:
                self._tell(["exited", job_id, os.waitstatus_to_exitcode(status)])

    def _tell(self, message: list[Any]) -> None:
        with contextlib.suppress(BrokenPipeError):  # the dispatcher is gone: nobody to tell
            os.write(1, json.dumps(message).encode() + b"\n")

    def _end_children(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for pid, job_id in list(self.children.items()):
            log.error(
                "job %s: its master did not stop: killing it", job_id, extra={"job_id": job_id}
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            del self.children[pid]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pydispatch.dataflow.master_process")
    parser.add_argument("address", help="the dispatcher that started this process")
    parser.add_argument("--parent", type=int, default=0, help="exit when no longer our parent")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s job launcher %(levelname)s %(message)s"
    )
    _warm()
    _Launcher(args.address, args.parent).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
