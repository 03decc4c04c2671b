"""``collect()`` around the job master on one host (issue 18): the slices of a job submitted to
an ``ipc://`` dispatcher write their collected records to files in the job's private
directory in ``/dev/shm`` (``dataflow.slice_results.MappedCollected``); the master and the
dispatcher pass on only the files' description, the handle maps them. The directory lives as
long as the outcome is kept (``runtime.spilled_outcomes``), and goes with the cluster.

Real processes throughout (LocalCluster, its dispatcher's SQLite job store, job masters in
their own processes)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from _support.clusters import job_masters_of, make_cluster
from _support.collected import collect_sink as _sink
from _support.collected import sorted_rows as _rows
from _support.process_guard import eventually
from pydispatch.dataflow.handle import JobHandle, submit_job
from pydispatch.dataflow.job_run import JobOptions
from pydispatch.dataflow.local import run_local
from pydispatch.dataflow.slice_results import (
    SPILL_COLLECTED_BYTES,
    MappedCollected,
    PickledCollected,
)
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import DataStream, FixedDelay, StreamEnvironment
from pydispatch.wire import job_plane as jp
from pydispatch.wire import protocol as p
from pydispatch.wire import transport
from pydispatch.wire.shm_files import COLLECT_TAG, SPILL_PREFIX, shared_dir, spill_prefix

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.skipif(shared_dir() is None, reason="needs /dev/shm (Linux)")

CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}

N = 100_000  # records: each slice's part is well above SPILL_COLLECTED_BYTES


def _map(env: StreamEnvironment) -> DataStream:
    return env.from_collection(list(range(N))).map(lambda x: (x % 11, x * 2, f"r{x}"))


def _columns(env: StreamEnvironment) -> DataStream:
    columns = {"k": np.arange(800_000) % 200_000, "v": np.arange(800_000, dtype=np.float64)}
    return env.from_arrays(columns).key_by("k").sum("v")


def _kept_outcome(address: str, job_id: str) -> tuple[jp.JobResultReply, int] | None:
    """The outcome the dispatcher keeps for the job (as its master handed it over) and the
    bytes of its frames; None while there is none."""
    answer, frames = transport.ask(address, p.JobOutcomeRequest(job_id))
    if not isinstance(answer, p.JobOutcomeReply) or not answer.reply:
        return None
    reply = jp.decode_job(answer.reply)
    assert isinstance(reply, jp.JobResultReply)
    return reply, sum(len(f) for f in frames)


def _kept_soon(address: str, job_id: str, timeout: float = 60) -> tuple[jp.JobResultReply, int]:
    """The kept outcome, once the master has handed it over (it may answer the job's handle
    first: ``result()`` returns before the dispatcher has it)."""
    eventually(lambda: _kept_outcome(address, job_id) is not None, "the outcome kept", timeout)
    kept = _kept_outcome(address, job_id)
    assert kept is not None
    return kept


def _directories(address: str) -> list[str]:
    directory = shared_dir()
    assert directory is not None
    prefix = spill_prefix(address) + COLLECT_TAG
    return sorted(os.path.join(directory, e) for e in os.listdir(directory) if e.startswith(prefix))


@pytest.mark.parametrize("case", ["map", "columns"])
def test_collected_records_come_through_files_the_master_never_passes_on(
    cluster: LocalCluster, case: str
) -> None:
    build = {"map": _map, "columns": _columns}[case]
    local = StreamEnvironment(parallelism=2)
    local_sink = _sink(build(local))
    reference = run_local(local.job_graph, name="ref")
    env = StreamEnvironment(cluster, parallelism=2)
    sink = _sink(build(env))
    handle = env.execute(case)
    assert isinstance(handle, JobHandle)
    result = handle.result(timeout=120)
    assert _rows(result.collected[sink]) == _rows(reference.collected[local_sink])
    got, want = handle.subtask_results[sink], reference.subtask_results[local_sink]
    assert [_rows(part) for part in got] == [_rows(part) for part in want]
    # What the master handed the dispatcher (the same frames it answers a handle with): the
    # files' description, a few kB, where the records are megabytes.
    kept = _kept_soon(cluster.address, handle.job_id)
    reply, sent = kept
    assert reply.spilled in _directories(cluster.address)
    files = [os.path.join(reply.spilled, name) for name in os.listdir(reply.spilled)]
    on_disk = sum(os.path.getsize(f) for f in files)
    assert len(files) == 2
    assert on_disk > 2 * SPILL_COLLECTED_BYTES
    assert sent < 16_000 < on_disk
    assert os.stat(reply.spilled).st_mode & 0o777 == 0o700


def test_the_files_go_when_the_outcomes_retention_ends(cluster: LocalCluster) -> None:
    env = StreamEnvironment(cluster, parallelism=2).set_result_retention(3)
    sink = _sink(_map(env))
    before = set(_directories(cluster.address))
    handle = env.execute("short")
    assert isinstance(handle, JobHandle)
    (directory,) = set(_directories(cluster.address)) - before  # the client made it
    assert len(handle.result(timeout=120).collected[sink]) == N
    # Its master is gone a second after the fetch; the dispatcher keeps the outcome 3 s.
    eventually(lambda: not os.path.exists(directory), "the directory removed", timeout=60)
    assert _kept_outcome(cluster.address, handle.job_id) is None


def test_a_failed_job_leaves_no_directory(cluster: LocalCluster) -> None:
    def fail(x: int) -> int:
        if x == N - 3:
            raise RuntimeError("no result")
        return x

    env = StreamEnvironment(cluster, parallelism=2)
    _sink(env.from_collection(list(range(N))).map(fail))
    before = set(_directories(cluster.address))
    handle = env.execute("failing")
    assert isinstance(handle, JobHandle)
    with pytest.raises(Exception, match="no result"):
        handle.result(timeout=120)
    # Its master removes it as it exits (nobody can fetch a failed job's records).
    eventually(
        lambda: set(_directories(cluster.address)) <= before, "the job's directory removed",
        timeout=60,
    )  # fmt: skip


def test_a_restarted_region_collects_once_through_files(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    marker = str(tmp_path / "failed-once")

    def fail_once(x: int) -> tuple[int, str]:
        if x == N - 7 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("the first attempt fails")
        return x + 1, f"r{x}"

    env = StreamEnvironment(cluster, parallelism=2)
    env.set_restart_strategy(lambda: FixedDelay(attempts=2, delay=0.1))
    sink = _sink(env.from_collection(list(range(N))).map(fail_once))
    handle = env.execute("restarted")
    assert isinstance(handle, JobHandle)
    result = handle.result(timeout=120)
    assert handle.metrics()["restarts"] == 1
    # The final attempt's records only, each once.
    assert sorted(result.collected[sink]) == [(x + 1, f"r{x}") for x in range(N)]
    eventually(
        lambda: _kept_outcome(cluster.address, handle.job_id) is not None,
        "the outcome kept",
        timeout=60,
    )
    kept = _kept_soon(cluster.address, handle.job_id)
    assert kept[1] < 16_000  # both parts came as files


@pytest.mark.slow
def test_a_restarted_dispatcher_serves_the_kept_outcome_from_its_files() -> None:
    local = StreamEnvironment(parallelism=2)
    local_sink = _sink(_columns(local))
    reference = run_local(local.job_graph, name="ref").collected[local_sink]
    with make_cluster(2, 1) as cluster:
        env = StreamEnvironment(cluster, parallelism=2)
        sink = _sink(_columns(env))
        handle = env.execute("kept")
        assert isinstance(handle, JobHandle)
        kept_dir = _kept_soon(cluster.address, handle.job_id, timeout=120)[0].spilled
        # As an outcome's directory whose retention passed while no dispatcher ran would be:
        prefix = spill_prefix(cluster.address) + COLLECT_TAG
        orphan = tempfile.mkdtemp(prefix=prefix, dir=shared_dir())
        cluster.restart_dispatcher()  # SIGKILL: its job masters go with it
        eventually(lambda: not job_masters_of(cluster), "the master gone", timeout=60)
        attached = JobHandle.attach(cluster, handle.job_id)  # from the new dispatcher's store
        assert _rows(attached.result(timeout=60).collected[sink]) == _rows(reference)
        # Fetched again: kept until its retention, not handed out once and dropped.
        again = JobHandle.attach(cluster, handle.job_id)
        assert _rows(again.result(timeout=60).collected[sink]) == _rows(reference)
        address = cluster.address
        assert _directories(address) == [kept_dir]  # the orphan went as the dispatcher started
        assert not os.path.exists(orphan)
    assert not [e for e in os.listdir(shared_dir() or "/") if e.startswith(spill_prefix(address))]


@pytest.mark.slow
def test_without_a_job_store_the_files_go_soon_after_the_master() -> None:
    with make_cluster(2, 1, keep_jobs=False) as cluster:
        env = StreamEnvironment(cluster, parallelism=2)  # (retention: 10 minutes)
        sink = _sink(_map(env))
        before = set(_directories(cluster.address))
        handle = env.execute("unkept")
        assert isinstance(handle, JobHandle)
        (directory,) = set(_directories(cluster.address)) - before
        assert len(handle.result(timeout=120).collected[sink]) == N
        assert os.path.isdir(directory)  # (the handle mapped the files: they may go now)
        # Its master exits a second after the fetch; nobody serves the outcome then.
        eventually(lambda: not os.path.exists(directory), "the directory removed", timeout=90)


def test_files_gone_from_shared_memory_are_a_clear_error(cluster: LocalCluster) -> None:
    env = StreamEnvironment(cluster, parallelism=2)
    _sink(_map(env))
    handle = env.execute("gone")
    assert isinstance(handle, JobHandle)
    kept = _kept_soon(cluster.address, handle.job_id, timeout=120)
    for name in os.listdir(kept[0].spilled):  # (as a reboot, or someone, would)
        os.unlink(os.path.join(kept[0].spilled, name))
    with pytest.raises(FileNotFoundError, match=r"collected records in .* are gone"):
        handle.result(timeout=60)


def test_slices_that_cannot_see_the_directory_send_their_records() -> None:
    # As on another host: the directory the job names does not exist where its slices run.
    # (A tcp:// dispatcher: the client makes no directory of its own.)
    missing = os.path.join(shared_dir() or "/", f"{SPILL_PREFIX}000000000000-{COLLECT_TAG}x")
    local = StreamEnvironment(parallelism=2)
    local_sink = _sink(_map(local))
    reference = run_local(local.job_graph, name="ref").collected[local_sink]
    with make_cluster(1, 2, address="tcp://127.0.0.1:0") as cluster:
        env = StreamEnvironment(cluster, parallelism=2)
        sink = _sink(_map(env))
        job = env.job_graph
        job = job.replace(sink, params=dict(job.operators[sink].params, spill_dir=missing))
        ids = list(range(len(job.operators)))
        handle = submit_job(cluster.address, job, "elsewhere", JobOptions(), ids)
        result = handle.result(timeout=120)
        assert _rows(result.collected[sink]) == _rows(reference)
        kept = _kept_soon(cluster.address, handle.job_id)
        assert kept[1] > 2 * SPILL_COLLECTED_BYTES
    assert not os.path.exists(missing)


# -- the files, in process ----------------------------------------------------------------


def test_a_part_is_written_only_to_a_private_directory_of_ours(tmp_path: Path) -> None:
    records = {1: list(range(100_000))}
    shm = shared_dir()
    assert shm is not None
    good = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}test-", dir=shm)
    loose = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}test-", dir=shm)
    os.chmod(loose, 0o755)
    link = os.path.join(shm, f"{SPILL_PREFIX}test-link-{os.getpid()}")
    os.symlink(good, link)
    try:
        written = PickledCollected.of(records, good)
        assert isinstance(written, MappedCollected)
        assert os.path.dirname(written.path) == good
        assert written.load() == records
        for elsewhere in (str(tmp_path), loose, link, os.path.join(shm, "missing")):
            assert isinstance(PickledCollected.of(records, elsewhere), PickledCollected)
        assert isinstance(PickledCollected.of({1: [1]}, good), PickledCollected)  # small
    finally:
        os.unlink(link)
        shutil.rmtree(good)
        shutil.rmtree(loose)


def test_a_part_naming_a_path_outside_the_clusters_directory_is_refused(tmp_path: Path) -> None:
    shm = shared_dir()
    assert shm is not None
    outside = tmp_path / "slice-1"
    outside.write_bytes(b"\0" * 128)
    loose = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}test-", dir=shm)
    os.chmod(loose, 0o755)
    Path(loose, "slice-1").write_bytes(b"\0" * 128)
    private = ""
    try:
        with pytest.raises(ValueError, match="not a pydispatch directory"):
            MappedCollected(str(outside), b"", [(0, 128)]).load()
        with pytest.raises(ValueError, match="not private"):
            MappedCollected(os.path.join(loose, "slice-1"), b"", [(0, 128)]).load()
        with pytest.raises(ValueError, match="not a pydispatch directory"):
            MappedCollected(f"{shm}/../{tmp_path}/slice-1", b"", [(0, 128)]).load()
        private = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}test-", dir=shm)
        os.mkfifo(os.path.join(private, "fifo"))  # (opening it must not wait for a writer)
        os.symlink(outside, os.path.join(private, "link"))
        with pytest.raises(ValueError, match="names no file"):
            MappedCollected(os.path.join(private, ".."), b"", [(0, 128)]).load()
        with pytest.raises(ValueError, match="not a regular file"):
            MappedCollected(os.path.join(private, "fifo"), b"", [(0, 128)]).load()
        with pytest.raises(OSError, match="links"):
            MappedCollected(os.path.join(private, "link"), b"", [(0, 128)]).load()
    finally:
        shutil.rmtree(loose)
        shutil.rmtree(private, ignore_errors=True)


def test_a_short_file_is_refused() -> None:
    shm = shared_dir()
    assert shm is not None
    good = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}test-", dir=shm)
    try:
        part = PickledCollected.of({1: list(range(100_000))}, good)
        assert isinstance(part, MappedCollected)
        os.truncate(part.path, 1000)
        with pytest.raises(ValueError, match="shorter"):
            part.load()
    finally:
        shutil.rmtree(good)
