"""Standby dispatchers on a real PostgreSQL server, with real processes: two dispatchers share
one database and one address on this host; the leader is killed (SIGKILL) during a map and a
keyed job, the standby takes the lead and binds the address, and both complete; the old
leader started again is a standby naming the new leader."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _support.postgres import throwaway_postgres
from _support.process_guard import eventually
from pydispatch.runtime.client import Client
from pydispatch.stream import StreamEnvironment


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


class _Process:
    """A process in a session of its own (ended with its group), its stdout read by a thread."""

    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "pydispatch.cli", *args]
        self.popen = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.strip())

    def line(self, timeout: float = 60) -> str:
        return self.lines.get(timeout=timeout)

    def end(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        # What it started in its group (a killed dispatcher's job launcher).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def slow_square(x: int) -> int:
    time.sleep(0.0005)
    return x * x


def slow_pair(x: int) -> tuple[int, int]:
    time.sleep(0.002)
    return (x % 5, x)


def _keyed_job(env: StreamEnvironment, out: Path) -> None:
    env.set_network(master_timeout=2.0)
    stream = env.from_collection(range(2_000)).map(slow_pair).key_by(lambda kv: kv[0])
    stream.reduce(lambda a, b: (a[0], a[1] + b[1])).write_text(str(out) + "/")


def _lines(directory: Path) -> list[str]:
    return sorted(line for f in directory.iterdir() for line in f.read_text().splitlines())


@pytest.mark.slow
def test_the_standby_takes_over_a_map_and_a_job_when_the_leader_is_killed(
    dsn: str, tmp_path: Path
) -> None:
    reference = StreamEnvironment(parallelism=2)
    _keyed_job(reference, tmp_path / "reference")
    reference.execute("reference")

    address = f"tcp://127.0.0.1:{_free_port()}"
    timing = ["--heartbeat-interval", "0.2", "--heartbeat-timeout", "2"]
    started: list[_Process] = []
    try:
        leader = _Process("dispatcher", "--bind", address, "--ha", dsn, *timing)
        started.append(leader)
        assert leader.line() == f"pydispatch dispatcher listening on {address}"
        standby = _Process("dispatcher", "--bind", address, "--ha", dsn, *timing)
        started.append(standby)
        assert standby.line() == f"pydispatch dispatcher standby: the leader is at {address}"
        for _ in range(2):
            started.append(_Process("worker", address, "--slots", "2"))
        client = Client(address, reconnect_timeout=60)
        eventually(lambda: len(client.status().workers) == 2, "both workers registered")

        results = client.map(slow_square, range(4_000), chunksize=40)
        got = [next(results) for _ in range(500)]
        # (Map chunks are prefetched behind running slices: the job goes second.)
        env = StreamEnvironment(address, parallelism=2)
        _keyed_job(env, tmp_path / "ha")
        handle = env.execute("ha-job")
        eventually(lambda: handle.status() == "RUNNING", "the job runs")
        os.kill(leader.popen.pid, signal.SIGKILL)  # the leader only, in the middle of both
        killed = time.monotonic()
        got += list(results)
        assert standby.line() == f"pydispatch dispatcher listening on {address}"
        assert got == [x * x for x in range(4_000)]
        handle.result(timeout=120)
        print(f"\nmap and job done {time.monotonic() - killed:.1f} s after the kill")
        assert _lines(tmp_path / "ha") == _lines(tmp_path / "reference")

        leader.end()
        again = _Process("dispatcher", "--bind", address, "--ha", dsn, *timing)
        started.append(again)
        assert again.line() == f"pydispatch dispatcher standby: the leader is at {address}"
        assert client.submit(slow_square, 7).result(timeout=30) == 49
        client.shutdown()
    finally:
        for process in reversed(started):
            process.end()
