"""``LocalCluster``: a dispatcher and worker processes on this machine, in one context manager.

The dispatcher and the workers are forked by one host process (``runtime.cluster_host``:
what they import is imported once, not once a process). Every process is in a session of its
own and ended by its pid on :meth:`LocalCluster.close`: SIGKILL to the process group the pid
leads, which holds a worker and its slot processes (or the dispatcher and the job launcher it
keeps, with its job masters).
Nothing a closing cluster's processes could still do matters to anyone (the dispatcher they
would report to ends with them), so they are not asked to stop gracefully: that took up to half
a second (each process noticing its signal between two polls, one after the other), and the
workers' files are in the cluster's own temporary directory, removed with it. A cluster never
closed is closed at interpreter exit, quietly (``weakref.finalize``).

By default the cluster talks over ``ipc://`` sockets in a private temporary directory, so
nothing binds a network port, and the workers start at the same time as the dispatcher (its
address is known before it binds); pass ``address="tcp://127.0.0.1:0"`` for TCP on a free port.
Without keys nothing is authenticated: the ipc sockets are in that directory, which only this
user can enter (0700). ``keys=True`` runs the cluster with CurveZMQ on every socket and keys made
for it in that directory (``dispatcher``, ``admin``, ``worker``, ``client``; more can be added
there with ``pydispatch keys add``); ``keys=DIR`` uses a directory of yours, whose ``worker``
identity the workers use.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import zmq

from .._exports import publish
from ..scheduling.prefetch import DEFAULT_PREFETCH
from ..wire import protocol as p
from ..wire.security import (
    DISPATCHER,
    IDENTITY_ENV,
    KEYS_ENV,
    add_key,
    admin_http_token,
    connect_curve,
    create_keys,
    load_keys,
)
from ..wire.shm_files import remove_spilled
from ..wire.transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    make_socket,
    parse,
    recv_parts,
    send,
    split_envelope,
)
from .client import Client
from .cluster_host import ClusterHost, HostedProcess

__all__ = ["SLOTS_DIR_ENV", "LocalCluster"]

#: Where a worker makes its private directory (slot state files, ipc endpoints), if set
#: (``runtime.worker`` reads it by this name): a LocalCluster points it into its own temporary
#: directory, which it removes on close however its workers ended.
SLOTS_DIR_ENV: Final = "PYDISPATCH_SLOTS_DIR"


def _format_resources(resources: dict[str, float]) -> str:
    # repr keeps every digit (":g" would turn 2**30 into 1.07374e+09).
    return ",".join(f"{name}={float(amount)!r}" for name, amount in resources.items())


_LINE_STEP_S: Final = 0.05  # how often a wait for the dispatcher's first lines looks at it


@dataclass
class _Owned:
    """What a cluster must end, apart from the cluster object, so that its finalizer (which
    must not hold the cluster) can end it at interpreter exit."""

    tmpdir: str
    address: str = ""
    owner: int = field(default_factory=os.getpid)  # a forked child must not end them
    host: ClusterHost | None = None  # every process's parent (see runtime.cluster_host)
    dispatcher: HostedProcess | None = None
    workers: list[HostedProcess] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)


class LocalCluster:
    """``with LocalCluster(workers=2, slots=1) as cluster: client = cluster.client()``.

    ``preload``: names of modules the workers import before they start, so that every slot
    has them from its first task (``StreamEnvironment.local`` preloads the slices' modules).
    """

    def __init__(
        self,
        workers: int = 2,
        slots: int = 1,
        *,
        address: str | None = None,
        resources: dict[str, float] | None = None,
        labels: dict[str, str] | None = None,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 10.0,
        drain_grace: float = 30.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        start_timeout: float = 30.0,
        prefetch: int = DEFAULT_PREFETCH,
        job_masters: bool = True,
        client_timeout: float = 30.0,
        direct: bool = True,
        http: bool | str = False,
        metrics: bool = True,
        keys: bool | str = False,
        keep_jobs: bool = True,
        preload: Sequence[str] = (),
    ) -> None:
        # Modules the workers import before they start (see runtime.cluster_host): forked
        # with them, every slot has them from its start.
        self._preload = list(preload)
        # The dispatcher's metrics, JSON API and dashboard: off by default (an embedded
        # cluster is often one of many on a machine); True serves them on a free loopback
        # port, a "HOST:PORT" there (see http_url).
        self._http = "127.0.0.1:0" if http is True else (http or None)
        self._metrics = metrics
        #: Where the dispatcher serves them ("" unless asked for), once started.
        self.http_url = ""
        self._direct = direct
        self._keep_jobs = keep_jobs  # a job store (see runtime.job_store) in our directory
        self._prefetch = prefetch
        self._client_timeout = client_timeout
        self._job_masters = job_masters
        self._tmpdir = tempfile.mkdtemp(prefix="pydispatch-cluster-")
        #: The cluster's keys directory (None: no keys, plain text over its private ipc).
        self.keys: str | None = None
        if keys is True:
            self.keys = os.path.join(self._tmpdir, "keys")
            create_keys(self.keys)
            add_key(self.keys, "worker", "worker")
            add_key(self.keys, "client", "client")
        elif isinstance(keys, str) and keys:
            self.keys = os.path.abspath(keys)
            load_keys(self.keys, "worker")  # a clear error now rather than workers that die
        self._requested_address = address or f"ipc://{self._tmpdir}/dispatcher"
        self.address = ""
        self._n_workers = workers
        self._slots = slots
        self._resources = resources or {}
        self._labels = labels or {}
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_timeout = heartbeat_timeout
        self._drain_grace = drain_grace
        self._max_message_size = max_message_size
        self._start_timeout = start_timeout
        self._owned = _Owned(self._tmpdir, self._requested_address)
        self._started = False
        self._ready = False
        self._read_address_later = False
        self._output = b""  # the dispatcher's output not read yet
        # Closes at interpreter exit too, if nobody did before (weakref.finalize runs then).
        self._finalizer = weakref.finalize(self, _close, self._owned)

    @property
    def http_token(self) -> str:
        """The ``admin`` key's bearer token for ``http_url`` (``security.admin_http_token``):
        with keys, the endpoint asks every request for it; "" without keys."""
        if self.keys is None:
            return ""
        secret = load_keys(self.keys, DISPATCHER).secret
        return admin_http_token(secret, load_keys(self.keys, "admin").public)

    @property
    def dispatcher(self) -> HostedProcess | None:
        """The dispatcher's process (``Popen``'s ``pid``, ``poll``, ``wait``, ``kill``,
        ``send_signal``; forked by the cluster's host, which reaps it)."""
        return self._owned.dispatcher

    @property
    def workers(self) -> list[HostedProcess]:
        """The worker processes (``Popen``'s ``pid``, ``poll``, ``wait``, ``kill``,
        ``send_signal``; forked by the cluster's worker host, which reaps them)."""
        return self._owned.workers

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the dispatcher and the workers; return once every worker has registered."""
        self._launch()
        if self._ready:
            return
        try:
            if self._read_address_later:
                self._read_address_later = False
                self._read_address()
            self.wait_for_workers(self._n_workers)
        except BaseException:
            self.close()
            raise
        self._ready = True

    def _launch(self) -> None:
        """Start the processes, without waiting for them (``start`` waits): a caller may do
        something of its own meanwhile (``StreamEnvironment.local`` imports a job's master)."""
        if not self._finalizer.alive:
            raise RuntimeError("this LocalCluster was closed: make a new one")
        if self._started:
            return
        self._started = True
        try:
            self._spawn_dispatcher()
            if self._requested_address.startswith("ipc://"):
                # The address is known before the dispatcher binds it: its start-up and the
                # worker host's overlap (the host forks a worker once the address is bound).
                self.address = self._requested_address
                self._start_workers()
                self._read_address_later = True
            else:
                self._read_address()  # a tcp port chosen by the OS, if asked
                self._start_workers()
        except BaseException:
            self.close()
            raise

    def _start_workers(self) -> None:
        for index in range(self._n_workers):
            self.start_worker(
                name=f"worker-{index}",
                slots=self._slots,
                resources=self._resources,
                labels=self._labels,
            )

    def _spawn_dispatcher(self) -> None:
        options = {
            "heartbeat_interval": self._heartbeat_interval,
            "heartbeat_timeout": self._heartbeat_timeout,
            "max_message_size": self._max_message_size,
            "prefetch": self._prefetch,
            "job_masters": self._job_masters,
            "client_timeout": self._client_timeout,
            "metrics": self._metrics,
            "http": self._http,
            # Its own store, kept across restart_dispatcher(), removed with the cluster.
            "state_dir": os.path.join(self._tmpdir, "state") if self._keep_jobs else None,
        }
        address, env = self._requested_address, self._environment(DISPATCHER)
        self._owned.dispatcher = self._host().start("dispatcher", address, options, env)

    def _host(self) -> ClusterHost:
        """The cluster's host process, started on first use."""
        if self._owned.host is None:
            # The workers' environment: the host imports the workers' modules (the
            # dispatcher's get theirs from its request).
            env = {**self._environment("worker"), SLOTS_DIR_ENV: self._tmpdir}
            self._owned.host = ClusterHost(self._preload, env)
        return self._owned.host

    def _environment(self, identity: str) -> dict[str, str]:
        """Our environment for a process of the cluster, naming its keys (or none)."""
        env = {k: v for k, v in os.environ.items() if k not in (KEYS_ENV, IDENTITY_ENV)}
        if self.keys is not None:
            env[KEYS_ENV] = self.keys
            env[IDENTITY_ENV] = identity
        return env

    def _read_address(self) -> None:
        # The first line names the bound endpoint (a tcp port chosen by the OS, if asked).
        self.address = self._dispatcher_line("").rsplit(" ", 1)[-1]
        if self._http:  # a second line names where the HTTP endpoint listens
            self.http_url = self._dispatcher_line(" (its HTTP endpoint?)").rsplit(" ", 1)[-1]

    def _dispatcher_line(self, hint: str) -> str:
        """The dispatcher's next line of output, or an error once it exited (the pipe stays
        open: the host holds it for the next dispatcher) or ``start_timeout`` passed."""
        dispatcher, host = self._owned.dispatcher, self._owned.host
        assert dispatcher is not None
        assert host is not None
        deadline = time.monotonic() + self._start_timeout
        while b"\n" not in self._output:
            if dispatcher.poll() is not None:
                raise RuntimeError(f"the dispatcher exited during start-up{hint}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dispatcher did not start in time{hint}")
            ready, _, _ = select.select([host.dispatcher_output], [], [], _LINE_STEP_S)
            if ready:
                self._output += os.read(host.dispatcher_output, 4096)
        line, self._output = self._output.split(b"\n", 1)
        return line.decode().strip()

    def restart_dispatcher(self) -> None:
        """End the dispatcher and start a new one on the same address (workers re-register;
        tasks held by the old one are lost to their clients)."""
        old = self._owned.dispatcher
        if old is not None:
            _end(old, signal.SIGKILL)
        self._output = b""  # what the old one wrote and was not read
        if self.address.startswith("tcp://"):
            self._requested_address = self.address  # the same port again
        self._spawn_dispatcher()
        self._read_address()

    def start_worker(
        self,
        *,
        name: str,
        slots: int = 1,
        resources: dict[str, float] | None = None,
        labels: dict[str, str] | None = None,
    ) -> HostedProcess:
        """Start one more worker process (it registers by itself; see wait_for_workers)."""
        options = {
            "slots": slots,
            "resources": {name: float(amount) for name, amount in (resources or {}).items()},
            "labels": dict(labels or {}),
            "name": name,
            "drain_grace": self._drain_grace,
            "max_message_size": self._max_message_size,
            "direct": self._direct,
        }
        # The worker's own directory goes into ours, so that close() removes it however the
        # worker ended.
        env = {**self._environment("worker"), SLOTS_DIR_ENV: self._tmpdir}
        process = self._host().start("worker", self.address, options, env)
        self._owned.workers.append(process)
        return process

    def wait_for_workers(self, count: int, timeout: float | None = None) -> None:
        """Until ``count`` workers (not draining) have registered; asks the dispatcher's status
        every 10 ms over one socket (a socket and context per question cost the processes
        starting meanwhile a millisecond of CPU each)."""
        deadline = time.monotonic() + (timeout or self._start_timeout)
        dispatcher = self._owned.dispatcher
        context: zmq.Context[Any] = zmq.Context()
        sock = make_socket(context, zmq.DEALER)
        try:
            if self.keys is not None:
                admin = load_keys(self.keys, "admin")
                connect_curve(sock, admin.public, admin.secret, admin.server)
            sock.connect(self.address)
            while True:
                failed = [w.pid for w in self.workers if w.poll() not in (None, 0)]
                if failed or (dispatcher is not None and dispatcher.poll() is not None):
                    raise RuntimeError(f"a cluster process exited during start-up (pids {failed})")
                send(sock, p.StatusRequest())
                if not sock.poll(max(100, int((deadline - time.monotonic()) * 1000))):
                    raise TimeoutError(f"no dispatcher answered at {self.address} in time")
                _, body = split_envelope(recv_parts(sock), routed=False)
                status, _ = parse(body)
                if not isinstance(status, p.StatusReply):
                    raise p.ProtocolError(f"expected StatusReply, got {type(status).__name__}")
                if sum(1 for w in status.workers if not w.draining) >= count:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{count} worker(s) did not register in time")
                time.sleep(0.01)
        finally:
            sock.close(linger=0)
            context.term()

    def client(self, **options: Any) -> Client:
        """A client of this cluster (ended with it: its unfinished futures fail on close); with
        keys, as ``identity`` (default ``"client"``) of the cluster's keys."""
        if not self._finalizer.alive:
            raise RuntimeError("this LocalCluster was closed: make a new one")
        if not self.address:
            raise RuntimeError(
                "this LocalCluster is not started: use `with LocalCluster(...) as cluster:` "
                "or call cluster.start() before cluster.client()"
            )
        options.setdefault("keys", self.keys or "")  # "": none, whatever the environment says
        if self.keys is not None:
            options.setdefault("identity", "client")
        client = Client(self.address, **options)
        self._owned.clients.append(client)
        return client

    @property
    def worker_pids(self) -> list[int]:
        return [process.pid for process in self.workers]

    def close(self) -> None:
        """End every process of the cluster (by pid) and fail its clients' unfinished futures.
        Closing twice does nothing."""
        self._finalizer()


def _close(owned: _Owned) -> None:
    """End what a cluster started: at close, or at interpreter exit (then quietly: nothing
    here raises or logs)."""
    if os.getpid() != owned.owner:  # a fork of the process that started them, exiting
        return
    for client in owned.clients:
        with contextlib.suppress(Exception):
            client.terminate("the LocalCluster was closed")
    owned.clients.clear()
    processes = list(owned.workers)
    if owned.dispatcher is not None:
        processes.append(owned.dispatcher)
    for process in processes:
        _kill_group(process)
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)  # SIGKILL does not fail: reaped at once (by the host)
    if owned.host is not None:
        owned.host.close()  # and the pipe of the dispatcher's output
    shutil.rmtree(owned.tmpdir, ignore_errors=True)
    if owned.address.startswith("ipc://"):  # what its jobs left in /dev/shm (SIGKILLed)
        remove_spilled(owned.address)


def _kill_group(process: HostedProcess) -> None:
    """SIGKILL the process group ``process`` leads (it was started in a session of its own):
    the process and its children (a worker's slots; the dispatcher's job launcher and masters).
    Only while ``process`` is not reaped: until then its pid, and so its group id, is ours."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group's leader alone, a zombie
        with contextlib.suppress(ProcessLookupError):
            process.kill()


def _end(process: HostedProcess, first: signal.Signals) -> None:
    """Ask politely, then SIGKILL; always reap. (SIGCONT first: it may be stopped.)"""
    if process.poll() is not None:
        return
    try:
        process.send_signal(signal.SIGCONT)
        process.send_signal(first)
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# Users import these from ``pydispatch``: they carry that name (see ``pydispatch._exports``).
publish("pydispatch", globals(), ["LocalCluster"])
