"""Jobs hosted by the dispatcher, on real processes: a job outlives the process that submitted
it, its result is fetched later by id from another process, ``submit --detach`` and ``cancel``,
refusals (a job that can never fit, malformed submissions) reach the submitter, a killed job
master fails its job and frees its slots, and no job master outlives its dispatcher."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import cloudpickle
import msgspec
import pytest
import zmq

from _support.clusters import make_cluster
from _support.process_guard import eventually
from pydispatch.dataflow.handle import fetch_jobs
from pydispatch.errors import JobFailedError
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import JobHandle, StreamEnvironment
from pydispatch.wire import job_plane as jp
from pydispatch.wire import protocol as p
from pydispatch.wire import transport

cloudpickle.register_pickle_by_value(sys.modules[__name__])

TOTAL = 20_000


CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pydispatch.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def _job(address: str, job_id: str) -> p.JobInfo:
    (info,) = [j for j in fetch_jobs(address) if j.job_id == job_id]
    return info


def _processes() -> list[tuple[int, int, str, bytes]]:
    """Live processes: (pid, parent pid, name, command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        name, fields = stat.split("(", 1)[1].rsplit(")", 1)[0], stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            found.append((int(entry.name), int(fields[1]), name, command))
    return found


def _job_masters(dispatcher: int, launcher: bool = False) -> list[int]:
    """The job masters of the dispatcher with pid ``dispatcher`` (children of its launcher,
    named ``pydispatch-job``), and with ``launcher`` the launcher too."""
    every = _processes()
    launchers = {
        pid
        for pid, ppid, _, cmd in every
        if ppid == dispatcher and b"pydispatch.dataflow.master_process" in cmd
    }
    named = "pydispatch-job"
    masters = [pid for pid, ppid, name, _ in every if ppid in launchers and name == named]
    return masters + sorted(launchers) if launcher else masters


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _idle(cluster: LocalCluster) -> bool:
    probe = cluster.client()
    try:
        return probe.status().running == 0
    finally:
        probe.shutdown()


# -- a job outlives its submitter ----------------------------------------------------------

# A separate process submits a keyed sum, waits until records flow, and dies (or exits). The
# source holds its last record back until ``go`` exists, so the job is surely mid-way then.
DRIVER = """
import os, signal, sys, time
from pathlib import Path
from pydispatch.stream import StreamEnvironment

address, gate, how = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
TOTAL = {total}

def source(index=0, parallelism=1):
    for i in range(index, TOTAL, parallelism):
        if i == 1000 + index:
            (gate / f"flowing-{{index}}").write_text("")
        if i + parallelism >= TOTAL:
            while not (gate / "go").exists():
                time.sleep(0.01)
        yield i

env = StreamEnvironment(address, parallelism=2)
stream = env.from_source(source, parallel=True).map(lambda x: (x % 7, x)).key_by(0).sum(1)
stream._sink("Collect", {{"sink": "collect", "columnar": False}})
handle = env.execute("outlives")
print(handle.job_id, flush=True)
while len(list(gate.glob("flowing-*"))) < 2:
    time.sleep(0.01)
if how == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(0)
"""


def _expected() -> dict[int, int]:
    sums = dict.fromkeys(range(7), 0)
    for x in range(TOTAL):
        sums[x % 7] += x
    return sums


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_a_job_outlives_the_process_that_submitted_it(
    cluster: LocalCluster, tmp_path: Path, how: str
) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(total=TOTAL))
    done = subprocess.run(
        [sys.executable, str(driver), cluster.address, str(tmp_path), how],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == (-signal.SIGKILL if how == "kill" else 0), done.stderr
    job_id = done.stdout.split()[0]
    assert _job(cluster.address, job_id).state == "RUNNING"
    (tmp_path / "go").write_text("")
    if how == "kill":  # fetched by id from this process
        handle = JobHandle.attach(cluster.address, job_id)
        assert handle.name == "outlives"
        result = handle.result(timeout=60)
        ((_, got),) = result.collected.items()
        assert dict(got) == _expected()
        assert handle.status() == "FINISHED"
        assert handle.metrics()["restarts"] == 0
    else:  # fetched by id from the command line
        printed = _cli("result", cluster.address, job_id)
        assert printed.returncode == 0, printed.stderr
        records = [ast.literal_eval(line) for line in printed.stdout.splitlines()]
        assert dict(records) == _expected()
    listed = _cli("jobs", cluster.address, "--json")
    assert {j["job_id"]: j["state"] for j in json.loads(listed.stdout)}[job_id] == "FINISHED"
    # Fetched: the master process exits, and the dispatcher no longer lists an endpoint.
    eventually(lambda: not _job(cluster.address, job_id).endpoint, "the master exited")
    assert _job(cluster.address, job_id).state == "FINISHED"
    late = JobHandle.attach(cluster.address, job_id)
    assert late.status() == "FINISHED"
    # Its outcome outlives the master: the dispatcher keeps it (job store) until the job's
    # result retention has passed (runtime.durable_jobs).
    ((_, kept),) = late.result().collected.items()
    assert dict(kept) == _expected()


# -- the command line: detach, cancel, refusal ----------------------------------------------

FOREVER_JOB = """
import itertools
def build(env):
    env.from_source(itertools.count, bounded=False).rebalance().for_each(lambda x: None)
"""

TOO_BIG_JOB = """
def build(env):
    env.set_parallelism(9)
    return env.from_collection(range(10)).map(lambda x: x)
"""


def test_submit_detach_then_cancel_by_id(cluster: LocalCluster, tmp_path: Path) -> None:
    job = tmp_path / "forever.py"
    job.write_text(FOREVER_JOB)
    detached = _cli("submit", cluster.address, str(job), "--detach", "--parallelism", "2")
    assert detached.returncode == 0, detached.stderr
    job_id = detached.stdout.strip()
    assert job_id.startswith(str(job))
    assert _job(cluster.address, job_id).state == "RUNNING"
    listed = _cli("jobs", cluster.address)
    assert any(line.startswith(job_id) and "RUNNING" in line for line in listed.stdout.splitlines())
    cancelled = _cli("cancel", cluster.address, job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    # The dispatcher's listing follows the master's announcement, which may come just after
    # the master answered the cancel.
    eventually(lambda: _job(cluster.address, job_id).state == "CANCELED", "listed CANCELED")
    eventually(lambda: _idle(cluster), "the job's slots are free")
    outcome = _cli("result", cluster.address, job_id)
    assert outcome.returncode == 1
    assert "was cancelled" in outcome.stderr
    again = _cli("cancel", cluster.address, job_id)
    assert again.returncode == 1
    assert "had ended already" in again.stderr
    # Nothing to keep for a cancelled job: its master exits without waiting to be asked.
    eventually(lambda: not _job(cluster.address, job_id).endpoint, "the master exited")
    assert _job(cluster.address, job_id).state == "CANCELED"


def test_a_job_that_can_never_fit_is_refused_with_the_reason(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    job = tmp_path / "big.py"
    job.write_text(TOO_BIG_JOB)
    refused = _cli("submit", cluster.address, str(job))
    assert refused.returncode == 1
    assert "can never fit the cluster: the job needs 9 slots in all" in refused.stderr
    env = StreamEnvironment(cluster, parallelism=5)
    env.from_collection(range(10)).for_each(lambda x: None)
    with pytest.raises(ValueError, match="can never fit the cluster"):
        env.execute("too big")
    assert cluster.dispatcher is not None
    eventually(lambda: not _job_masters(cluster.dispatcher.pid), "refused jobs' masters exited")
    assert all(j.name != "too big" for j in fetch_jobs(cluster.address))


# -- malformed submissions --------------------------------------------------------------------


def _ask(address: str, parts: list[bytes]) -> p.Message:
    context: zmq.Context[Any] = zmq.Context()
    sock = transport.make_socket(context, zmq.DEALER)
    try:
        sock.connect(address)
        sock.send_multipart([b"", *parts])
        assert sock.poll(60_000), "no answer"
        _, body = transport.split_envelope(sock.recv_multipart(copy=False), routed=False)
        return transport.parse(body)[0]
    finally:
        sock.close()
        context.term()


def test_malformed_submissions_get_an_error_and_the_dispatcher_serves_on(
    cluster: LocalCluster,
) -> None:
    not_a_job: list[transport.FrameLike] = []
    wrong_object = transport.dumps(("not", "a", "job"), not_a_job, inline_limit=0)
    lying = p.Blob(0, (p.BufferMeta(1, 100, "B", (100,)),))
    cases: list[tuple[list[bytes], str, str]] = [
        # wrong types: a name that is an int, a blob that is a string
        ([msgspec.msgpack.encode(["SubmitJob", 42, 0, [0, [], b""]])], "protocol", "Expected"),
        ([msgspec.msgpack.encode(["SubmitJob", "x", 0, "blob"])], "protocol", "Expected"),
        # a blob pointing at frames that are not there, or of another size
        ([p.encode(p.SubmitJob("x", 0, p.Blob(3)))], "protocol", "refers to frame 3"),
        ([p.encode(p.SubmitJob("x", 0, lying)), b"?", b"short"], "protocol", "header says 100"),
        # a payload frame that is no pickle, and a pickle of something else
        ([p.encode(p.SubmitJob("x", 0, p.Blob(0))), b"\x00garbage"], "invalid", "could not load"),
        (
            [p.encode(p.SubmitJob("x", 0, wrong_object)), bytes(not_a_job[0])],
            "invalid",
            "not a pydispatch job",
        ),
        # a job master's messages with a token that is not theirs
        ([p.encode(p.JobPayloadRequest("x-1-abc", "guess"))], "protocol", "no job"),
        (
            [p.encode(p.JobHostReport("x-1-abc", "guess", "tcp://127.0.0.1:1"))],
            "protocol",
            "no job",
        ),
    ]
    for parts, code, text in cases:
        answer = _ask(cluster.address, parts)
        assert isinstance(answer, p.Error), answer
        assert answer.code == code, answer
        assert text in answer.message, answer
    # The dispatcher serves on; the refused jobs' masters are gone.
    env = StreamEnvironment(cluster, parallelism=2)
    assert sorted(env.from_collection(range(10)).map(lambda x: x * 3).collect()) == [
        x * 3 for x in range(10)
    ]
    assert cluster.dispatcher is not None
    eventually(lambda: not _job_masters(cluster.dispatcher.pid), "no job master left")


def test_garbage_on_a_hosted_masters_socket_leaves_the_job_exact(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    gate = tmp_path / "go"

    def source() -> Iterator[int]:
        yield from range(99)
        while not gate.exists():
            time.sleep(0.01)
        yield 99

    env = StreamEnvironment(cluster, parallelism=2)
    stream = env.from_source(source).rebalance().map(lambda x: x + 1)
    sink = stream._sink("Collect", {"sink": "collect", "columnar": False}).id
    handle = env.execute("hostile")
    assert isinstance(handle, JobHandle)
    context: zmq.Context[Any] = zmq.Context()
    sock = transport.make_socket(context, zmq.DEALER)
    try:
        sock.connect(handle.endpoint)
        for parts in (
            [b"no delimiter"],
            [b"", os.urandom(512)],
            [b"", p.encode(jp.JobStatusRequest()), b"an extra frame"],
            [b"", p.encode(p.SubmitJob("x", 0, p.Blob(-1)))],  # a dispatcher message
            [b"", p.encode(jp.JobResultReply("x", "x", "FINISHED", {}))],  # a reply
        ):
            sock.send_multipart(parts)
        # Absurd waits are bounded by the master; it still answers.
        transport.send(sock, jp.JobResultRequest(-5.0))
        transport.send(sock, jp.JobStatusRequest())
        assert sock.poll(10_000)
        _, body = transport.split_envelope(sock.recv_multipart(copy=False), routed=False)
        assert isinstance(transport.parse_job(body), jp.JobStatusReply)
    finally:
        sock.close()
        context.term()
    assert handle.status() == "RUNNING"
    gate.write_text("")
    assert sorted(handle.result(timeout=60).collected[sink]) == list(range(1, 101))
    assert handle.subtask_results[sink]
    assert handle.plan is not None
    assert handle.plan.n_slots == 2


# -- the master's lifetime ------------------------------------------------------------------


def test_an_unfetched_result_is_kept_for_its_retention_then_dropped(cluster: LocalCluster) -> None:
    env = StreamEnvironment(cluster.address)
    env.set_result_retention(0.5)
    env.from_elements([1, 2, 3]).map(lambda x: -x)._sink(
        "Collect", {"sink": "collect", "columnar": False}
    )
    handle = env.execute("retained")
    assert isinstance(handle, JobHandle)
    eventually(lambda: _job(cluster.address, handle.job_id).state == "FINISHED", "it finished")
    eventually(lambda: not _job(cluster.address, handle.job_id).endpoint, "the master exited")
    assert handle.status() == "FINISHED"

    def dropped() -> bool:  # (the dispatcher's kept copy expires with the same retention)
        attached = JobHandle.attach(cluster.address, handle.job_id)
        try:
            attached.result()
        except LookupError as error:
            return "kept past its retention" in str(error)
        return False

    eventually(dropped, "the outcome was dropped after its retention")


def test_a_killed_job_master_fails_its_job_and_frees_its_slots(cluster: LocalCluster) -> None:
    assert cluster.dispatcher is not None
    before = set(_job_masters(cluster.dispatcher.pid))  # an earlier job's may linger
    env = StreamEnvironment(cluster, parallelism=2)
    env.set_network(master_timeout=1.0)
    env.from_source(_count, bounded=False).rebalance().for_each(lambda x: None)
    handle = env.execute("orphan")
    assert isinstance(handle, JobHandle)
    eventually(lambda: handle.metrics()["records_in"].get(1, 0) > 0, "records flow")
    (master,) = set(_job_masters(cluster.dispatcher.pid)) - before
    os.kill(master, signal.SIGKILL)
    with pytest.raises(JobFailedError, match="master process has exited"):
        handle.result(timeout=60)
    assert handle.status() == "FAILED"
    assert _job(cluster.address, handle.job_id).state == "FAILED"
    eventually(lambda: _idle(cluster), "the orphaned slices ended")
    assert StreamEnvironment(cluster).from_elements([5]).map(lambda x: x).collect() == [5]


def test_a_killed_launcher_takes_its_masters_and_a_new_one_serves(cluster: LocalCluster) -> None:
    assert cluster.dispatcher is not None
    dispatcher = cluster.dispatcher.pid
    before = set(_job_masters(dispatcher, launcher=True))  # an earlier job's may linger
    env = StreamEnvironment(cluster, parallelism=2)
    env.set_network(master_timeout=1.0)
    env.from_source(_count, bounded=False).rebalance().for_each(lambda x: None)
    handle = env.execute("launcher killed")
    assert isinstance(handle, JobHandle)
    (master,) = set(_job_masters(dispatcher)) - before
    (launcher,) = before - set(_job_masters(dispatcher))
    os.kill(launcher, signal.SIGKILL)
    eventually(lambda: not _alive(master), "its job master exited")
    eventually(lambda: _job(cluster.address, handle.job_id).state == "FAILED", "marked FAILED")
    assert not _job(cluster.address, handle.job_id).endpoint
    eventually(lambda: _idle(cluster), "the orphaned slices ended")
    assert StreamEnvironment(cluster).from_elements([6]).map(lambda x: x).collect() == [6]
    assert launcher not in _job_masters(dispatcher, launcher=True)


def _count() -> Iterator[int]:
    i = 0
    while True:
        yield i
        i += 1


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_no_job_master_outlives_its_dispatcher(how: str) -> None:
    with make_cluster(1, 1) as cluster:
        env = StreamEnvironment(cluster)
        env.from_source(_count, bounded=False).for_each(lambda x: None)
        handle = env.execute("forever")
        assert isinstance(handle, JobHandle)
        assert cluster.dispatcher is not None
        assert len(_job_masters(cluster.dispatcher.pid)) == 1
        every = _job_masters(cluster.dispatcher.pid, launcher=True)
        assert len(every) == 2  # the job's master, and the launcher that forked it
        if how == "stop":
            cluster.dispatcher.send_signal(signal.SIGTERM)  # as LocalCluster.close does
        else:
            cluster.dispatcher.kill()
        cluster.dispatcher.wait(timeout=30)
        for pid in every:
            eventually(lambda pid=pid: not _alive(pid), "the job master and the launcher exited")


def test_cancel_through_the_handle_and_a_second_handle(cluster: LocalCluster) -> None:
    env = StreamEnvironment(cluster, parallelism=2)
    env.from_source(_count, bounded=False).rebalance().for_each(lambda x: None)
    handle = env.execute("two handles")
    assert isinstance(handle, JobHandle)
    other = JobHandle.attach(cluster, handle.job_id)
    assert other.status() == "RUNNING"
    assert other.plan is None
    assert other.cancel()
    assert handle.status() == "CANCELED"
    assert not handle.cancel()
    with pytest.raises(CancelledError):
        handle.result(timeout=30)
    with pytest.raises(CancelledError):
        other.result(timeout=30)
    eventually(lambda: _idle(cluster), "the slots are free")
