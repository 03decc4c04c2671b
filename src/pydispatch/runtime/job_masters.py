"""The dispatcher's dataflow job masters: one process per submitted job (private).

As Flink's Dispatcher starts a JobMaster for each submitted job, the dispatcher has a process
run each job's master, so a job outlives the client that submitted it. This module only
starts, tracks, reaps and ends those processes and relays three messages; the job itself is
never unpickled in the dispatcher (a broken or hostile job fails its own process, not the
dispatcher's loop):

1. ``SubmitJob`` (from any peer): the payload blob is checked against its frames, a job id and
   a secret token are made, and the launcher is told to fork the job's master;
2. ``JobPayloadRequest`` (from that master, with its token): the payload's frames, once; the
   dispatcher lets go of them then;
3. ``JobHostReport`` (from the master): ``JobAccepted(job_id, endpoint)`` or
   ``Error(code, reason)`` to the submitter, who waits for one of them in ``execute()``.

The launcher (``python -m pydispatch.dataflow.master_process``, a child of the dispatcher, started
with it) has imported what a job master needs and forks one per job, so a master is ready in
milliseconds instead of the seconds an interpreter's start and imports take on a loaded machine. It
reads ``["JOB_ID", "TOKEN", KEYS]`` lines (KEYS: the job's credentials, or null) on its stdin and
writes ``["started", JOB_ID, PID]`` and ``["exited", JOB_ID, CODE]`` lines on its stdout, which the
dispatcher reads without blocking on each tick: the dispatcher knows every master's pid and exit
code. Ending the dispatcher closes the launcher's stdin: it ends its masters (SIGTERM, which fails a
running job, then SIGKILL after a grace) and exits; a killed dispatcher's launcher reads end-of-file
and does the same, so no job master outlives its dispatcher.

Why the master asks for its payload rather than being given a file or a pipe: the frames go
from the submitter's message to the master as they are, zero-copy, without the dispatcher's
loop writing anything large (no disk, no pipe to keep fed while serving others, no file to
clean up after a crash); a master that dies before asking leaves only an entry the reaper
drops; and the token travels on the launcher's stdin, not a command line or an environment
(which other local processes can read), so another peer cannot fetch a job not its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import msgspec
import zmq

from ..wire import protocol as p
from ..wire.security import Identity, JobCredentials
from ..wire.transport import FrameLike, frame_sizes, rebase
from .access import JobKeys
from .reconnect import RECONNECT_MAX_MS

__all__ = ["ENDED", "JobHosts", "Send"]

log = logging.getLogger(__name__)

ENDED: Final = frozenset({"FINISHED", "FAILED", "CANCELED"})
_ACCEPT_TIMEOUT: Final = 120.0  # a master that has not reported by then is ended
_STOP_WAIT: Final = 8.0  # seconds the launcher gets to end its masters when we stop
_MAX_HOSTS: Final = 256  # job masters at once: a flood of submissions is refused
_EXITED_KEPT: Final = 1000
_RESPAWN_EVERY: Final = 5.0  # seconds between starts of a launcher that dies
_NAME_IN_ID: Final = 100  # characters of a job's name in its id (the line must stay short)
# A restarted dispatcher starts its kept jobs' masters again this long after it started: by
# then every live worker and slot has connected again (their reconnect backoff is capped at
# RECONNECT_MAX_MS) and registered. A master started before would place its job on the part
# of the cluster back first: two jobs pinned their slices to the same two slots, each waiting
# for the other's, until the deployment timeout (60 s) restarted them.
RESUME_AFTER: Final = 2 * RECONNECT_MAX_MS / 1000
_RESUME_EACH_WITHIN: Final = 30.0  # seconds a kept job's master may take to deploy it

Send = Callable[[bytes, p.Message, list[FrameLike]], bool]
# Writes an accepted job where it outlives the dispatcher (durable_jobs): job id, the message,
# its submitter, the payload's blob and frames. Raises if it cannot (the job is refused).
Keep = Callable[[str, p.SubmitJob, bytes, p.Blob, list[FrameLike], Identity | None], None]


@dataclass
class _Host:
    job_id: str
    name: str
    priority: int
    token: str
    submitter: bytes | None  # None once answered
    payload: tuple[p.Blob, list[FrameLike]] | None  # None once fetched
    deadline: float
    pid: int = 0  # 0 until the launcher says it forked
    timed_out: bool = False  # its submitter was told it failed: it must not run
    credentials: JobCredentials | None = None  # with keys: the job's own (see JobKeys)
    owner: Identity | None = None  # with keys: who submitted it


class JobHosts:
    """The job masters of the dispatcher serving at ``address``. ``send`` answers a peer (the
    dispatcher's, which never raises); ``jobs`` is the dispatcher's listing of jobs, by id, and
    ``update`` changes an entry (a master that exits leaves its job without an endpoint)."""

    def __init__(
        self,
        address: str,
        send: Send,
        jobs: Mapping[str, p.JobInfo],
        update: Callable[[p.JobInfo], None],
        *,
        enabled: bool = True,
        job_keys: JobKeys | None = None,
        keep: Keep | None = None,
    ) -> None:
        self._address = address
        self._job_keys = job_keys
        self._send = send
        self._jobs = jobs
        self._update = update
        self._hosts: dict[str, _Host] = {}
        self._exited: dict[str, None] = {}  # recent job ids whose master has exited
        self._ids = itertools.count(1)
        self._unread = b""  # the launcher's last partial line
        self._launcher: subprocess.Popen[bytes] | None = None
        self._respawn_at = 0.0  # a launcher that keeps dying is not restarted every tick
        self._enabled = enabled
        self._keep = keep
        # Kept jobs a restarted dispatcher starts again, once RESUME_AFTER has passed.
        self._resuming: list[tuple[str, str, int, p.Blob, list[FrameLike], Identity | None]] = []
        self._resume_at = 0.0
        self._resumed_last, self._resumed_at = "", 0.0  # the kept job started last, and when
        # Started now, so that it has imported what it needs when the first job comes.
        if enabled:
            with contextlib.suppress(OSError):
                self._running_launcher()

    # -- messages -----------------------------------------------------------------------

    def submit(
        self,
        submitter: bytes,
        message: p.SubmitJob,
        frames: list[zmq.Frame],
        owner: Identity | None = None,
    ) -> None:
        """Start a job master for ``message`` (``owner``: the key that submitted it, with
        keys); ProtocolError if it is malformed."""
        p.check_blob(message.payload, frame_sizes(frames))
        if not self._enabled:
            reason = "this dispatcher hosts no job masters (it runs with --no-job-masters)"
            self._send(submitter, p.Error("unsupported", reason), [])
            return
        if len(self._hosts) >= _MAX_HOSTS:
            reason = (
                f"this dispatcher hosts {_MAX_HOSTS} job masters already (a finished job's "
                "keeps its result until fetched or its retention passes): retry later"
            )
            self._send(submitter, p.Error("busy", reason), [])
            return
        job_id = f"{message.name[:_NAME_IN_ID]}-{next(self._ids)}-{uuid.uuid4().hex[:6]}"
        own: list[FrameLike] = []
        payload = rebase(message.payload, frames, own)  # only its frames are kept
        if self._keep is not None:  # durable: kept before anything answers the submitter
            try:
                self._keep(job_id, message, submitter, payload, own, owner)
            except Exception as error:
                log.exception("job %s: could not be kept", job_id)
                self._send(submitter, p.Error("internal", f"cannot keep the job: {error}"), [])
                return
        self._start(job_id, message.name, message.priority, submitter, payload, own, owner)

    def resume(self, job_id: str, name: str, priority: int, payload: p.Blob,
               frames: list[FrameLike], owner: Identity | None = None) -> None:  # fmt: skip
        """Start a master again for a job a previous dispatcher accepted (durable_jobs)."""
        if not self._enabled:  # it stays in the store, for a dispatcher that hosts masters
            log.warning("job %s not started again: this dispatcher hosts no job masters", job_id)
            return
        if not self._resuming:
            self._resume_at = time.monotonic() + RESUME_AFTER
        self._resuming.append((job_id, name, priority, payload, frames, owner))

    def _start_resumed(self, now: float) -> None:
        """One kept job at a time, the next once the one before is deployed (listed RUNNING)
        or ended, or after _RESUME_EACH_WITHIN: masters placing at once each see every slot
        free, and two jobs pinned their slices to the same two slots, each job waiting for
        the other's slot until the deployment timeout."""
        if not self._resuming or now < self._resume_at:
            return
        last = self._jobs.get(self._resumed_last)  # (listed without an endpoint till it starts)
        deploying = (
            last is not None
            and last.state not in ENDED
            and (last.state == "CREATED" or not last.endpoint)
        )
        if deploying and now < self._resumed_at + _RESUME_EACH_WITHIN:
            return
        job_id, name, priority, payload, frames, owner = self._resuming.pop(0)
        self._resumed_last, self._resumed_at = job_id, now
        self._start(job_id, name, priority, None, payload, frames, owner)

    def _start(self, job_id: str, name: str, priority: int, submitter: bytes | None,
               payload: p.Blob, own: list[FrameLike],
               owner: Identity | None = None) -> None:  # fmt: skip
        token = secrets.token_hex(16)
        credentials = self._job_keys.issue(job_id, owner) if self._job_keys else None
        try:
            self._launch(job_id, token, credentials)
        except OSError as error:
            if credentials is not None and self._job_keys is not None:
                self._job_keys.revoke(credentials)
            if submitter is not None:
                reason = f"cannot start a job master: {error}"
                self._send(submitter, p.Error("internal", reason), [])
            if self._keep is not None:  # (kept already: it must not run again)
                self._update(p.JobInfo(job_id, name, "FAILED", "", 0, 0))
            return
        deadline = time.monotonic() + _ACCEPT_TIMEOUT
        self._hosts[job_id] = _Host(
            job_id,
            name,
            priority,
            token,
            submitter,
            (payload, own),
            deadline,
            credentials=credentials,
            owner=owner,
        )

    def _host(self, job_id: str, token: str) -> _Host:
        host = self._hosts.get(job_id)
        if host is None or not secrets.compare_digest(host.token.encode(), token.encode()):
            raise p.ProtocolError(f"no job {job_id!r} with this token")
        return host

    def check(self, job_id: str, token: str) -> None:
        """ProtocolError unless ``token`` is the secret job ``job_id``'s master was given."""
        self._host(job_id, token)

    def payload(self, peer: bytes, message: p.JobPayloadRequest) -> None:
        host = self._host(message.job_id, message.token)
        if host.payload is None:
            raise p.ProtocolError(f"job {message.job_id!r} was handed over already")
        (blob, frames), host.payload = host.payload, None
        durable = self._keep is not None
        self._send(peer, p.JobPayload(host.name, host.priority, blob, durable), frames)

    def report(self, message: p.JobHostReport) -> None:
        host = self._host(message.job_id, message.token)
        host.payload = None
        if message.endpoint:
            key = host.credentials.public if host.credentials else ""
            self._answer(host, p.JobAccepted(host.job_id, message.endpoint, key))
        else:
            self._answer(host, p.Error(message.code or "invalid", message.error))

    def _answer(self, host: _Host, message: p.Message) -> None:
        if host.submitter is not None:  # it may have gone: the job runs all the same
            self._send(host.submitter, message, [])
            host.submitter = None

    def current(self, job_id: str, token: str) -> bool:
        """Whether a master saying ``token`` for ``job_id`` is the one this dispatcher hosts
        (True for a job hosted elsewhere: its master runs in the application)."""
        host = self._hosts.get(job_id)
        return host is None or secrets.compare_digest(host.token.encode(), token.encode())

    def seen(self, job: p.JobInfo) -> p.JobInfo:
        """A job master's announcement as ``pydispatch jobs`` should list it: one that arrives
        after its process was reaped names an endpoint nobody serves any more. Who owns it and
        its key are the dispatcher's to say, not the master's."""
        host = self._hosts.get(job.job_id)
        if host is not None:
            owner = host.owner
            key = host.credentials.public if host.credentials else ""
            job = msgspec.structs.replace(
                job,
                owner=owner.name if owner else "",
                owner_key=owner.public if owner else "",
                key=key,
            )
        else:
            known = self._jobs.get(job.job_id)
            owner_name, owner_key, key = (
                (known.owner, known.owner_key, known.key) if known else ("", "", "")
            )
            job = msgspec.structs.replace(job, owner=owner_name, owner_key=owner_key, key=key)
        if job.job_id in self._exited:
            return _orphaned(job)
        return job

    # -- the launcher ---------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [
            sys.executable, "-m", "pydispatch.dataflow.master_process", self._address,
            "--parent", str(os.getpid()),
            "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel()),
        ]  # fmt: skip
        # One BLAS thread: the launcher must have no thread but its own when it forks.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        # Own session: a Ctrl-C meant for the dispatcher's terminal reaches the dispatcher
        # only, which then ends its job masters itself (close). A dispatcher that leads a
        # session of its own has no terminal to share (LocalCluster starts it so): there the
        # launcher and its masters stay in its process group, and whoever started it ends them
        # all with one signal to that group (LocalCluster.close).
        launcher = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=os.getsid(0) != os.getpid(),
        )
        assert launcher.stdin is not None
        assert launcher.stdout is not None
        os.set_blocking(launcher.stdin.fileno(), False)
        os.set_blocking(launcher.stdout.fileno(), False)
        self._unread = b""
        log.info("job launcher %d started", launcher.pid)
        return launcher

    def _running_launcher(self) -> subprocess.Popen[bytes]:
        launcher = self._launcher
        if launcher is not None and launcher.poll() is None:
            return launcher
        if launcher is not None:
            self._launcher = None
            self._launcher_gone(launcher)
        try:
            self._launcher = self._spawn()
        except OSError as error:
            log.error("cannot start the job launcher: %s", error)
            raise
        self._respawn_at = time.monotonic() + _RESPAWN_EVERY
        return self._launcher

    def _launch(self, job_id: str, token: str, credentials: JobCredentials | None) -> None:
        # (< PIPE_BUF even with the keys of a few dozen admins: written whole)
        keys = dataclasses.asdict(credentials) if credentials is not None else None
        line = json.dumps([job_id, token, keys]).encode() + b"\n"
        for _ in range(2):  # a launcher that died meanwhile is replaced once
            launcher = self._running_launcher()
            assert launcher.stdin is not None
            try:
                os.write(launcher.stdin.fileno(), line)
                return
            except BrokenPipeError:
                launcher.wait()
            except BlockingIOError:
                raise OSError("the job launcher is not keeping up: retry later") from None
        raise OSError("the job launcher exits at once (see the dispatcher's log)")

    def _launcher_gone(self, launcher: subprocess.Popen[bytes]) -> None:
        """The launcher exited (its masters end themselves: their parent changed)."""
        self._read_launcher(launcher)
        for pipe in (launcher.stdin, launcher.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        log.error("the job launcher exited with code %s", launcher.returncode)
        for job_id in list(self._hosts):
            self._exit(job_id, None)

    def _read_launcher(self, launcher: subprocess.Popen[bytes]) -> None:
        assert launcher.stdout is not None
        while True:
            try:
                data = os.read(launcher.stdout.fileno(), 65536)
            except BlockingIOError:
                return
            if not data:
                return
            *lines, self._unread = (self._unread + data).split(b"\n")
            for line in lines:
                self._launcher_said(line)

    def _launcher_said(self, line: bytes) -> None:
        try:
            kind, job_id, number = json.loads(line)
        except ValueError:
            log.error("the job launcher wrote %r", line[:200])
            return
        if kind == "started" and job_id in self._hosts:
            host = self._hosts[job_id]
            host.pid = number
            log.info("job %s: master process %d", job_id, number)
            if host.timed_out:  # forked after its submitter was told the job failed
                with contextlib.suppress(ProcessLookupError):
                    os.kill(number, signal.SIGKILL)
        elif kind == "exited":
            self._exit(job_id, number)

    # -- reaping --------------------------------------------------------------------------

    def reap(self) -> None:
        """Collect the masters that exited, end those that never reported, keep the launcher
        running (called on each of the dispatcher's ticks)."""
        now = time.monotonic()
        launcher = self._launcher
        if launcher is not None:
            if launcher.poll() is None:
                self._read_launcher(launcher)
            else:
                self._launcher = None
                self._launcher_gone(launcher)
        if (
            self._enabled and self._launcher is None and now >= self._respawn_at
        ):  # a new one for new jobs
            with contextlib.suppress(OSError):
                self._running_launcher()
        self._start_resumed(now)
        for host in self._hosts.values():
            if host.submitter is not None and now > host.deadline:
                log.error("job %s: its master did not report in time: ending it", host.job_id)
                reason = f"the job's master did not start within {_ACCEPT_TIMEOUT:g} s"
                self._answer(host, p.Error("timeout", reason))
                # Whenever its master starts, it finds no job to fetch, and is killed.
                host.payload = None
                host.timed_out = True
                if host.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(host.pid, signal.SIGKILL)

    def _exit(self, job_id: str, code: int | None) -> None:
        host = self._hosts.pop(job_id, None)
        if host is None:
            return
        if host.credentials is not None and self._job_keys is not None:
            self._job_keys.revoke(host.credentials)  # its master is gone: its key goes too
        self._exited[job_id] = None
        if len(self._exited) > _EXITED_KEPT:
            del self._exited[next(iter(self._exited))]
        if host.submitter is not None:
            reason = f"the job's master process exited (code {code}) before accepting it"
            self._answer(host, p.Error("internal", reason))
        info = self._jobs.get(job_id)
        if info is not None and info.state not in ENDED:
            state = info.state
            log.error("job %s: its master process exited (code %s) while %s", job_id, code, state)
        elif code != 0:
            log.warning("job %s: its master process exited with code %s", job_id, code)
        if info is not None:
            self._update(_orphaned(info))

    def close(self) -> None:
        """End every job master and the launcher (closing its stdin: it ends its masters)."""
        for host in self._hosts.values():
            self._answer(host, p.Error("stopped", "the dispatcher is stopping"))
        launcher, self._launcher = self._launcher, None
        if launcher is None:
            return
        assert launcher.stdin is not None
        assert launcher.stdout is not None
        launcher.stdin.close()
        try:
            launcher.wait(timeout=_STOP_WAIT)
        except subprocess.TimeoutExpired:  # its masters see their parent change, and exit
            log.error("the job launcher did not stop: killing it")
            launcher.kill()
            launcher.wait()
        launcher.stdout.close()


def _orphaned(job: p.JobInfo) -> p.JobInfo:
    state = job.state if job.state in ENDED else "FAILED"
    return msgspec.structs.replace(job, state=state, endpoint="")
