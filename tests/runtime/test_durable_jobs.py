"""Durable dataflow jobs, with real processes and a real SQLite file: the dispatcher killed
(SIGKILL) in the middle of keyed jobs and started again on its address restarts their masters
from its job store; both jobs (one submitted with execute(), one with ``pydispatch submit
--detach``) complete with the reference's output, and ``pydispatch jobs`` lists them."""

from __future__ import annotations

import itertools
import json
import runpy
import subprocess
import sys
import time
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from _support.clusters import make_cluster
from _support.process_guard import eventually
from pydispatch.dataflow.handle import JobHandle, fetch_jobs
from pydispatch.stream import StreamEnvironment

# A keyed job that runs until the test opens its gate (a file), so that both jobs are
# running when the dispatcher is killed, whatever the machine's speed. Its slices end
# themselves 3 s after their master's connection dropped (the default master_timeout, 60 s,
# is for a master that is alive but silent), freeing their slots for the job's new master.
JOB = """
import os
import time

def slow(x):
    while not os.path.exists({gate!r}):
        time.sleep(0.01)
    return (x % 7, x)

def build(env):
    stream = env.from_collection(range(1_500)).map(slow).key_by(lambda kv: kv[0])
    stream.reduce(lambda a, b: (a[0], a[1] + b[1])).write_text({out!r})
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pydispatch.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _lines(directory: Path) -> list[str]:
    return sorted(line for f in directory.iterdir() for line in f.read_text().splitlines())


def _job_file(tmp_path: Path, name: str, gate: Path) -> tuple[Path, Path]:
    out = tmp_path / f"{name}-out"
    path = tmp_path / f"{name}.py"
    path.write_text(JOB.format(out=str(out) + "/", gate=str(gate)))
    return path, out


def _build(path: Path, env: StreamEnvironment) -> None:
    namespace: dict[str, Any] = runpy.run_path(str(path), run_name="pydispatch_job")
    namespace["build"](env)


@pytest.mark.slow
def test_kill_9_in_the_middle_of_two_keyed_jobs_both_complete_after_the_restart(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    open_gate = tmp_path / "open"
    open_gate.touch()
    reference_job, reference_out = _job_file(tmp_path, "reference", open_gate)
    reference = StreamEnvironment(parallelism=2)
    _build(reference_job, reference)
    reference.execute("reference")
    expected = _lines(reference_out)
    assert len(expected) == 7  # batch mode: one sum per key

    attached_job, attached_out = _job_file(tmp_path, "attached", gate)
    detached_job, detached_out = _job_file(tmp_path, "detached", gate)
    with make_cluster(2, 2) as cluster:
        env = StreamEnvironment(cluster, parallelism=2)
        _build(attached_job, env)
        handle = env.execute("attached")
        submitted = _cli(
            "submit", cluster.address, str(detached_job), "--detach", "--name", "detached",
            "--parallelism", "2",
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        detached_id = submitted.stdout.strip()

        def both_running() -> bool:
            states = {j.name: j.state for j in fetch_jobs(cluster.address)}
            return states == {"attached": "RUNNING", "detached": "RUNNING"}

        eventually(both_running, "both jobs running", timeout=60)
        # A handle already waiting for the result when the dispatcher dies: the old master,
        # ended by its launcher, must not answer it FAILED (the job is handed over).
        with ThreadPoolExecutor(1) as waiter:
            waiting = waiter.submit(handle.result, 120)
            time.sleep(0.5)  # its request is held by the master
            dispatcher = cluster.dispatcher
            assert dispatcher is not None
            killed = time.monotonic()
            dispatcher.kill()
            dispatcher.wait()
            time.sleep(1.0)  # the old launcher ends its masters (it polls every 0.2 s)
            assert not waiting.done()
            cluster.restart_dispatcher()  # a new one on the same address and store
            result = _follow(cluster, handle, detached_id, gate, waiting)
        assert handle.status() == "FINISHED"
        assert result.records_out  # figures of the run that finished

        def detached_finished() -> bool:
            return any(
                j.job_id == detached_id and j.state == "FINISHED"
                for j in fetch_jobs(cluster.address)
            )

        eventually(detached_finished, "the detached job finished", timeout=120)
        print(f"\nboth jobs finished {time.monotonic() - killed:.1f} s after the kill")
        jobs = _cli("jobs", cluster.address, "--json")
        assert jobs.returncode == 0, jobs.stderr
        states = {j["job_id"]: j["state"] for j in json.loads(jobs.stdout)}
        assert states == {handle.job_id: "FINISHED", detached_id: "FINISHED"}
    assert _lines(attached_out) == expected
    assert _lines(detached_out) == expected


def _follow(
    cluster: Any, handle: JobHandle, detached_id: str, gate: Path, waiting: Future[Any]
) -> Any:
    # Listed at once, from the store (their masters are being started again).
    listed = {j.job_id: j.state for j in fetch_jobs(cluster.address)}
    assert listed[handle.job_id] in ("RESTARTING", "CREATED", "RUNNING")
    assert listed[detached_id] in ("RESTARTING", "CREATED", "RUNNING")
    gate.touch()  # the restarted runs may finish
    return waiting.result(timeout=130)  # the handle followed the job's new master


@pytest.mark.slow
def test_a_dispatcher_down_longer_than_reconnect_timeout_is_a_clear_error() -> None:
    # Nothing hangs: the client's futures and the job's handle both give up, naming why.
    with make_cluster(1, 2) as cluster:
        client = cluster.client(reconnect_timeout=2.0)
        waiting = client.submit(time.sleep, 60)
        env = StreamEnvironment(cluster, parallelism=1)
        env.from_source(itertools.count, bounded=False).for_each(lambda x: None)
        handle = env.execute("forever")
        handle.reconnect_timeout = 2.0
        eventually(waiting.running, "the task started")
        dispatcher = cluster.dispatcher
        assert dispatcher is not None
        dispatcher.kill()  # and no dispatcher comes back
        dispatcher.wait()
        with pytest.raises(ConnectionError, match=r"reconnect_timeout=2 s"):
            waiting.result(timeout=60)
        with pytest.raises(ConnectionError, match=r"neither its master nor the dispatcher"):
            handle.result(timeout=60)


# Collects its records once its gate (a file) is open: see JOB.
COLLECTING_JOB = """
import os
import time

def slow(x):
    while not os.path.exists({gate!r}):
        time.sleep(0.01)
    return (x % 3, x)

def build(env):
    env.set_network(master_timeout=2.0)
    return env.from_collection(range(1_000)).map(slow).key_by(lambda kv: kv[0]).sum(1)
"""

FOREVER_JOB = """
import itertools

def build(env):
    env.set_network(master_timeout=2.0)
    env.from_source(itertools.count, bounded=False).for_each(lambda x: None)
"""


@pytest.mark.slow
def test_result_attach_and_cancel_work_across_the_restart(tmp_path: Path) -> None:
    collecting, forever = tmp_path / "collecting.py", tmp_path / "forever.py"
    gate = tmp_path / "gate"
    reference = tmp_path / "reference.py"
    reference.write_text(COLLECTING_JOB.format(gate=str(tmp_path)))  # an open gate
    collecting.write_text(COLLECTING_JOB.format(gate=str(gate)))
    forever.write_text(FOREVER_JOB)
    expected = sorted(_reference_records(reference))  # the job run in process
    with make_cluster(2, 2) as cluster:
        ids = []
        for path, name in ((collecting, "collecting"), (forever, "forever")):
            done = _cli("submit", cluster.address, str(path), "--detach", "--name", name)
            assert done.returncode == 0, done.stderr
            ids.append(done.stdout.strip())
        eventually(
            lambda: {j.state for j in fetch_jobs(cluster.address)} == {"RUNNING"},
            "both jobs running",
            timeout=60,
        )
        cluster.restart_dispatcher()
        gate.touch()  # the collecting job's restarted run may finish
        attached = JobHandle.attach(cluster, "forever")  # by name, from the store's listing
        assert attached.job_id == ids[1]
        eventually(lambda: attached.status() == "RUNNING", "the job runs again", timeout=60)
        result = _cli("result", cluster.address, ids[0])
        assert result.returncode == 0, result.stderr
        assert sorted(result.stdout.splitlines()) == expected
        cancelled = _cli("cancel", cluster.address, "forever")
        assert cancelled.returncode == 0, cancelled.stderr
        with pytest.raises(CancelledError):
            attached.result(timeout=60)
        states = {j.job_id: j.state for j in fetch_jobs(cluster.address)}
        assert states == {ids[0]: "FINISHED", ids[1]: "CANCELED"}


def _reference_records(path: Path) -> list[str]:
    env = StreamEnvironment(parallelism=2)
    namespace: dict[str, Any] = runpy.run_path(str(path), run_name="pydispatch_job")
    return [str(record) for record in namespace["build"](env).collect()]


@pytest.mark.slow
def test_a_finished_outcome_is_fetchable_after_the_restart_until_its_retention(
    tmp_path: Path,
) -> None:
    # Finished, not fetched, then the dispatcher dies (and the master with it): the outcome
    # was kept in the store, and `pydispatch result` gets it from there until its retention.
    collecting = tmp_path / "collecting.py"
    collecting.write_text(COLLECTING_JOB.format(gate=str(tmp_path)))  # an open gate
    expected = sorted(_reference_records(collecting))
    with make_cluster(1, 2) as cluster:
        ids = {}
        for name, retention in (("kept", "600"), ("short", "2")):
            done = _cli(
                "submit", cluster.address, str(collecting), "--detach", "--name", name,
                "--retention", retention,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            ids[name] = done.stdout.strip()
        eventually(
            lambda: [j.state for j in fetch_jobs(cluster.address)] == ["FINISHED"] * 2,
            "both jobs finished",
            timeout=60,
        )
        cluster.restart_dispatcher()
        result = _cli("result", cluster.address, ids["kept"])
        assert result.returncode == 0, result.stderr
        assert sorted(result.stdout.splitlines()) == expected
        handle = JobHandle.attach(cluster, "kept")  # a handle gets it too
        assert sorted(str(r) for rs in handle.collected.values() for r in rs) == expected

        def expired() -> bool:
            gone = _cli("result", cluster.address, ids["short"])
            return gone.returncode == 1 and "kept past its retention" in gone.stderr

        eventually(expired, "the short retention passed", timeout=60)
