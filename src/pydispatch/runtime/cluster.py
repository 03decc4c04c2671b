"""``LocalCluster``: a dispatcher and worker processes on this machine, in one context manager.

Every process is started with ``subprocess`` and ended by its pid on :meth:`LocalCluster.close`
(SIGINT then SIGKILL for workers, which end their own slot processes; SIGTERM then SIGKILL for
the dispatcher). By default the cluster talks over ``ipc://`` sockets in a private temporary
directory, so nothing binds a network port; pass ``address="tcp://127.0.0.1:0"`` for TCP on a
free port.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import Any

from .._exports import publish
from ..wire.transport import DEFAULT_MAX_MESSAGE_SIZE
from .client import Client, fetch_status
from .dispatcher import DEFAULT_PREFETCH

__all__ = ["LocalCluster"]


def _format_resources(resources: dict[str, float]) -> str:
    # repr keeps every digit (":g" would turn 2**30 into 1.07374e+09).
    return ",".join(f"{name}={float(amount)!r}" for name, amount in resources.items())


class LocalCluster:
    """``with LocalCluster(workers=2, slots=1) as cluster: client = cluster.client()``."""

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
    ) -> None:
        self._direct = direct
        self._prefetch = prefetch
        self._client_timeout = client_timeout
        self._job_masters = job_masters
        self._tmpdir = tempfile.mkdtemp(prefix="pydispatch-cluster-")
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
        self.dispatcher: subprocess.Popen[str] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._clients: list[Client] = []

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
        try:
            self._start_dispatcher()
            for index in range(self._n_workers):
                self.start_worker(
                    name=f"worker-{index}",
                    slots=self._slots,
                    resources=self._resources,
                    labels=self._labels,
                )
            self.wait_for_workers(self._n_workers)
        except BaseException:
            self.close()
            raise

    def _start_dispatcher(self) -> None:
        command = [
            sys.executable, "-m", "pydispatch.cli", "dispatcher",
            "--bind", self._requested_address,
            "--heartbeat-interval", str(self._heartbeat_interval),
            "--heartbeat-timeout", str(self._heartbeat_timeout),
            "--max-message-size", str(self._max_message_size),
            "--prefetch", str(self._prefetch),
            "--exit-with-parent", str(os.getpid()),
            "--client-timeout", str(self._client_timeout),
            *([] if self._job_masters else ["--no-job-masters"]),
        ]  # fmt: skip
        self.dispatcher = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert self.dispatcher.stdout is not None
        # The first line names the bound endpoint (a tcp port chosen by the OS, if asked).
        line = self.dispatcher.stdout.readline()
        if not line:
            raise RuntimeError("the dispatcher exited during start-up")
        self.address = line.strip().rsplit(" ", 1)[-1]

    def restart_dispatcher(self) -> None:
        """End the dispatcher and start a new one on the same address (workers re-register;
        tasks held by the old one are lost to their clients)."""
        if self.dispatcher is not None:
            _end(self.dispatcher, signal.SIGKILL)
            if self.dispatcher.stdout is not None:
                self.dispatcher.stdout.close()
        if self.address.startswith("tcp://"):
            self._requested_address = self.address  # the same port again
        self._start_dispatcher()

    def start_worker(
        self,
        *,
        name: str,
        slots: int = 1,
        resources: dict[str, float] | None = None,
        labels: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start one more worker process (it registers by itself; see wait_for_workers)."""
        command = [
            sys.executable, "-m", "pydispatch.cli", "worker", self.address,
            "--slots", str(slots), "--name", name,
            "--drain-grace", str(self._drain_grace),
            "--max-message-size", str(self._max_message_size),
            "--exit-with-parent", str(os.getpid()),
        ]  # fmt: skip
        if not self._direct:
            command.append("--no-direct")
        if resources:
            command += ["--resources", _format_resources(resources)]
        for key, value in (labels or {}).items():
            command += ["--label", f"{key}={value}"]
        process = subprocess.Popen(command, start_new_session=True)
        self.workers.append(process)
        return process

    def wait_for_workers(self, count: int, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self._start_timeout)
        while True:
            failed = [w.pid for w in self.workers if w.poll() not in (None, 0)]
            if failed or (self.dispatcher is not None and self.dispatcher.poll() is not None):
                raise RuntimeError(f"a cluster process exited during start-up (pids {failed})")
            status = fetch_status(self.address, timeout=max(0.1, deadline - time.monotonic()))
            if sum(1 for w in status.workers if not w.draining) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} worker(s) did not register in time")
            time.sleep(0.02)

    def client(self, **options: Any) -> Client:
        client = Client(self.address, **options)
        self._clients.append(client)
        return client

    @property
    def worker_pids(self) -> list[int]:
        return [process.pid for process in self.workers]

    def close(self) -> None:
        for client in self._clients:
            client.terminate("the LocalCluster was closed")
        for process in self.workers:
            _end(process, signal.SIGINT)
        if self.dispatcher is not None:
            _end(self.dispatcher, signal.SIGTERM)
            if self.dispatcher.stdout is not None:
                self.dispatcher.stdout.close()
        shutil.rmtree(self._tmpdir, ignore_errors=True)


def _end(process: subprocess.Popen[Any], first: signal.Signals) -> None:
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
