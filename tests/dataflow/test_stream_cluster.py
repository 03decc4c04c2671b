"""Dataflow jobs on a real cluster (dispatcher + worker processes): results against the
in-process reference executor, numpy and Counter; cancel, failures, restarts, back-pressure."""

from __future__ import annotations

import collections
import itertools
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from _support.clusters import FAST, make_cluster
from _support.process_guard import eventually
from pydispatch.cli.jobs import fetch_jobs
from pydispatch.dataflow import handle as handle_module
from pydispatch.dataflow.combiners import combines
from pydispatch.dataflow.handle import SPILL_BYTES, spill_arrays
from pydispatch.dataflow.local import run_local
from pydispatch.errors import JobFailedError
from pydispatch.plan._sources import MappedColumn
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import DataStream, FixedDelay, JobHandle, NoRestart, StreamEnvironment

# Functions defined here travel by value: slot processes cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}


def env_on(cluster: LocalCluster, parallelism: int = 2) -> StreamEnvironment:
    return StreamEnvironment(cluster, parallelism=parallelism)


def collect_sink(stream: DataStream) -> int:
    """Add a collect sink without running the job; its operator id."""
    return stream._sink("Collect", {"sink": "collect", "columnar": stream.schema.columnar}).id


def as_key(record: Any) -> Any:
    return repr(record)


def run_both(build: Callable[[StreamEnvironment], DataStream], cluster: LocalCluster) -> None:
    """Build the job in process and on the cluster: each collect subtask gets the same multiset
    (Flink orders nothing across channels; the reference reads them one after the other)."""
    local_env = StreamEnvironment(parallelism=2)
    local_sink = collect_sink(build(local_env))
    reference = run_local(local_env.job_graph, name="ref")
    env = env_on(cluster)
    sink = collect_sink(build(env))
    assert sink == local_sink
    handle = env.execute("both")
    assert isinstance(handle, JobHandle)
    handle.result(timeout=60)
    assert handle.status() == "FINISHED"
    got = handle.subtask_results[sink]
    want = reference.subtask_results[local_sink]
    assert len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        assert sorted(map(as_key, _records(mine))) == sorted(map(as_key, _records(theirs)))
    assert handle.records_in == reference.records_in
    assert handle.records_out == reference.records_out


def _records(batch: Any) -> list[Any]:
    if isinstance(batch, dict):
        names = list(batch)
        return [dict(zip(names, row, strict=True)) for row in zip(*batch.values(), strict=True)]
    return list(batch)


# -- the seed example and the classics -------------------------------------------------------


def test_seed_example_on_an_embedded_cluster() -> None:
    with StreamEnvironment.local(workers=2, **FAST) as env:
        assert env.from_elements([1, 2, 3, 4, 5]).map(lambda x: x + 1).collect() == [2, 3, 4, 5, 6]
        handle = env.execute  # the environment stays usable for more jobs
        assert callable(handle)
        assert env.from_elements(["a"]).map(str.upper).collect() == ["A"]


def test_an_embedded_environment_runs_masters_here_and_its_dispatcher_hosts_none() -> None:
    with StreamEnvironment.local(workers=1, **FAST) as env:
        sink = collect_sink(env.from_elements(range(10)).map(lambda x: x * 2))
        handle = env.execute("doubled")
        assert isinstance(handle, JobHandle)
        assert sorted(handle.result(timeout=30).collected[sink]) == list(range(0, 20, 2))
        assert handle.status() == "FINISHED"
        assert handle.metrics()["status"] == "FINISHED"
        cluster = env.target
        assert isinstance(cluster, LocalCluster)
        address = cluster.address
        # Its master runs in this process and announces the job to the dispatcher as any does.
        (listed,) = [j for j in fetch_jobs(address) if j.job_id == handle.job_id]
        assert listed.state == "FINISHED"
        # A master whose outcome was fetched ends when the next job starts (a second later).
        time.sleep(1.1)
        second = collect_sink(env.from_elements([7]))
        assert env.execute("second").result(timeout=30).collected[second] == [7]
        assert [run.job_id for run, _ in env._masters] != [handle.job_id]
        assert len(env._masters) == 1
        # The dispatcher itself was started without a job launcher: it refuses hosted jobs.
        hosted = StreamEnvironment(address)
        collect_sink(hosted.from_elements([1]))
        with pytest.raises(RuntimeError, match="hosts no job masters"):
            hosted.execute("refused")


def test_word_count_equals_counter(cluster: LocalCluster) -> None:
    words = ["to", "be", "or", "not", "é", "spam"]
    lines = [" ".join(words[(i * 7 + j) % 6] for j in range(i % 9)) for i in range(3000)]
    env = env_on(cluster)
    counts = (
        env.from_collection(lines)
        .flat_map(str.split)
        .map(lambda w: (w, 1))
        .key_by(0)
        .sum(1)
        .collect()
    )
    assert isinstance(counts, list)
    assert len(counts) == len({k for k, _ in counts})
    assert dict(counts) == collections.Counter(w for line in lines for w in line.split())


@pytest.mark.parametrize("agg", ["sum", "min", "max", "count"])
def test_record_combiner_ships_one_record_per_key_and_subtask(
    cluster: LocalCluster, agg: str
) -> None:
    """Batch mode, records: producers pre-aggregate per key before the shuffle, so 60,000
    records of 40 keys cross it as at most 2 x 40 partial records; the results and every
    operator's records in and out equal the reference executor's, which does not combine."""
    data = [(f"k{i % 40}", (i * 7919) % 1000 - 500) for i in range(60_000)]

    def build(env: StreamEnvironment) -> DataStream:
        keyed = env.from_collection(data).map(lambda r: r).key_by(0)
        return keyed.count() if agg == "count" else getattr(keyed, agg)(1)

    local_env = StreamEnvironment(parallelism=2)
    local_sink = collect_sink(build(local_env))
    reference = run_local(local_env.job_graph, name="ref")
    env = env_on(cluster)
    sink = collect_sink(build(env))
    handle = env.execute("combined records")
    handle.result(timeout=60)
    assert sorted(handle.collected[sink]) == sorted(reference.collected[local_sink])
    assert handle.records_in == reference.records_in
    assert handle.records_out == reference.records_out
    assert handle.metrics()["bytes_shuffled"] < 2 * 40 * 60  # a few pickled tuples per key


def test_large_arrays_reach_the_slices_through_shared_memory(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A from_arrays source above SPILL_BYTES is written once to shared memory by the client
    and mapped by each slice: the job that travels holds paths, not the arrays; the job's
    master removes the files when it ends, whatever the client does with its handle."""
    monkeypatch.setattr(handle_module, "SPILL_BYTES", 1 << 16)
    rng = np.random.default_rng(4)
    keys = rng.integers(0, 97, 200_000).astype(np.int32)
    values = rng.integers(0, 10, 200_000).astype(np.uint16)
    env = env_on(cluster)
    sink = collect_sink(env.from_arrays({"k": keys, "v": values}).key_by("k").sum("v"))
    handle = env.execute("spilled")
    job = handle._job
    assert job is not None
    (source,) = job.sources()
    mapped = list(source.params["columns"].values())
    assert all(isinstance(c, MappedColumn) for c in mapped)
    assert len(pickle.dumps(dict(source.params["columns"]))) < 1_000
    paths = [c.path for c in mapped]
    assert all(os.path.isfile(path) for path in paths)
    out = handle.collected[sink]
    order = np.argsort(out["k"])
    np.testing.assert_array_equal(out["k"][order], np.arange(97, dtype=np.int32))
    np.testing.assert_array_equal(out["v"][order], np.bincount(keys, weights=values))
    assert handle.records_in[1] == 200_000
    # The master ends once its result was fetched and the retention passed (the cluster's).
    eventually(lambda: not any(os.path.exists(path) for path in paths), "files removed", 60)


def test_small_and_object_arrays_are_not_spilled() -> None:
    env = StreamEnvironment(parallelism=2)
    objects = np.empty(SPILL_BYTES, dtype=object)
    collect_sink(env.from_arrays({"k": np.arange(10)}))
    collect_sink(env.from_arrays({"o": objects}))
    job, directory = spill_arrays(env.job_graph)
    assert directory is None
    assert job is env.job_graph


@pytest.mark.parametrize("agg", ["sum", "min", "max", "count"])
def test_columnar_time_windows_equal_the_reference(cluster: LocalCluster, agg: str) -> None:
    """Time windows over columns aggregate natively per window and key (one dict update per
    window and key of a batch); their output equals the reference's row-by-row windows. Six
    2 MiB batches per producer, so windows span batches (integer sums: exact whatever the
    association; min/max of floats: exact)."""
    rng = np.random.default_rng(8)
    rows = 300_000
    values = rng.integers(-1_000, 1_000, rows) if agg == "sum" else rng.normal(size=rows)
    columns = {
        "k": rng.integers(0, 30, rows),
        "t": np.sort(rng.integers(0, 1_000, rows)),
        "v": values.astype(np.int32 if agg == "sum" else np.float32),
    }

    def build(env: StreamEnvironment) -> DataStream:
        windowed = env.from_arrays(columns).key_by("k").time_window(100, timestamp="t")
        return windowed.count() if agg == "count" else getattr(windowed, agg)("v")

    run_both(build, cluster)


def test_combining_is_a_rule_of_the_plan() -> None:
    """Which aggregations take partials: not a streaming job's rolling one on records (it
    emits an update per record), nor reduce (a user's function need not be associative)."""
    env = StreamEnvironment(parallelism=2)
    keyed = env.from_collection([("a", 1)]).key_by(0)
    ops = {name: getattr(keyed, name)(1).operator for name in ("sum", "min", "max")}
    ops["count"] = keyed.count().operator
    ops["reduce"] = keyed.reduce(lambda a, b: a).operator
    plan = env.execution_graph()
    assert {name: combines(plan, op) for name, op in ops.items()} == {
        "sum": True,
        "min": True,
        "max": True,
        "count": True,
        "reduce": False,
    }
    streaming = StreamEnvironment(parallelism=2)
    rolling = streaming.from_source(lambda: iter([("a", 1)]), bounded=False).key_by(0).sum(1)
    assert not combines(streaming.execution_graph(), rolling.operator)
    columnar = streaming.from_arrays({"k": np.arange(3)}).key_by("k").count()
    assert combines(streaming.execution_graph(), columnar.operator)


def test_keyed_sum_over_a_million_rows_equals_numpy(cluster: LocalCluster) -> None:
    rng = np.random.default_rng(5)
    rows = 1_000_000
    keys = rng.integers(0, 5_000, rows)
    values = rng.integers(-1_000, 1_000, rows).astype(np.int32)
    env = env_on(cluster)
    out = env.from_arrays({"k": keys, "v": values}).key_by("k").sum("v").collect()
    assert isinstance(out, dict)
    expected = np.zeros(5_000, dtype=np.int64)
    np.add.at(expected, keys, values)
    present = np.bincount(keys, minlength=5_000) > 0
    order = np.argsort(out["k"])
    np.testing.assert_array_equal(out["k"][order], np.flatnonzero(present))
    np.testing.assert_array_equal(out["v"][order], expected[present])
    assert out["v"].dtype == np.int64


@pytest.mark.parametrize("agg", ["sum", "min", "max", "count"])
def test_combiner_ships_one_row_per_key_and_subtask(cluster: LocalCluster, agg: str) -> None:
    """Local-global aggregation: each source subtask pre-aggregates before the shuffle, so
    with 1,000 keys the shuffle carries at most 1,000 partial rows per producer (24 bytes: key,
    value, row count) whatever the input size; results and records-in equal the reference."""
    rng = np.random.default_rng(11)
    rows = 300_000
    columns = {"k": rng.integers(0, 1_000, rows), "v": rng.normal(size=rows).astype(np.float32)}

    def build(env: StreamEnvironment) -> DataStream:
        keyed = env.from_arrays(columns).key_by("k")
        return keyed.count() if agg == "count" else getattr(keyed, agg)("v")

    local_env = StreamEnvironment(parallelism=2)
    local_sink = collect_sink(build(local_env))
    reference = run_local(local_env.job_graph, name="ref")
    env = env_on(cluster)
    sink = collect_sink(build(env))
    handle = env.execute("combined")
    handle.result(timeout=60)
    got, want = handle.collected[sink], reference.collected[local_sink]
    order, ref_order = np.argsort(got["k"]), np.argsort(want["k"])
    for name in want:
        np.testing.assert_array_equal(got[name][order], want[name][ref_order])
        assert got[name].dtype == want[name].dtype
    value = "count" if agg == "count" else "v"
    keys = columns["k"]
    if agg == "count":
        np.testing.assert_array_equal(got[value][order], np.bincount(keys))
    elif agg == "sum":
        expected = np.bincount(keys, weights=columns["v"].astype(np.float64))
        np.testing.assert_allclose(got[value][order], expected, rtol=1e-9)
    else:
        expected = np.full(1_000, np.inf if agg == "min" else -np.inf, dtype=np.float32)
        (np.minimum if agg == "min" else np.maximum).at(expected, keys, columns["v"])
        np.testing.assert_array_equal(got[value][order], expected)
    metrics = handle.metrics()
    assert metrics["bytes_shuffled"] <= 2 * 1_000 * 24
    assert handle.records_in == reference.records_in  # raw rows, not partial rows


# -- every partitioning, windows, union: the same as the reference ----------------------------

DATA = list(range(500))


def _forward(env: StreamEnvironment) -> DataStream:
    s = env.from_collection(DATA).map(lambda x: x * 3)
    s.disable_chaining()
    return s.forward().map(lambda x: x + 1)


def _rebalance(env: StreamEnvironment) -> DataStream:
    return env.from_elements(DATA).rebalance().map(lambda x: x - 1).set_parallelism(2)


def _rescale(env: StreamEnvironment) -> DataStream:
    s = env.from_collection(DATA).set_parallelism(2)
    return s.rescale().map(lambda x: -x).set_parallelism(3)


def _hash(env: StreamEnvironment) -> DataStream:
    return env.from_collection(DATA).key_by(lambda x: x % 17).map(lambda x: (x % 17, x))


def _broadcast(env: StreamEnvironment) -> DataStream:
    return env.from_collection(DATA[:50]).broadcast().map(lambda x: x)


def _custom(env: StreamEnvironment) -> DataStream:
    return env.from_collection(DATA).partition_custom(lambda k, n: k % n, lambda x: x // 10)


def _count_window(env: StreamEnvironment) -> DataStream:
    # One upstream channel per window subtask: which records share a window depends on the
    # order of a key's records, and channels interleave in any order (as in Flink).
    return env.from_elements(DATA).key_by(lambda x: x % 7).count_window(5).sum()


def _time_window(env: StreamEnvironment) -> DataStream:
    return (
        env.from_collection(DATA)
        .key_by(lambda x: x % 3)
        .time_window(40, timestamp=lambda x: x)
        .sum()
    )


def _union_reduce(env: StreamEnvironment) -> DataStream:
    a = env.from_collection(DATA).map(lambda x: ("a", x))
    b = env.from_elements(DATA[:100]).map(lambda x: ("b", x))
    return a.union(b).key_by(0).reduce(lambda x, y: (x[0], x[1] + y[1]))


def _columnar(env: StreamEnvironment) -> DataStream:
    keys = np.arange(10_000) % 13
    columns = {"k": keys, "v": np.arange(10_000, dtype=np.float64)}
    return env.from_arrays(columns).key_by("k").max("v")


def _flink_keys(env: StreamEnvironment) -> DataStream:
    words = [f"w{i % 31}" for i in range(400)]
    return env.from_collection(words).key_by(lambda w: w, scheme="flink").count()


CASES = {
    f.__name__[1:]: f
    for f in (
        _forward,
        _rebalance,
        _rescale,
        _hash,
        _broadcast,
        _custom,
        _count_window,
        _time_window,
        _union_reduce,
        _columnar,
        _flink_keys,
    )
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_partitioning_and_operators_match_the_reference(cluster: LocalCluster, case: str) -> None:
    run_both(CASES[case], cluster)


def test_text_and_for_each_sinks(cluster: LocalCluster, tmp_path: Path) -> None:
    env = env_on(cluster)
    out = tmp_path / "out"
    env.from_collection(DATA).map(lambda x: x * 2).write_text(out)
    seen = tmp_path / "seen"
    seen.mkdir()
    env.from_collection(DATA[:10]).for_each(lambda x: (seen / str(x)).touch())
    handle = env.execute("sinks")
    assert isinstance(handle, JobHandle)
    handle.result(timeout=60)
    lines = [int(line) for f in sorted(out.iterdir()) for line in f.read_text().splitlines()]
    assert sorted(lines) == [x * 2 for x in DATA]
    assert sorted(int(p.name) for p in seen.iterdir()) == DATA[:10]


# -- lifecycle -------------------------------------------------------------------------------


def test_job_handle_status_metrics_and_refusal(cluster: LocalCluster) -> None:
    env = env_on(cluster)
    env.from_collection(DATA).rebalance().map(lambda x: x + 1).for_each(lambda x: None)
    handle = env.execute("metrics")
    assert isinstance(handle, JobHandle)
    assert handle.status() in ("RUNNING", "FINISHED")
    handle.result(timeout=60)
    assert handle.status() == "FINISHED"
    metrics = handle.metrics()
    assert metrics["restarts"] == 0
    # The solver chose a worker for each slice (slot sharing: 2 slices), and they ran there.
    placement = metrics["placement"]
    assert placement["pinned"], placement
    assert len(placement["workers"]) == 2
    assert placement["ran_on"] == placement["workers"]
    # ...and says what it costs, how far from optimal it can be, and which bound proves it
    assert 0 <= placement["lower_bound"] <= placement["objective"] + 1e-9
    assert 0 <= placement["gap"] <= 1
    assert placement["bound_method"]
    assert f"lower bound {placement['lower_bound']:.6g}" in placement["plan"].splitlines()[-1]
    assert metrics["records_in"][2] == len(DATA)  # the map
    assert metrics["bytes_shuffled"] > 0
    assert set(metrics["busy_seconds"]) == set(metrics["backpressured_seconds"])
    assert not handle.cancel()  # already finished
    big = env_on(cluster, parallelism=5)  # 4 slots in all
    big.from_collection(DATA).map(lambda x: x).for_each(lambda x: None)
    with pytest.raises(ValueError, match="can never fit"):
        big.execute("too big")


def test_a_failing_function_fails_the_job_with_its_error(cluster: LocalCluster) -> None:
    env = env_on(cluster)
    env.set_restart_strategy(NoRestart)
    env.from_collection([1, 2, 0, 4]).map(lambda x: 1 // x).for_each(lambda x: None)
    handle = env.execute("fails")
    assert isinstance(handle, JobHandle)
    with pytest.raises(JobFailedError, match="ZeroDivisionError"):
        handle.result(timeout=60)
    assert handle.status() == "FAILED"
    # The cluster's slots are free again.
    assert env_on(cluster).from_elements([1]).map(lambda x: x).collect() == [1]


def _progress_source(path: Path, total: int | None) -> Callable[..., Iterator[int]]:
    def source(index: int = 0, parallelism: int = 1) -> Iterator[int]:
        mark = path / f"{os.getpid()}-{index}"
        i = index
        while total is None or i < total:
            if i % 200 == index:
                mark.write_text(str(i))
                time.sleep(0.01)
            yield i
            i += parallelism

    return source


def test_cancel_an_unbounded_job(cluster: LocalCluster, tmp_path: Path) -> None:
    env = env_on(cluster)
    source = _progress_source(tmp_path, None)
    env.from_source(source, bounded=False).map(lambda x: x).for_each(lambda x: None)
    handle = env.execute("forever")
    assert isinstance(handle, JobHandle)
    eventually(lambda: any(tmp_path.iterdir()), "the source started")
    assert handle.status() == "RUNNING"
    # Live figures: the running slices report theirs to the master.
    eventually(lambda: handle.metrics()["records_in"][1] > 0, "the map's records in, live")
    assert handle.metrics()["status"] == "RUNNING"
    assert handle.cancel()
    assert handle.status() == "CANCELED"
    with pytest.raises(CancelledError):
        handle.result(timeout=60)
    assert env_on(cluster).from_elements([7]).map(lambda x: x).collect() == [7]


def test_a_slow_consumer_back_pressures_the_source(cluster: LocalCluster, tmp_path: Path) -> None:
    produced = tmp_path / "produced"
    produced.write_text("0")
    total = 2000

    def source() -> Iterator[int]:
        for i in range(total):
            produced.write_text(str(i + 1))
            yield i

    def slow(x: int) -> int:
        time.sleep(0.0005)
        return int(produced.read_text() or x + 1) - (x + 1)  # records the source is ahead

    env = env_on(cluster, parallelism=1)
    env.set_network(batch_records=16, credits=2)
    lags = env.from_source(source).rebalance().map(slow).collect()
    assert isinstance(lags, list)
    assert len(lags) == total
    # Without credits the source would finish at once (lag ~ total). With them it is at most
    # the batches in flight (2), the one being processed and the one being filled ahead.
    assert max(lags) <= 16 * 5


@pytest.mark.slow
def test_kill_a_worker_mid_job_gives_the_identical_result(tmp_path: Path) -> None:
    total = 30_000
    with make_cluster(3, 1) as cluster:
        env = env_on(cluster)
        env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=0.1))
        env.set_network(batch_records=64, credits=2)
        source = _progress_source(tmp_path, total)
        sink = collect_sink(
            env.from_source(source, parallel=True).map(lambda x: (x % 10, x)).key_by(0).sum(1)
        )
        handle = env.execute("survives")
        assert isinstance(handle, JobHandle)

        def started() -> bool:
            return any(int(p.read_text() or 0) > 1000 for p in tmp_path.iterdir())

        eventually(started, "the sources made progress")
        slot_pid = int(next(iter(tmp_path.iterdir())).name.split("-")[0])
        stat = Path(f"/proc/{slot_pid}/stat").read_text()
        worker_pid = int(stat.rsplit(")", 1)[1].split()[1])
        assert worker_pid in cluster.worker_pids
        os.kill(worker_pid, signal.SIGKILL)
        result = handle.result(timeout=60)
        expected = collections.Counter()
        for x in range(total):
            expected[x % 10] += x
        got = result.collected[sink]
        assert len(got) == 10
        assert dict(got) == dict(expected)
        assert handle.metrics()["restarts"] >= 1


# -- command line -----------------------------------------------------------------------------

BOUNDED_JOB = """
def build(env):
    return env.from_collection(range(10)).map(lambda x: x * 2)
"""

FAILING_JOB = """
from pydispatch.stream import NoRestart

def build(env):
    env.set_restart_strategy(NoRestart)
    return env.from_collection([1, 0]).map(lambda x: 1 // x)
"""

FOREVER_JOB = """
import itertools
def build(env):
    env.from_source(itertools.count, bounded=False).for_each(lambda x: None)
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pydispatch.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_cli_submit_jobs_and_cancel(cluster: LocalCluster, tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text(BOUNDED_JOB)
    done = _cli("submit", cluster.address, str(job), "--parallelism", "2", "--name", "doubles")
    assert done.returncode == 0, done.stderr
    assert sorted(int(line) for line in done.stdout.splitlines()[1:]) == [x * 2 for x in range(10)]
    failing = tmp_path / "failing.py"
    failing.write_text(FAILING_JOB)
    failed = _cli("submit", cluster.address, str(failing))
    assert failed.returncode == 1
    assert "ZeroDivisionError" in failed.stderr
    forever = tmp_path / "forever.py"
    forever.write_text(FOREVER_JOB)
    command = [sys.executable, "-m", "pydispatch.cli", "submit", cluster.address, str(forever)]
    submitter = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:

        def running() -> bool:
            return any(j.state == "RUNNING" for j in fetch_jobs(cluster.address))

        eventually(running, "the job is running")
        listed = _cli("jobs", cluster.address, "--json")
        assert listed.returncode == 0
        jobs = {j["name"]: j for j in json.loads(listed.stdout)}
        assert jobs["doubles"]["state"] == "FINISHED"
        assert jobs[str(forever)]["state"] == "RUNNING"
        cancelled = _cli("cancel", cluster.address, jobs[str(forever)]["job_id"])
        assert cancelled.returncode == 0, cancelled.stderr
        _, err = submitter.communicate(timeout=60)
        assert submitter.returncode == 1
        assert "cancelled" in err
        assert any(j.state == "CANCELED" for j in fetch_jobs(cluster.address))
        assert "CANCELED" in _cli("jobs", cluster.address).stdout
    finally:
        if submitter.poll() is None:
            os.kill(submitter.pid, signal.SIGKILL)
            submitter.wait()


def test_a_failure_behind_an_exchange_ends_every_slice(cluster: LocalCluster) -> None:
    """The failing subtask's slice has other threads blocked on peers: the slice reports the
    error to the master, which cancels the attempt; nothing hangs, the slots come back."""

    def explode(x: int) -> int:
        if x == 4_321:
            raise KeyError("boom")
        return x

    env = env_on(cluster)
    env.set_restart_strategy(NoRestart)
    env.set_network(batch_records=32, credits=1)
    stream = env.from_collection(range(20_000)).key_by(lambda x: x % 5).map(explode)
    stream.rebalance().for_each(lambda x: None)
    handle = env.execute("explodes")
    assert isinstance(handle, JobHandle)
    with pytest.raises(JobFailedError, match="boom"):
        handle.result(timeout=60)
    assert handle.status() == "FAILED"
    probe = cluster.client()
    eventually(lambda: probe.status().running == 0, "the slots are free")
    probe.shutdown()
    assert env_on(cluster).from_elements([3]).map(lambda x: x).collect() == [3]


def test_jobs_at_once_share_the_cluster(cluster: LocalCluster) -> None:
    handles = []
    for n in (1, 2):
        env = env_on(cluster)
        env.from_collection(range(5_000)).key_by(lambda x: x % 7).sum().for_each(lambda x: None)
        sink = collect_sink(env.from_collection(range(n * 1_000)).map(lambda x, n=n: x * n))
        handle = env.execute(f"job {n}")
        assert isinstance(handle, JobHandle)
        handles.append((handle, sink, n))
    for handle, sink, n in handles:
        assert sorted(handle.result(timeout=60).collected[sink]) == [
            x * n for x in range(n * 1_000)
        ]


def test_time_windows_on_an_unbounded_stream_fire_on_watermarks(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Streaming mode: a window fires once every input channel's watermark passed its end,
    before the (never ending) end of input; its result is exact."""
    out = tmp_path / "windows"
    out.mkdir()

    def events() -> Iterator[tuple[str, int]]:
        for t in itertools.count():
            yield ("ab"[t % 2], t)  # event time t, ascending
            if t % 500 == 0:
                time.sleep(0.005)

    def emit(result: tuple[str, int, int]) -> None:
        key, start, total = result
        (out / f"{key}-{start}").write_text(str(total))

    env = env_on(cluster)
    env.from_source(events, bounded=False).rebalance().map(lambda e: e).key_by(0).time_window(
        100, timestamp=1
    ).sum(1).for_each(emit)
    handle = env.execute("windows")
    assert isinstance(handle, JobHandle)
    eventually(lambda: (out / "b-900").exists(), "ten windows of each key fired")
    assert handle.status() == "RUNNING"
    assert handle.cancel()
    for start in range(0, 1000, 100):
        for key, first in (("a", 0), ("b", 1)):
            expected = sum(range(start + first, start + 100, 2))
            assert int((out / f"{key}-{start}").read_text()) == expected


def test_a_higher_priority_job_gets_the_slots_first(cluster: LocalCluster, tmp_path: Path) -> None:
    order = tmp_path / "order"
    blocking = env_on(cluster, parallelism=4)
    blocking.from_source(itertools.count, bounded=False, parallel=False).rebalance().for_each(
        lambda x: None
    )
    hold = blocking.execute("hold")
    assert isinstance(hold, JobHandle)
    eventually(lambda: hold.metrics()["records_in"].get(1, 0) > 0, "the slots are held")

    def job(tag: str) -> Callable[[], Iterator[int]]:
        def source() -> Iterator[int]:
            with order.open("a") as f:
                f.write(tag)
            yield from range(100)

        return source

    handles = []
    for tag, priority in (("low", 0), ("high", 5)):
        env = env_on(cluster, parallelism=4)
        env.from_source(job(tag)).rebalance().for_each(lambda x: None)
        handle = env.execute(tag, priority=priority)
        assert isinstance(handle, JobHandle)
        handles.append(handle)
    assert hold.cancel()
    for handle in handles:
        handle.result(timeout=60)
    assert order.read_text() == "highlow"


@pytest.mark.slow
def test_a_lost_region_restarts_alone(tmp_path: Path) -> None:
    """Forward edges only: each slice is its own pipelined region, so killing the worker of
    slice 0 restarts slice 0 alone; slice 1's source runs once."""
    total = 40_000
    with make_cluster(3, 1) as cluster:
        env = env_on(cluster)
        env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=0.1))
        source = _progress_source(tmp_path, total)
        sink = collect_sink(env.from_source(source, parallel=True).map(lambda x: x * 2))
        handle = env.execute("regions")
        assert isinstance(handle, JobHandle)

        def marks(index: int) -> list[Path]:
            return [p for p in tmp_path.iterdir() if p.name.endswith(f"-{index}")]

        eventually(lambda: any(int(p.read_text() or 0) > 1000 for p in marks(0)), "progress")
        slot_pid = int(marks(0)[0].name.split("-")[0])
        stat = Path(f"/proc/{slot_pid}/stat").read_text()
        worker_pid = int(stat.rsplit(")", 1)[1].split()[1])
        os.kill(worker_pid, signal.SIGKILL)
        result = handle.result(timeout=60)
        assert sorted(result.collected[sink]) == [x * 2 for x in range(total)]
        assert handle.metrics()["restarts"] == 1
        assert len(marks(0)) == 2  # slice 0 ran twice (two slot processes)
        assert len(marks(1)) == 1  # slice 1 once
