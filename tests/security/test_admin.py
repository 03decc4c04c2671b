"""An administrator's powers over a cluster with keys, as the command line uses them: drain a
worker, cancel another key's tasks, see the whole status; a client key can do none of it and
sees no worker's pid or endpoint. Real processes (``pydispatch dispatcher|worker --keys``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest

from _support.process_guard import eventually
from _support.secure_cluster import SecureCluster
from pydispatch import Client
from pydispatch.runtime.client import admin_request, fetch_status
from pydispatch.wire import protocol as p


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    with SecureCluster(tmp_path_factory.mktemp("admin")) as cluster:
        yield cluster


def square(x: int) -> int:
    return x * x


def wait_for_file(path: str, value: Any) -> Any:
    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def cli(secure: SecureCluster, identity: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pydispatch.cli", *args]
    command += ["--keys", str(secure.keys), "--identity", identity]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert result.stderr.strip().count("\n") == 0, result.stderr
    return result.stderr


def test_a_client_sees_the_status_without_pids_or_endpoints(secure: SecureCluster) -> None:
    admin = fetch_status(secure.address, 5.0, secure.key("admin"))
    alice = fetch_status(secure.address, 5.0, secure.key("alice"))
    assert sorted(w.name for w in alice.workers) == sorted(w.name for w in admin.workers)
    assert all(w.pid > 0 for w in admin.workers)
    assert all(w.pid == 0 and w.data_address == "" for w in alice.workers)
    assert [w.slots for w in alice.workers] == [w.slots for w in admin.workers]


def test_only_an_admin_cancels_another_keys_tasks(secure: SecureCluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with Client(secure.address, keys=str(secure.keys), identity="bob") as bob:
        held = [bob.submit(wait_for_file, str(gate), i) for i in range(6)]
        eventually(lambda: sum(f.running() for f in held) == 2, "two of bob's tasks run")
        # Neither another client nor a worker key may cancel them, nor drain anything.
        for who in ("alice", "worker"):
            refused = one_line(cli(secure, who, "cancel", secure.address, "--tasks-of", "bob"))
            assert f"a {secure.key(who).role} key may not send CancelTasksOf" in refused
        refused = one_line(cli(secure, "bob", "drain", secure.address, "worker-0"))
        assert "a client key may not send DrainWorker" in refused
        assert not any(f.done() for f in held)
        # The admin cancels two queued ones by id, then the rest, running ones killed.
        queued = [f for f in held if not f.running()][:2]
        ids = [str(f.task_id) for f in queued]
        some = cli(secure, "admin", "cancel", secure.address, "--tasks-of", "bob", "--task",
                   ids[0], "--task", ids[1])  # fmt: skip
        assert some.returncode == 0, some.stderr
        assert "2 task(s) of key 'bob' cancelled" in some.stdout
        for future in queued:
            with pytest.raises(CancelledError):
                future.result(timeout=30)
        assert sum(f.done() for f in held) == 2
        rest = cli(secure, "admin", "cancel", secure.address, "--tasks-of", "bob", "--force")
        assert rest.returncode == 0, rest.stderr
        assert "4 task(s) of key 'bob' cancelled" in rest.stdout
        for future in held:
            with pytest.raises(CancelledError):
                future.result(timeout=30)
        # Bob's connection still works, and so does everyone else's.
        assert bob.submit(square, 5).result(timeout=30) == 25
    with Client(secure.address, keys=str(secure.keys), identity="alice") as alice:
        assert list(alice.map(square, range(50))) == [x * x for x in range(50)]
    nobody = one_line(cli(secure, "admin", "cancel", secure.address, "--tasks-of", "carol"))
    assert "no client with key 'carol' is connected" in nobody


def test_an_admin_drains_a_worker_and_it_exits(secure: SecureCluster) -> None:
    admin = secure.key("admin")
    unknown = one_line(cli(secure, "admin", "drain", secure.address, "worker-9"))
    assert "no worker named 'worker-9'" in unknown
    drained = cli(secure, "admin", "drain", secure.address, "worker-1")
    assert drained.returncode == 0, drained.stderr
    assert "worker worker-1 is draining" in drained.stdout
    eventually(
        lambda: [w.name for w in fetch_status(secure.address, 5.0, admin).workers] == ["worker-0"],
        "the drained worker is released",
    )
    worker_1 = secure.processes[2]  # dispatcher, worker-0, worker-1
    assert worker_1.wait(timeout=30) == 0
    assert "removed: drained" in secure.log("dispatcher")
    with Client(secure.address, keys=str(secure.keys), identity="alice") as alice:
        assert alice.submit(square, 9).result(timeout=30) == 81
    # The protocol itself, for programs: a worker key's request is refused with an Error.
    with pytest.raises(PermissionError, match="a worker key may not send DrainWorker"):
        admin_request(secure.address, p.DrainWorker("worker-0"), 5.0, secure.key("worker"))
    assert not fetch_status(secure.address, 5.0, admin).workers[0].draining
