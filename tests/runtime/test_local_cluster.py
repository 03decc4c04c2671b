"""LocalCluster's own life: a cluster or an embedded environment never closed is ended at
interpreter exit, quietly; close() ends every process (workers, their slots, the dispatcher,
its job launcher and masters) by pid and removes every file; a client asked for before start()
says so. Real processes throughout; the scripts run in subprocesses, as a user's would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _support.clusters import make_cluster
from _support.process_guard import children, eventually, slot_state_path
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import StreamEnvironment


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for child in children(pid):
        found += [child, *_descendants(child)]
    return found


def _run_script(code: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line of what it started."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, json.loads(result.stdout.splitlines()[-1])


# Every pid the cluster started, down to the slot processes, and its temporary directory.
_REPORT = """
import json, os
def descendants(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in map(int, f.read().split()):
                out += [child, *descendants(child)]
    return out
def report(cluster, **more):
    print(json.dumps({"pids": descendants(os.getpid()), "tmpdir": cluster._tmpdir, **more}))
"""


def _ended_quietly(result: subprocess.CompletedProcess[str], report: dict[str, object]) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no traceback, no warning from a process left to notice
    pids = report["pids"]
    assert isinstance(pids, list)
    assert len(pids) >= 5  # dispatcher, 2 workers, their 2 slots
    eventually(lambda: not any(_alive(pid) for pid in pids), "every process ended", timeout=5)
    assert not Path(str(report["tmpdir"])).exists()


def test_a_local_cluster_never_closed_is_ended_at_exit_quietly() -> None:
    result, report = _run_script(
        _REPORT
        + """
from pydispatch import LocalCluster
cluster = LocalCluster(workers=2)
cluster.start()
client = cluster.client()
assert client.submit(abs, -3).result() == 3
report(cluster)
"""
    )
    _ended_quietly(result, report)


def test_the_seed_example_never_closing_its_environment_exits_quietly() -> None:
    result, report = _run_script(
        _REPORT
        + """
from pydispatch.stream import StreamEnvironment
env = StreamEnvironment.local(workers=2)
assert env.from_elements([1, 2, 3, 4, 5]).map(lambda x: x + 1).collect() == [2, 3, 4, 5, 6]
report(env._owned)
"""
    )
    _ended_quietly(result, report)


def test_a_client_before_start_says_so_and_after_close_too() -> None:
    cluster = LocalCluster(workers=1)
    with pytest.raises(RuntimeError, match=r"not started.*cluster\.start\(\)"):
        cluster.client()
    cluster.close()
    with pytest.raises(RuntimeError, match="closed"):
        cluster.client()
    with pytest.raises(RuntimeError, match="closed"):
        cluster.start()
    assert not Path(cluster._tmpdir).exists()


def test_close_ends_every_process_by_pid_with_the_job_launcher_and_masters(
    tmp_path: Path,
) -> None:
    cluster = make_cluster(2, job_masters=True)
    with cluster:
        env = StreamEnvironment(cluster, parallelism=2)
        env.from_collection(list(range(100))).map(str).write_text(str(tmp_path / "out"))
        env.execute("kept")  # its master keeps the outcome: it is still there at close
        dispatcher = cluster.dispatcher
        assert dispatcher is not None
        started = _descendants(os.getpid())
        below_dispatcher = _descendants(dispatcher.pid)
        # The launcher and the job's master stay in the dispatcher's group: ended with it.
        assert below_dispatcher
        assert {os.getpgid(pid) for pid in below_dispatcher} == {dispatcher.pid}
        # Each worker leads the group of its slots, whose files are in the cluster's directory.
        for worker in cluster.workers:
            slots = children(worker.pid)
            assert slots
            assert {os.getpgid(pid) for pid in slots} == {worker.pid}
            for slot in slots:
                state_path = slot_state_path(slot)
                assert state_path.startswith(cluster._tmpdir + os.sep)
    assert dispatcher.returncode is not None  # reaped by close()
    assert all(worker.returncode is not None for worker in cluster.workers)
    eventually(lambda: not any(map(_alive, started)), "every process ended", timeout=5)
    assert not Path(cluster._tmpdir).exists()
