"""Submitting a dataflow job to a dispatcher, and :class:`JobHandle`, the job's remote handle
(private; documented in ``pydispatch.stream``).

:func:`submit_job` cloudpickles the job (functions and lambdas by value, numpy columns out of band
as raw frames) into a ``protocol.SubmitJob`` to the dispatcher, which starts the job's master
process (``pydispatch.dataflow.master_process``) and answers once that process has planned and
deployed the job (``JobAccepted``: its id and its master's control endpoint) or refused it (an
``Error``: raised here, e.g. ``ValueError`` for a job that can never fit the cluster).

A :class:`JobHandle` holds no socket and no thread: each call asks the master one question on a
fresh DEALER (no stale answers after a timeout, safe from any thread), and the job's outcome,
once fetched, is kept here, so ``status()`` / ``metrics()`` after ``result()`` cost nothing and
still work after the master has exited. Any process can get a handle to a job by its id
(:meth:`JobHandle.attach`): the job does not depend on the process that submitted it.

A job run in process (``StreamEnvironment()`` without a target) gets a :class:`JobHandle` too,
made by :meth:`JobHandle.finished` with its outcome already known: the same type either way, so
code written against a cluster runs unchanged in a test without one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import zmq

from ..errors import JobFailedError
from ..wire import job_plane as jp
from ..wire import protocol as p
from ..wire import transport
from ..wire.addresses import host_of, resolve_host
from ..wire.security import Keys, connect_curve, load_keys, resolve_keys
from ..wire.shm_files import spill_prefix

if TYPE_CHECKING:
    from ..plan import ExecutionGraph
    from ..plan._job_graph import JobGraph
    from .job_run import JobOptions
    from .result import JobResult


__all__ = [
    "SPILL_BYTES",
    "TERMINAL",
    "JobHandle",
    "JobRefusedError",
    "dispatcher_address",
    "fetch_jobs",
    "find_job",
    "spill_arrays",
    "spill_elements",
    "spill_sources",
    "submit_job",
    "target_keys",
]

log = logging.getLogger(__name__)

TERMINAL: Final = frozenset({"FINISHED", "FAILED", "CANCELED"})
_ANSWER_TIMEOUT: Final = 5.0  # seconds a master may take to answer beyond a request's wait
_LONG_POLL: Final = 10.0  # seconds a result request waits at the master per round
_SUBMIT_TIMEOUT: Final = 180.0  # a master's start: a process, the job's unpickling, the solver
_RECONNECT_TIMEOUT: Final = 60.0  # as a Client's default
_RETRY: Final = 0.1  # seconds between questions to a master that cannot be reached
# A master that cannot be reached: nothing listens at its port (its process died), or the
# connection to it was lost while it held our request.
_LOST: Final = zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED


class JobRefusedError(RuntimeError):
    """The dispatcher would not take the job (it hosts no job masters, is busy or stopping):
    a condition of the cluster, not of the job, which ``ValueError`` reports."""


def dispatcher_address(target: object) -> str:
    """The address of a target: a Client, a LocalCluster or an address."""
    from ..runtime.client import Client
    from ..runtime.cluster import LocalCluster

    if isinstance(target, Client | LocalCluster):
        return target.address
    if isinstance(target, str):
        return target
    raise TypeError(
        "StreamEnvironment: the target must be a Client, a LocalCluster or a dispatcher "
        f"address, not {type(target).__name__}"
    )


def target_keys(target: object, keys: str | Keys | None, identity: str | None) -> Keys | None:
    """The keys to reach a target with: ``keys`` if given; else a Client's own, a
    LocalCluster's (its ``identity``, default ``"client"``), or those the environment names."""
    from ..runtime.client import Client
    from ..runtime.cluster import LocalCluster

    if keys is not None:
        return resolve_keys(keys, identity)
    if isinstance(target, Client):
        return target.keys
    if isinstance(target, LocalCluster):
        return load_keys(target.keys, identity or "client") if target.keys else None
    return resolve_keys(None, identity)


def fetch_jobs(
    address: str, timeout: float = 5.0, keys: str | Keys | None = None
) -> list[p.JobInfo]:
    """The dataflow jobs a dispatcher knows of (with keys: those this key may see), oldest
    change first."""
    message = transport.request(address, p.JobsRequest(), timeout, keys)
    if isinstance(message, p.Error):
        raise PermissionError(f"the dispatcher at {address} refused: {message.message}")
    if not isinstance(message, p.JobsReply):
        raise p.ProtocolError(f"expected JobsReply, got {type(message).__name__}")
    return message.jobs


def find_job(
    address: str, job: str, timeout: float = 5.0, keys: str | Keys | None = None
) -> p.JobInfo:
    """The job ``job`` names: its id, else its name, else the start of its id, whichever
    matches first; LookupError (one line, saying what matched) when none or several do.
    With keys, only the jobs this key may see count (another client's job is not found)."""
    jobs = fetch_jobs(address, timeout, keys)
    for what, matches in (
        ("id", [j for j in jobs if j.job_id == job]),
        ("name", [j for j in jobs if j.name == job]),
        ("id prefix", [j for j in jobs if job and j.job_id.startswith(job)]),
    ):
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(j.job_id for j in matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise LookupError(
                f"{job!r} is ambiguous at {address}: it is the {what} of {len(matches)} jobs "
                f"({ids}); give a job id"
            )
    raise LookupError(f"no job {job!r} at {address} (neither a job id, a name nor an id prefix)")


def submit_job(
    address: str,
    job: JobGraph,
    name: str,
    options: JobOptions,
    original_ids: list[int],
    timeout: float = _SUBMIT_TIMEOUT,
    keys: Keys | None = None,
) -> JobHandle:
    """Hand the job to the dispatcher at ``address``; its handle once its master runs it."""
    given: Keys | str = keys if keys is not None else ""  # "": none, whatever the environment
    fetch_jobs(address, min(timeout, 10.0), given)  # a missing dispatcher: a quick, clear error
    spilled: list[str] = []
    if address.startswith("ipc://"):  # every worker of an ipc:// dispatcher is on this host
        job, spilled = spill_sources(job, address)
        from .slice_results import with_collect_dir  # (the CLI imports this module: no numpy)

        job, collect_to = with_collect_dir(job, address)  # and results come back the same way
        spilled += [collect_to] if collect_to else []
    try:
        # From here the job's master owns the files: the slices (and any restart of them)
        # read them while the job runs, and the master removes them when it ends
        # (JobRun.close), whether or not this process keeps the handle.
        return _submit(address, job, name, options, original_ids, timeout, keys)
    except BaseException:
        for directory in spilled:
            shutil.rmtree(directory, ignore_errors=True)
        raise


#: ``from_arrays`` sources at least this large go to the slices through shared memory.
SPILL_BYTES = 8 << 20


def spill_arrays(job: JobGraph, address: str = "") -> tuple[JobGraph, str | None]:
    """The job with each large ``from_arrays`` source's columns written to files in shared
    memory (``/dev/shm`` where there is one) and replaced by :class:`MappedColumn` s, and the
    directory holding them (None: nothing written). Each slice then maps its own rows: the
    arrays do not travel through the dispatcher and the job's master (one copy, here, instead
    of four socket hops)."""
    import numpy as np  # here: the CLI imports this module, and needs no numpy

    from ..plan._sources import MappedColumn

    directory: str | None = None
    original = job
    for op in job.sources():
        params = op.params
        if params["source"] != "arrays":
            continue
        columns = params["columns"]
        plain = [c for c in columns.values() if isinstance(c, np.ndarray)]
        if len(plain) != len(columns) or any(c.dtype.hasobject for c in plain):
            continue
        if sum(c.nbytes for c in plain) < SPILL_BYTES:
            continue
        try:
            if directory is None:
                shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
                directory = tempfile.mkdtemp(prefix=spill_prefix(address), dir=shm)
            mapped: dict[str, Any] = {}
            for i, (column_name, column) in enumerate(columns.items()):
                path = os.path.join(directory, f"{op.id}-{i}")
                np.ascontiguousarray(column).tofile(path)
                mapped[column_name] = MappedColumn(path, column.dtype.str, column.shape[0])
        except OSError as error:  # shared memory full: the arrays travel with the job
            log.warning(
                "from_arrays: cannot write to shared memory (%s); sending the arrays", error
            )
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            return original, None
        job = job.replace(op.id, params=dict(params, columns=mapped))
    return job, directory


#: ``from_collection`` sources of at least this many elements go to the slices through files.
SPILL_ELEMENTS = 10_000


def spill_sources(job: JobGraph, address: str = "") -> tuple[JobGraph, list[str]]:
    """:func:`spill_arrays` then :func:`spill_elements`: the job and the directories written.
    ``address``: the dispatcher's, which names the directories (``wire.shm_files``), so
    that its cluster removes what its jobs leave."""
    job, arrays = spill_arrays(job, address)
    job, elements = spill_elements(job, address)
    return job, [d for d in (arrays, elements) if d is not None]


def spill_elements(job: JobGraph, address: str = "") -> tuple[JobGraph, str | None]:
    """The job with each large ``from_collection`` source's elements pickled to files in
    shared memory, one per split (``plan._sources.SpilledElements``), and the directory
    holding them (None: nothing written). Each slice reads its own split's file: the elements
    are pickled once, here, not unpickled and pickled again by the job's master (measured: a
    third of a word count's fixed cost, see the issue 18 note). Elements that do not pickle
    with :mod:`pickle` travel with the job as before."""
    import pickle

    from ..plan._sources import SpilledElements, sequence_split

    directory: str | None = None
    original = job
    for op in job.sources():
        params = op.params
        if params["source"] != "elements" or isinstance(params["elements"], SpilledElements):
            continue
        elements = params["elements"]
        if len(elements) < SPILL_ELEMENTS:
            continue
        try:
            splits = [
                pickle.dumps(sequence_split(elements, i, op.parallelism), protocol=5)
                for i in range(op.parallelism)
            ]
        except (pickle.PicklingError, AttributeError, TypeError):  # cloudpickle, with the job
            continue
        try:
            if directory is None:
                shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
                directory = tempfile.mkdtemp(prefix=spill_prefix(address), dir=shm)
            paths = []
            for i, data in enumerate(splits):
                path = os.path.join(directory, f"{op.id}-elements-{i}")
                with open(path, "wb") as file:
                    file.write(data)
                paths.append(path)
        except OSError as error:  # shared memory full: the elements travel with the job
            log.warning(
                "from_collection: cannot write to shared memory (%s); sending the elements",
                error,
            )
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            return original, None
        spilled = SpilledElements(tuple(paths), len(elements))
        job = job.replace(op.id, params=dict(params, elements=spilled))
    return job, directory


def _submit(
    address: str,
    job: JobGraph,
    name: str,
    options: JobOptions,
    original_ids: list[int],
    timeout: float,
    keys: Keys | None,
) -> JobHandle:
    given: Keys | str = keys if keys is not None else ""
    frames: list[transport.FrameLike] = []
    # With the address this client reached the dispatcher by: where its job master binds
    # unless the job or the dispatcher names a host (master_process.master_host).
    # (Not with a list of standbys: which one leads is theirs to say, by --advertise-host.)
    reached = resolve_host(host_of(address)) if host_of(address) and "," not in address else ""
    payload = transport.dumps((job, options, original_ids, reached), frames, inline_limit=0)
    message = p.SubmitJob(name, options.priority, payload)
    answer, _ = transport.ask(address, message, frames, timeout, given)
    if isinstance(answer, p.JobAccepted):
        return JobHandle(
            address,
            answer.job_id,
            name,
            answer.endpoint,
            job,
            options.chaining,
            keys=keys,
            server_key=answer.key,
        )
    if isinstance(answer, p.Error):
        if answer.code in ("unfit", "invalid"):
            raise ValueError(answer.message)
        raise JobRefusedError(
            f"the dispatcher refused job {name!r}: {answer.code}: {answer.message}"
        )
    raise p.ProtocolError(f"expected JobAccepted, got {type(answer).__name__}")


@dataclass
class _Outcome:
    state: str
    metrics: dict[str, Any]
    error: str = ""
    result: JobResult | None = None
    subtask_results: dict[int, list[Any]] = field(default_factory=dict)
    gone: bool = False  # the master had exited: the result is no longer to be had


class JobHandle:
    """A dataflow job: ``status()``, ``result()``, ``cancel()``, ``metrics()``.

    What ``StreamEnvironment.execute()`` returns, on a cluster (the job runs on) and in process
    (the job has finished: see :meth:`finished`). ``result()`` returns the :class:`JobResult`;
    ``collected`` / ``records_in`` / ``records_out`` / ``runtime_mode`` wait for it and are its
    attributes, so ``env.execute().collected`` works either way; ``subtask_results``: per
    collect sink, what each of its subtasks received. ``plan``: the job's execution plan (None
    for a handle from :meth:`attach`)."""

    def __init__(
        self,
        address: str,
        job_id: str,
        name: str,
        endpoint: str,
        job: JobGraph | None = None,
        chaining: bool = True,
        state: str = "",
        *,
        keys: Keys | None = None,
        server_key: str = "",
    ) -> None:
        # With keys: whose key asks the job's master, and the job's key (its master's).
        self._keys = keys
        self._server_key = server_key
        self.job_id = job_id
        self.name = name
        self.address = address
        self.endpoint = endpoint
        self._job = job
        self._chaining = chaining
        self._plan: ExecutionGraph | None = None
        self._outcome: _Outcome | None = None
        # How long the job may be out of reach while its dispatcher restarts (see _ask).
        self.reconnect_timeout = _RECONNECT_TIMEOUT
        if not endpoint and state in ("FAILED", "CANCELED"):  # listed, its master gone
            self._outcome = _gone(job_id, state)

    @classmethod
    def attach(
        cls,
        target: object,
        job: str,
        *,
        keys: str | Keys | None = None,
        identity: str | None = None,
        timeout: float = 5.0,
    ) -> JobHandle:
        """A handle to the job ``job`` names (its id, else its name, else the start of its id;
        see :func:`find_job`) of the dispatcher ``target`` (an address, a Client or a
        LocalCluster), from any process; with keys (see :func:`target_keys`), a job this key
        owns (or any, for an admin's). ``timeout``: for the dispatcher's listing."""
        address = dispatcher_address(target)
        credentials = target_keys(target, keys, identity)
        info = find_job(address, job, timeout, keys=credentials or "")
        return cls(
            address,
            info.job_id,
            info.name,
            info.endpoint,
            state=info.state,
            keys=credentials,
            server_key=info.key,
        )

    @classmethod
    def finished(
        cls,
        result: JobResult,
        job: JobGraph | None = None,
        chaining: bool = True,
        subtask_results: dict[int, list[Any]] | None = None,
        seconds: float = 0.0,
    ) -> JobHandle:
        """The handle of a job run to its end in this process: status FINISHED, ``result()``
        at once, ``cancel()`` False (nothing left to cancel); no address, no master."""
        handle = cls(
            "", f"{result.name}-local-{uuid.uuid4().hex[:6]}", result.name, "", job, chaining
        )
        metrics = {
            "status": "FINISHED",
            "restarts": 0,
            "records_in": dict(result.records_in),
            "records_out": dict(result.records_out),
            "bytes_shuffled": 0,
            "seconds": seconds,
        }
        handle._outcome = _Outcome("FINISHED", metrics, result=result)
        handle._outcome.subtask_results = dict(subtask_results or {})
        return handle

    # -- public -----------------------------------------------------------------------------

    @property
    def plan(self) -> ExecutionGraph | None:
        if self._plan is None and self._job is not None:
            from ..plan import ExecutionGraph

            self._plan = ExecutionGraph(self._job, chaining=self._chaining)
        return self._plan

    def status(self) -> str:
        """CREATED, RUNNING, RESTARTING, FINISHED, FAILED or CANCELED."""
        if self._outcome is not None:
            return self._outcome.state
        reply, _ = self._ask(jp.JobStatusRequest())
        if isinstance(reply, jp.JobStatusReply):
            return reply.state
        return self._known().state

    def done(self) -> bool:
        return self.status() in TERMINAL

    def result(self, timeout: float | None = None) -> JobResult:
        """Wait for the job; raises :class:`JobFailedError` or ``CancelledError``, or
        ``LookupError`` when its master has exited and its result is no longer kept."""
        outcome = self._wait(timeout)
        if outcome.state == "CANCELED":
            raise CancelledError(f"job {self.job_id} was cancelled")
        if outcome.result is not None:
            return outcome.result
        if outcome.gone and outcome.state == "FINISHED":
            raise LookupError(outcome.error)
        raise JobFailedError(outcome.error or "the job failed")

    def cancel(self) -> bool:
        """Cancel the job (its running slices are killed); False if it had ended already."""
        if self._outcome is not None:
            return False
        reply, _ = self._ask(jp.JobCancel())
        return isinstance(reply, jp.JobCancelled) and reply.cancelled

    def savepoint(
        self, path: str | os.PathLike[str], *, stop: bool = False, timeout: float = 120.0
    ) -> str:
        """Take a savepoint of the running job into directory ``path`` (a checkpoint the user
        keeps: start a job from it with ``pydispatch submit ... --from-savepoint PATH``, at
        another parallelism if need be); ``stop``: then cancel the job. Returns the path once
        the savepoint is written; RuntimeError if it failed (the job does not checkpoint, a
        checkpoint timed out...). Needs ``env.enable_checkpointing``."""
        where = os.path.abspath(os.fspath(path)) if "://" not in str(path) else str(path)
        reply, _ = self._ask(jp.SavepointRequest(where, stop), wait=timeout)
        if not isinstance(reply, jp.SavepointReply):
            raise RuntimeError(f"job {self.job_id}: no savepoint (the job has ended?)")
        if reply.error:
            raise RuntimeError(f"job {self.job_id}: savepoint failed: {reply.error}")
        return reply.path

    def metrics(self) -> dict[str, Any]:
        """Records in/out per operator, bytes and batches shuffled, busy and back-pressured
        seconds per chain, restarts, placement. While the job runs: the current attempt's
        figures as its slices last reported them (every 0.5 s); once finished: the final ones."""
        if self._outcome is None:
            reply, _ = self._ask(jp.JobStatusRequest())
            if isinstance(reply, jp.JobStatusReply):
                return reply.metrics
        return dict(self._known().metrics)

    @property
    def collected(self) -> dict[int, Any]:
        return self.result().collected

    @property
    def records_in(self) -> dict[int, int]:
        return self.result().records_in

    @property
    def records_out(self) -> dict[int, int]:
        return self.result().records_out

    @property
    def runtime_mode(self) -> str:
        """``"batch"`` or ``"streaming"`` (waits for the result)."""
        return self.result().runtime_mode

    @property
    def subtask_results(self) -> dict[int, list[Any]]:
        self.result()
        return self._known().subtask_results

    def __repr__(self) -> str:
        state = self._outcome.state if self._outcome is not None else "..."
        return f"JobHandle({self.job_id!r}, {state})"

    # -- the master's answers ---------------------------------------------------------------

    def _kept_outcome(self) -> _Outcome | None:
        """The outcome the dispatcher keeps for a finished job (see ``p.JobOutcome``)."""
        try:
            request = p.JobOutcomeRequest(self.job_id)
            answer, frames = transport.ask(self.address, request, keys=self._keys or "")
        except TimeoutError:
            return None
        if not isinstance(answer, p.JobOutcomeReply) or not answer.reply:
            return None
        reply = jp.decode_job(answer.reply)
        if not isinstance(reply, jp.JobResultReply):
            return None
        self._keep(reply, frames)
        return self._outcome

    def _listing(self) -> p.JobInfo | None:
        """The dispatcher's entry for this job; None while the dispatcher does not answer."""
        try:
            return find_job(self.address, self.job_id, timeout=1.0, keys=self._keys or "")
        except TimeoutError:
            return None

    def _known(self) -> _Outcome:
        """The outcome, which the caller knows is here (``_ask`` sets it when the master has
        exited)."""
        if self._outcome is None:
            raise RuntimeError(f"job {self.job_id}: no outcome yet")
        return self._outcome

    def _wait(self, timeout: float | None) -> _Outcome:
        end = None if timeout is None else time.monotonic() + timeout
        while self._outcome is None:
            asked = time.monotonic()
            left = _LONG_POLL if end is None else min(_LONG_POLL, end - asked)
            reply, frames = self._ask(jp.JobResultRequest(max(0.0, left)), max(0.0, left))
            if isinstance(reply, jp.JobResultReply):
                self._keep(reply, frames)
            elif end is not None and time.monotonic() >= end and self._outcome is None:
                state = reply.state if isinstance(reply, jp.JobStatusReply) else "?"
                raise TimeoutError(f"job {self.job_id} is still {state}")
            elif time.monotonic() - asked < min(left, _RETRY):
                time.sleep(_RETRY)  # answered before the wait ended (a busy master): no spin
        return self._outcome

    def _keep(self, reply: jp.JobResultReply, frames: list[zmq.Frame]) -> None:
        outcome = _Outcome(reply.state, reply.metrics, reply.error)
        if reply.result is not None:
            from .slice_results import unpack_outcome  # (with the records' own imports)

            loaded = transport.loads(reply.result, frames)
            outcome.result, outcome.subtask_results = unpack_outcome(loaded)
        self._outcome = outcome

    def _ask(
        self, message: jp.JobMessage, wait: float = 0.0
    ) -> tuple[jp.JobMessage | None, list[zmq.Frame]]:
        """The master's answer; ``(None, [])`` once it is known to have exited (the outcome
        is then set from the dispatcher's listing, which drops a master's endpoint within a
        tick of its exit). TimeoutError if it neither answers nor is known to be gone.

        Across a dispatcher's restart (its jobs are durable: see ``runtime.durable_jobs``) the
        job's master is started again elsewhere: the handle follows the endpoint the
        dispatcher lists, waiting for the dispatcher and the new master for up to
        ``reconnect_timeout`` seconds (then ConnectionError)."""
        end = time.monotonic() + wait + _ANSWER_TIMEOUT
        lost_since: float | None = None  # since when neither master nor dispatcher helps
        while True:
            answer = None
            if self.endpoint:  # (none while a restarted dispatcher starts its new master)
                answer = _one_question(
                    self.endpoint, message, end - time.monotonic(), self._keys, self._server_key
                )
            if answer is not None:
                reply, frames = answer
                if isinstance(reply, p.Error):
                    raise RuntimeError(f"the master of job {self.job_id} refused: {reply.message}")
                return reply, frames
            info = self._listing()
            if info is not None and not info.endpoint and info.state in TERMINAL:
                # Its master has exited: the dispatcher may keep a finished job's outcome.
                self._outcome = self._kept_outcome() or _gone(self.job_id, info.state)
                return None, []
            if info is not None and info.endpoint and info.endpoint != self.endpoint:
                self.endpoint = info.endpoint  # a new master (the dispatcher restarted)
                end = max(end, time.monotonic() + _ANSWER_TIMEOUT)
                continue
            if info is None or not info.endpoint:  # the dispatcher, or the job's new master,
                now = time.monotonic()  # is on its way back
                lost_since = lost_since or now
                if now - lost_since >= self.reconnect_timeout:
                    raise ConnectionError(
                        f"job {self.job_id}: neither its master nor the dispatcher at "
                        f"{self.address} answered for {now - lost_since:.1f} s "
                        f"(reconnect_timeout={self.reconnect_timeout:g} s)"
                    )
                end = max(end, now + _RETRY)
            if time.monotonic() >= end:
                where = f"at {self.endpoint} does not answer"
                raise TimeoutError(f"the master of job {self.job_id} {where}")
            time.sleep(_RETRY)


def _one_question(
    endpoint: str,
    message: jp.JobMessage,
    timeout: float,
    keys: Keys | None = None,
    server_key: str = "",
) -> tuple[jp.JobMessage, list[zmq.Frame]] | None:
    """The answer to ``message``, or None: no answer within ``timeout``, or the master's
    socket refused the connection or dropped it (its process died) before answering."""
    sock = transport.make_socket(zmq.Context.instance(), zmq.DEALER)
    if keys is not None and server_key:
        connect_curve(sock, keys.public, keys.secret, server_key)
    monitor = sock.get_monitor_socket(_LOST)
    try:
        sock.connect(endpoint)
        transport.send(sock, message)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        end = time.monotonic() + max(0.0, timeout)
        while (left := end - time.monotonic()) > 0:
            ready = dict(poller.poll(int(left * 1000) + 1))
            if sock in ready:
                _, body = transport.split_envelope(sock.recv_multipart(copy=False), routed=False)
                return transport.parse_job_reply(body)
            if monitor in ready:
                monitor.recv_multipart()
                return None
        return None
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)


def _gone(job_id: str, state: str) -> _Outcome:
    """The outcome of a job whose master has exited: only its final state is known."""
    if state not in TERMINAL:
        state = "FAILED"
    if state == "FINISHED":
        why = "its result was fetched already, or kept past its retention"
    else:
        why = "the details went to whoever fetched its outcome, or to the dispatcher's log"
    error = f"job {job_id} ended {state} and its master process has exited: {why}"
    return _Outcome(state, {"status": state}, error, gone=True)
