"""A test bed of hosts in network namespaces: each host a namespace with its own host name (a
UTS namespace), all joined by a bridge that lives in a namespace of its own.

Nothing touches the machine's own interfaces: every veth pair is made inside the bridge's
namespace with its peer moved straight into the host's, and the private 10.x addresses exist
only inside those namespaces. :meth:`TestBed.close` kills every process started in the bed
(by pid, then whatever is left in each namespace) and deletes every namespace, which takes
their links with them; it runs however the tests ended.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Host", "TestBed", "have_netns"]

_SUBNET = "10.77.0"
_BEDS = itertools.count()  # two beds of one process have namespaces of their own


def have_netns() -> bool:
    """Whether this process may make network namespaces (root, with ``ip`` and ``unshare``)."""
    if os.geteuid() != 0:
        return False
    return all(
        subprocess.run(["which", tool], capture_output=True).returncode == 0
        for tool in ("ip", "unshare")
    )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Host:
    namespace: str
    hostname: str
    address: str


@dataclass
class TestBed:
    """``TestBed(["dispatcher", "w1", ...])``: one host per name, addresses 10.77.0.1, .2, ..."""

    names: list[str]
    #: Host names that differ from the host's (bed) name: two hosts may share one.
    hostnames: dict[str, str] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"pd{os.getpid() % 100000}-{next(_BEDS)}")
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    #: A keys directory (``pydispatch keys``) the cluster on the bed runs with ("": none).
    keys: str = ""
    _namespaces: list[str] = field(default_factory=list)

    __test__ = False  # not a pytest test class

    def start(self) -> TestBed:
        bridge = f"{self.prefix}-br"
        self._add_namespace(bridge)
        _ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge, "link", "set", "br0", "up")
        for number, name in enumerate(self.names, start=1):
            namespace = f"{self.prefix}-{name}"
            self._add_namespace(namespace)
            port = f"port{number}"
            _ip(
                "-n",
                bridge,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "eth0",
                "netns",
                namespace,
            )
            _ip("-n", bridge, "link", "set", port, "master", "br0", "up")
            address = f"{_SUBNET}.{number}"
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            self.hosts[name] = Host(namespace, self.hostnames.get(name, name), address)
        return self

    def _add_namespace(self, namespace: str) -> None:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)  # a leftover
        _ip("netns", "add", namespace)
        self._namespaces.append(namespace)

    def command(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run on ``host``: in its network namespace, under its own host name."""
        where = self.hosts[host]
        script = f'hostname {where.hostname} && exec "$@"'
        return [
            "ip", "netns", "exec", where.namespace,
            "unshare", "--uts", "sh", "-c", script, "sh", *argv,
        ]  # fmt: skip

    def spawn(
        self, host: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """A long-running process on ``host`` (``ip``, ``unshare`` and ``sh`` all exec into
        ``argv``: its pid is the process's own); in a session of its own, to end its group."""
        process = subprocess.Popen(
            self.command(host, argv),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        self.processes.append(process)
        return process

    def python_started(
        self, host: str, code: str, env: dict[str, str] | None = None, args: Sequence[str] = ()
    ) -> subprocess.Popen[str]:
        """``code`` in a Python process on ``host`` left running (``args``: its ``sys.argv[1:]``):
        read its stdout as it goes."""
        process = subprocess.Popen(
            self.command(host, [sys.executable, "-c", code, *args]),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.processes.append(process)
        return process

    def link(self, host: str, up: bool) -> None:
        """Cut ``host`` off the bridge (its port down: packets vanish, no connection is told)
        or heal it."""
        port = f"port{self.names.index(host) + 1}"
        _ip("-n", f"{self.prefix}-br", "link", "set", port, "up" if up else "down")

    def python(
        self,
        host: str,
        code: str,
        timeout: float = 120.0,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> object:
        """Run ``code`` in a new Python process on ``host`` (``args``: its ``sys.argv[1:]``);
        what it printed last, as JSON."""
        done = subprocess.run(
            self.command(host, [sys.executable, "-c", code, *args]),
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        if done.returncode != 0:
            raise AssertionError(
                f"python on {host} exited {done.returncode}:\n{done.stderr[-4000:]}"
            )
        return json.loads(done.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        # SIGINT, not SIGTERM: a worker stops at once rather than drain, which waits for a
        # dispatcher ending at the same moment to release it (15 s, then SIGKILL, per bed).
        for process in self.processes:
            _signal_group(process.pid, signal.SIGINT)
        deadline = time.monotonic() + 15.0
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(10)
        for namespace in self._namespaces:  # anything still running in a host: gone
            pids = subprocess.run(
                ["ip", "netns", "pids", namespace], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        for namespace in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self._namespaces.clear()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
