"""The dispatcher killed (SIGKILL) and started again on the same address, with real processes:
clients own their tasks and send every unresolved one again under its id; slots that outlived
the old dispatcher report what they ran, and those outcomes still resolve their tasks.
Execution is at least once: the re-executed items are counted and reported."""

from __future__ import annotations

import collections
import os
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from _support.clusters import make_cluster
from _support.process_guard import eventually

ITEMS = 10_000


def record_square(log_path: str, x: int) -> int:
    # One write with O_APPEND per execution: lines from several slots never interleave.
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, b"%d\n" % x)
    finally:
        os.close(fd)
    time.sleep(0.0003)
    return x * x


def executions(log_path: Path) -> collections.Counter[int]:
    return collections.Counter(int(line) for line in log_path.read_text().split())


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_map_every_item_right_each_future_once(tmp_path: Path) -> None:
    log_path = tmp_path / "executions"
    with make_cluster(2, 2) as cluster:
        client = cluster.client()
        # Futures of their own, beside the map: each must resolve exactly once.
        resolutions: collections.Counter[int] = collections.Counter()

        def count(future: Future[int]) -> None:
            resolutions[id(future)] += 1

        singles = [client.submit(record_square, str(tmp_path / "singles"), -i) for i in range(50)]
        for future in singles:
            future.add_done_callback(count)
        results = client.map(lambda x: record_square(str(log_path), x), range(ITEMS), chunksize=50)
        got = []
        killed_at = None
        for value in results:
            got.append(value)
            if len(got) == ITEMS // 4 and killed_at is None:
                killed_at = len(got)
                cluster.restart_dispatcher()  # SIGKILL, then a new one on the same address
        assert killed_at == ITEMS // 4
        assert got == [x * x for x in range(ITEMS)]
        assert [f.result(timeout=60) for f in singles] == [i * i for i in range(50)]
        eventually(lambda: len(resolutions) == len(singles), "every done callback ran")
        assert set(resolutions.values()) == {1}
        ran = executions(log_path)
        assert set(ran) == set(range(ITEMS))  # every item ran at least once
        re_executed = sum(n - 1 for n in ran.values())
        print(f"\nre-executed items: {re_executed} of {ITEMS} (chunks of 50)")
        # The client and the workers are on the new dispatcher: new work runs.
        assert client.submit(pow, 3, 2).result(timeout=30) == 9
        assert len(client.status().workers) == 2


def test_a_task_running_across_the_restart_resolves_from_its_slot(tmp_path: Path) -> None:
    # The slot running it outlives the dispatcher: its outcome names the task, and the task
    # resubmitted by its client resolves with it (run once or twice: at least once).
    with make_cluster(1, 1) as cluster:
        client = cluster.client()
        gate = tmp_path / "gate"
        stuck = client.submit(wait_for_file, str(gate), str(tmp_path / "runs"))
        eventually(stuck.running, "the task started")
        eventually(lambda: (tmp_path / "runs").exists(), "the task runs on its slot")
        cluster.restart_dispatcher()
        cluster.wait_for_workers(1)
        gate.touch()
        assert stuck.result(timeout=30) == "opened"
        assert client.submit(pow, 2, 5).result(timeout=30) == 32


def wait_for_file(path: str, runs: str) -> str:
    with open(runs, "a") as f:
        f.write("run\n")
    while not os.path.exists(path):
        time.sleep(0.01)
    return "opened"
