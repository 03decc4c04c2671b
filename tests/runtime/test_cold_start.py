"""What a cluster's start costs, structurally (the figures are in bench/bench_cold_start.py):
a worker's first slots are forked from it rather than started as fresh interpreters, a forked
slot holds none of its worker's sockets, replacements and a worker inside a program with
threads of its own start interpreters, and the modules a dispatcher, a worker and a slot load
stay free of the heavy ones (numpy, asyncio, OR-Tools, the HTTP server...) until something
needs them. Real processes throughout; what they loaded is read from /proc (their mapped
extension modules) or asked of the slot itself."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _support.clusters import make_cluster
from _support.process_guard import children, eventually
from pydispatch.runtime.worker import Worker, WorkerOptions


def _command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def _mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _slot_report() -> tuple[int, int, list[str]]:
    import os
    import sys

    return os.getpid(), os.getppid(), sorted(sys.modules)


def _touch_then_sleep(path: str, seconds: float) -> None:
    Path(path).touch()
    time.sleep(seconds)


def test_slots_are_forked_from_their_worker_and_hold_none_of_its_sockets(tmp_path: Path) -> None:
    with make_cluster(workers=1, slots=2) as cluster:
        client = cluster.client()
        worker = cluster.worker_pids[0]
        eventually(lambda: len(children(worker)) == 2, "both slots started")
        slots = children(worker)
        for slot in slots:
            # Forked: the worker's command line, not `python -m pydispatch.runtime.slot`.
            assert _command_line(slot) == _command_line(worker)
            # The worker's sockets were closed in the child (else the dispatcher would see the
            # worker's connections open until its slots noticed its death).
            assert not _socket_inodes(slot) & _socket_inodes(worker)
        pid, parent, modules = client.submit(_slot_report).result(timeout=60)
        assert pid in slots
        assert parent == worker
        # Nothing heavy came with the fork: the worker's import path stays light.
        assert {"numpy", "asyncio", "sqlite3", "ortools"}.isdisjoint(modules)
        # A slot replaced after a force-cancel (the heartbeat thread runs by then) is a fresh
        # interpreter, and the cluster goes on. (Waiting for the task itself to say it runs:
        # a future sent on the direct lane is RUNNING as it leaves, and a kill that reaches the
        # slot first only skips it, with no slot to replace.)
        started = tmp_path / "started"
        blocker = client.submit(_touch_then_sleep, str(started), 60)
        eventually(started.exists, "the blocking task runs in its slot")
        assert client.cancel(blocker, force=True)
        eventually(lambda: len(set(children(worker)) - set(slots)) == 1, "a slot replaced")
        (fresh,) = set(children(worker)) - set(slots)
        assert _command_line(fresh)[1:3] == ["-m", "pydispatch.runtime.slot"]
        assert client.submit(_slot_report).result(timeout=60)[1] == worker


def test_a_worker_inside_a_program_with_threads_of_its_own_starts_interpreters() -> None:
    with make_cluster(workers=0) as cluster:
        worker = Worker(cluster.address, WorkerOptions(slots=1, name="in-a-thread"))
        runner = threading.Thread(target=worker.run, daemon=True)
        runner.start()
        try:
            cluster.wait_for_workers(1)
            client = cluster.client()
            pid, parent, _ = client.submit(_slot_report).result(timeout=60)
            assert parent == os.getpid()
            assert _command_line(pid)[1:3] == ["-m", "pydispatch.runtime.slot"]
        finally:
            worker.request_stop()
            runner.join(timeout=30)
        assert not runner.is_alive()


# Extension modules that would tell a heavy import: numpy, asyncio, OR-Tools, PostgreSQL's
# driver, the HTTP server's SSL, ...; none of these processes needs them to start.
_HEAVY = ["_multiarray_umath", "_asyncio", "ortools", "psycopg", "_ssl"]


@pytest.mark.parametrize("what", ["dispatcher", "worker"])
def test_the_processes_of_a_cluster_load_nothing_heavy_to_start(what: str) -> None:
    with make_cluster(workers=1, slots=1) as cluster:
        cluster.client().submit(abs, -1).result(timeout=60)
        assert cluster.dispatcher is not None
        pids = [cluster.dispatcher.pid] if what == "dispatcher" else cluster.worker_pids
        if what == "worker":
            pids += children(cluster.worker_pids[0])  # its slot, which ran a task
        for pid in pids:
            maps = _mapped_libraries(pid)
            loaded = [name for name in _HEAVY if name in maps]
            assert not loaded, f"{what} process {pid} loaded {loaded}"


def test_the_modules_the_processes_import_stay_light() -> None:
    # The same in a fresh interpreter, by module name (a guard for what /proc cannot tell:
    # pure-Python modules such as asyncio's or http.server's).
    code = (
        "import sys\n"
        "import pydispatch.runtime.dispatcher, pydispatch.runtime.worker\n"
        "heavy = {'numpy', 'asyncio', 'http.server', 'ortools', 'psycopg', 'prometheus_client',"
        " 'pydispatch.dataflow', 'pydispatch.stream', 'pydispatch.solver'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
