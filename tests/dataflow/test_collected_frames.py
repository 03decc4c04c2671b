"""``collect()`` without the job master reading the records (issue 18): each slice pickles what
its collect sinks received once (``dataflow.slice_results.PickledCollected``), the master
passes those bytes on as frames, and only the handle unpickles them.

Real processes throughout: a LocalCluster whose job masters run in their own processes
(named ``pydispatch-job``), its dispatcher's SQLite job store for the kept outcome."""

from __future__ import annotations

import os
import pickle
import signal
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from _support.clusters import job_masters_of, make_cluster
from _support.collected import collect_sink as _sink
from _support.collected import sorted_rows as _rows
from _support.process_guard import eventually
from pydispatch.dataflow.handle import JobHandle, fetch_jobs
from pydispatch.dataflow.local import run_local
from pydispatch.dataflow.result import JobResult
from pydispatch.dataflow.slice_results import CollectedSlices, PickledCollected, unpack_outcome
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import DataStream, FixedDelay, StreamEnvironment
from pydispatch.wire import protocol as p
from pydispatch.wire import transport
from pydispatch.wire.protocol import Blob, ProtocolError
from pydispatch.wire.shm_files import shared_dir, spill_prefix

cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}


class _Frame:
    """What a received zmq frame offers ``transport.loads``: its length and a buffer."""

    def __init__(self, data: Any) -> None:
        self.buffer = memoryview(data).cast("B")

    def __len__(self) -> int:
        return self.buffer.nbytes


def _through(obj: Any) -> tuple[Any, Blob]:
    """``obj`` pickled and unpickled as a task result or a job's outcome travels."""
    frames: list[transport.FrameLike] = []
    blob = transport.dumps(obj, frames)
    received: list[Any] = [_Frame(f) for f in frames]
    return transport.loads(blob, received), blob


# -- the pickled parts, in process --------------------------------------------------------


def test_records_and_columns_pass_through_two_hops_without_being_pickled_again() -> None:
    records = [(i, f"w{i % 97}", i * 0.5) for i in range(50_000)]
    columns = {"k": np.arange(200_000, dtype=np.int64), "v": np.ones(200_000)}
    part = PickledCollected.of({3: records, 5: columns})
    assert part.nbytes > 1_000_000
    # slot -> master, then master -> handle: each outer pickle stream stays small (the
    # records and the columns' memory are out-of-band frames, not copied in again).
    at_master, first = _through({"collected": part, "metrics": {}})
    at_handle, second = _through(at_master["collected"])
    for blob in (first, second):
        assert len(blob.data) < 2_000
        assert len(blob.buffers) >= 2
    loaded = at_handle.load()
    assert loaded[3] == records
    np.testing.assert_array_equal(loaded[5]["k"], columns["k"])
    np.testing.assert_array_equal(loaded[5]["v"], columns["v"])


def test_plain_pickle_keeps_the_parts_in_band() -> None:
    # (the job store and snapshots pickle without a buffer callback)
    part = pickle.loads(pickle.dumps(PickledCollected.of({1: [1, 2, 3]}), protocol=5))
    assert part.load() == {1: [1, 2, 3]}


def test_a_part_pointing_outside_its_frames_is_refused() -> None:
    part = PickledCollected.of({1: list(range(10))})
    bad = PickledCollected(part._blob, [])  # its frames lost on the way
    with pytest.raises(ProtocolError, match="frame"):
        bad.load()


def test_an_outcome_kept_by_an_earlier_version_still_unpacks() -> None:
    result = JobResult("j", "batch", {7: [1, 2]})
    assert unpack_outcome((result, {7: [[1], [2]]})) == (result, {7: [[1], [2]]})
    empty = CollectedSlices((), ())
    assert unpack_outcome((result, empty))[0].collected == {}


# -- on a cluster -------------------------------------------------------------------------


N = 30_000  # from_collection spills to /dev/shm from 10,000 elements


def _map(env: StreamEnvironment) -> DataStream:
    return env.from_collection(list(range(N))).map(lambda x: (x % 11, x * 2))


def _rescale_to_three(env: StreamEnvironment) -> DataStream:
    return env.from_collection(list(range(N))).rescale().map(lambda x: -x).set_parallelism(3)


def _keyed(env: StreamEnvironment) -> DataStream:
    words = [f"w{i % 313}" for i in range(N)]
    return env.from_collection(words).map(lambda w: (w, 1)).key_by(0).sum(1)


def _columns(env: StreamEnvironment) -> DataStream:
    columns = {"k": np.arange(400_000) % 50_000, "v": np.arange(400_000, dtype=np.float64)}
    return env.from_arrays(columns).key_by("k").sum("v")


CASES = {f.__name__[1:]: f for f in (_map, _rescale_to_three, _keyed, _columns)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_collected_records_equal_the_reference(cluster: LocalCluster, case: str) -> None:
    local = StreamEnvironment(parallelism=2)
    local_sink = _sink(CASES[case](local))
    reference = run_local(local.job_graph, name="ref")
    env = StreamEnvironment(cluster, parallelism=2)
    sink = _sink(CASES[case](env))
    handle = env.execute(case)
    assert isinstance(handle, JobHandle)
    result = handle.result(timeout=120)
    got, want = handle.subtask_results[sink], reference.subtask_results[local_sink]
    assert len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        assert _rows(mine) == _rows(theirs)
    assert _rows(result.collected[sink]) == _rows(reference.collected[local_sink])
    assert handle.records_out == reference.records_out


class Marked:
    """A record that notes, in ``log``, each process that unpickles it."""

    def __init__(self, value: int, log: str) -> None:
        self.value, self.log = value, log

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickled, (self.value, self.log))


def _unpickled(value: int, log: str) -> Marked:
    with open("/proc/self/comm") as comm, open(log, "a") as out:
        out.write(f"{os.getpid()} {comm.read().strip()}\n")
    return Marked(value, log)


def test_the_job_master_never_unpickles_the_records(cluster: LocalCluster, tmp_path: Path) -> None:
    log = str(tmp_path / "unpickled")
    env = StreamEnvironment(cluster, parallelism=2)
    sink = _sink(env.from_collection(list(range(300))).map(lambda x: Marked(x, log)))
    handle = env.execute("marked")
    assert isinstance(handle, JobHandle)
    got = handle.result(timeout=60).collected[sink]
    assert sorted(m.value for m in got) == list(range(300))
    who = {tuple(line.split(" ", 1)) for line in Path(log).read_text().splitlines()}
    assert (str(os.getpid()), Path("/proc/self/comm").read_text().strip()) in who
    assert not [w for w in who if w[1] == "pydispatch-job"], who  # (the masters' name)


def test_a_restarted_region_collects_once(cluster: LocalCluster, tmp_path: Path) -> None:
    marker = str(tmp_path / "failed-once")

    def fail_once(x: int) -> int:
        if x == N - 7 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("the first attempt fails")
        return x + 1

    env = StreamEnvironment(cluster, parallelism=2)
    env.set_restart_strategy(lambda: FixedDelay(attempts=2, delay=0.1))
    sink = _sink(env.from_collection(list(range(N))).map(fail_once))
    handle = env.execute("restarted")
    assert isinstance(handle, JobHandle)
    result = handle.result(timeout=120)
    assert handle.metrics()["restarts"] == 1
    assert sorted(result.collected[sink]) == list(range(1, N + 1))


def test_the_outcome_comes_from_the_job_store_once_the_master_is_gone() -> None:
    with make_cluster(2, 1) as cluster:
        env = StreamEnvironment(cluster, parallelism=2)
        sink = _sink(env.from_collection(list(range(N))).map(lambda x: (x, str(x))))
        handle = env.execute("kept")
        assert isinstance(handle, JobHandle)

        def kept() -> bool:  # what the handle asks once the master is gone
            answer = transport.request(cluster.address, p.JobOutcomeRequest(handle.job_id))
            return isinstance(answer, p.JobOutcomeReply) and bool(answer.reply)

        eventually(kept, "the job finished, its outcome kept in the store", timeout=120)
        assert [j.state for j in fetch_jobs(cluster.address)] == ["FINISHED"]
        masters = job_masters_of(cluster)
        assert len(masters) == 1
        os.kill(masters[0], signal.SIGKILL)  # before any handle fetched the outcome
        result = handle.result(timeout=60)  # from the dispatcher's job store
        assert sorted(result.collected[sink]) == [(x, str(x)) for x in range(N)]
        assert [len(part) for part in handle.subtask_results[sink]] == [N // 2, N // 2]
        address = cluster.address
    directory = shared_dir()
    if directory is not None:  # the spilled sources gone with the cluster; results never there
        assert not [e for e in os.listdir(directory) if e.startswith(spill_prefix(address))]
