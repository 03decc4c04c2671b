"""One job API in process and on a cluster: ``execute()`` returns a ``JobHandle`` either way;
``write_text`` into a directory at any parallelism; relative paths resolved where the job is
built; a worker that cannot see a path fails the job at once, naming itself and the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from pydispatch.errors import JobFailedError
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import FixedDelay, JobHandle, JobResult, StreamEnvironment

# Functions defined here travel by value: slot processes cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}


def squares_of_evens(env: StreamEnvironment) -> list[Any]:
    """Code shared by both modes, as a user writes it against the handle."""
    sink = env.from_collection(range(10)).filter(lambda x: x % 2 == 0).map(lambda x: x * x)
    sink_id = sink._sink("Collect", {"sink": "collect", "columnar": False}).id
    handle = env.execute("shared")
    assert isinstance(handle, JobHandle)
    assert handle.status() in {"CREATED", "RUNNING", "FINISHED"}
    result = handle.result(timeout=60)
    assert isinstance(result, JobResult)
    assert handle.status() == "FINISHED"
    assert handle.done()
    assert handle.cancel() is False  # nothing left to cancel
    assert handle.metrics()["records_out"][sink_id - 1] == 5
    assert result.runtime_mode == handle.runtime_mode == "batch"
    assert handle.collected == result.collected
    records: list[Any] = result.collected[sink_id]
    return sorted(records)


def test_execute_returns_a_handle_in_process_and_on_a_cluster(cluster: LocalCluster) -> None:
    here = squares_of_evens(StreamEnvironment(parallelism=2))
    there = squares_of_evens(StreamEnvironment(cluster, parallelism=2))
    assert here == there == [0, 4, 16, 36, 64]


def test_an_in_process_failure_is_raised_by_execute_as_itself() -> None:
    env = StreamEnvironment()
    env.from_elements([1, 0]).map(lambda x: 1 // x).for_each(lambda x: None)
    with pytest.raises(ZeroDivisionError):
        env.execute("fails")


def _part_files(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("where", ["in process", "cluster"])
def test_write_text_into_a_directory_at_parallelism_one(
    where: str, cluster: LocalCluster, tmp_path: Path
) -> None:
    env = StreamEnvironment() if where == "in process" else StreamEnvironment(cluster)
    env.from_elements(["a", "b"]).write_text(f"{tmp_path}/out/")
    env.execute("dir").result(timeout=60)
    assert _part_files(tmp_path / "out") == {"1": "a\nb\n"}


@pytest.mark.parametrize("where", ["in process", "cluster"])
def test_an_existing_directory_is_overwritten_by_the_documented_rule(
    where: str, cluster: LocalCluster, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name, text in {"1": "old\n", "2": "old\n", "3": "old\n", "notes.txt": "mine\n"}.items():
        (out / name).write_text(text)

    def env() -> StreamEnvironment:
        if where == "in process":
            return StreamEnvironment(parallelism=2)
        return StreamEnvironment(cluster, parallelism=2)

    first = env()
    first.from_collection(["x", "y"]).write_text(out)  # an existing directory, no slash
    first.execute("overwrite").result(timeout=60)
    # Part files are this run's; an earlier run's extra part is gone; other files stay.
    assert _part_files(out) == {"1": "x\n", "2": "y\n", "notes.txt": "mine\n"}
    second = env()
    second.from_elements(["z"]).write_text(out).set_parallelism(1)  # into the same directory
    second.execute("again").result(timeout=60)
    assert _part_files(out) == {"1": "z\n", "notes.txt": "mine\n"}


def test_relative_paths_are_resolved_where_the_job_is_built(
    cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("words-relative.txt").write_text("one two\nthree\n")
    env = StreamEnvironment(cluster)
    lines = env.read_text("words-relative.txt")
    lines.flat_map(str.split).write_text("counted/")
    source, sink = env.job_graph.operators[0], env.job_graph.operators[-1]
    assert source.params["paths"] == (str(tmp_path / "words-relative.txt"),)
    assert sink.params["path"] == str(tmp_path / "counted")
    # The job's master and the workers run in another directory than this one.
    assert cluster.dispatcher is not None
    assert os.readlink(f"/proc/{cluster.dispatcher.pid}/cwd") != str(tmp_path)
    env.execute("relative").result(timeout=60)
    assert _part_files(tmp_path / "counted") == {"1": "one\ntwo\nthree\n"}


def test_submit_resolves_relative_paths_in_the_callers_directory(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    (tmp_path / "in.txt").write_text("3\n4\n")
    (tmp_path / "job.py").write_text(
        "def build(env):\n"
        "    env.read_text('in.txt').map(lambda s: int(s) * 10).write_text('out/')\n"
    )
    command = [sys.executable, "-m", "pydispatch.cli", "submit", cluster.address, "job.py"]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert _part_files(tmp_path / "out") == {"1": "30\n40\n"}


def test_a_worker_that_cannot_see_a_path_fails_the_job_at_once(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    data = tmp_path / "gone.txt"
    data.write_text("1\n2\n")
    env = StreamEnvironment(cluster)
    # A restart would take 5 s and could not help: the job must not wait for one.
    env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=5.0))
    env.read_text(data).for_each(lambda line: None)
    data.unlink()  # there when the job was built, not where (and when) it runs
    handle = env.execute("unseen")
    with pytest.raises(JobFailedError) as info:
        handle.result(timeout=60)
    message = str(info.value)
    assert f"cannot read {data}: no such file" in message
    assert "worker worker-0" in message or "worker worker-1" in message
    assert handle.metrics()["restarts"] == 0


def test_a_sink_whose_directory_is_missing_on_the_worker_fails_at_once(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    env = StreamEnvironment(cluster)
    env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=5.0))
    target = tmp_path / "no-such-dir" / "out.txt"
    env.from_elements([1]).write_text(target)
    handle = env.execute("unwritable")
    with pytest.raises(JobFailedError, match=f"cannot write {target}: no directory"):
        handle.result(timeout=60)
    assert handle.metrics()["restarts"] == 0
