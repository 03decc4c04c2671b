"""A cluster with keys as an operator runs it: ``pydispatch dispatcher --keys`` and ``pydispatch
worker --keys`` processes on loopback TCP, each with its log in a file the tests read (how many
times a refusal was logged), ended by pid (their process groups).

Keys: ``dispatcher`` and ``admin`` (``keys init``), ``worker``, two clients ``alice`` and ``bob``;
and a stranger's key pair that the cluster does not know.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from _support.process_guard import eventually
from pydispatch.runtime.client import fetch_status
from pydispatch.wire import protocol as p
from pydispatch.wire.security import Keys, add_key, connect_curve, create_keys, load_keys
from pydispatch.wire.transport import make_socket, send

__all__ = ["Marker", "SecureCluster", "listening_ports", "marker_blob", "raw_socket"]


class Marker:
    """Unpickled, it creates the file at ``path`` (harmless: an empty file), and nothing else."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def marker_blob(path: Path) -> p.Blob:
    """A blob whose unpickling writes ``path``."""
    return p.Blob(p.INLINE, (), pickle.dumps(Marker(str(path))))


@dataclass
class SecureCluster:
    root: Path
    workers: int = 2
    keys: Path = field(init=False)
    address: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stranger: Keys = field(init=False)

    def __post_init__(self) -> None:
        self.keys = self.root / "keys"
        create_keys(str(self.keys))
        for name, role in (("worker", "worker"), ("alice", "client"), ("bob", "client")):
            add_key(str(self.keys), name, role)
        public, secret = zmq.curve_keypair()
        server = self.key("admin").server
        self.stranger = Keys("stranger", "client", public.decode(), secret.decode(), server)

    def key(self, name: str) -> Keys:
        return load_keys(str(self.keys), name)

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def _start(self, name: str, *args: str, stdout: int | None = None) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - the process holds it
        command = [sys.executable, "-m", "pydispatch.cli", *args, "--keys", str(self.keys)]
        process = subprocess.Popen(
            command, stdout=stdout, stderr=log, start_new_session=True, stdin=subprocess.DEVNULL
        )
        log.close()
        self.processes.append(process)
        return process

    def __enter__(self) -> SecureCluster:
        try:
            dispatcher = self._start(
                "dispatcher",
                "dispatcher",
                "--bind",
                "tcp://127.0.0.1:0",
                "--heartbeat-interval",
                "0.2",
                "--heartbeat-timeout",
                "3",
                stdout=subprocess.PIPE,
            )
            assert dispatcher.stdout is not None
            line = dispatcher.stdout.readline().decode()
            assert "listening on" in line, self.log("dispatcher")
            self.address = line.split()[-1]
            for index in range(self.workers):
                self._start(
                    f"worker-{index}",
                    "worker",
                    self.address,
                    "--identity",
                    "worker",
                    "--name",
                    f"worker-{index}",
                )
            admin = self.key("admin")
            eventually(
                lambda: len(fetch_status(self.address, 5.0, admin).workers) == self.workers,
                "the workers registered",
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
        self.processes.clear()

    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]


def raw_socket(
    context: zmq.Context[Any], address: str, keys: Keys | None, server: str | None = None
) -> zmq.Socket[Any]:
    """A stranger's DEALER: plain (``keys`` None) or CURVE with ``keys``."""
    sock = make_socket(context, zmq.DEALER)
    if keys is not None:
        connect_curve(sock, keys.public, keys.secret, server or keys.server)
    sock.connect(address)
    return sock


def send_all(sock: zmq.Socket[Any], messages: list[p.Message]) -> None:
    for message in messages:
        send(sock, message, noblock=True)


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (from /proc: its socket inodes, then
    /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    with open(f"/proc/{pid}/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
