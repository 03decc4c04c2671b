"""Checkpoints on a real cluster: exactly-once output through kills of workers, back-pressure,
timeouts, a corrupt checkpoint, savepoints restored at another parallelism."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest

from _support.clusters import make_cluster
from _support.process_guard import eventually
from pydispatch.dataflow.file_sink import committed_lines
from pydispatch.dataflow.handle import JobRefusedError
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import FixedDelay, JobHandle, SplitSource, StreamEnvironment
from pydispatch.stream.functions import KeyedProcessFunction, RuntimeContext
from pydispatch.stream.state import MapStateDescriptor

KEYS = 17


def key_of(split: int, i: int) -> str:
    return f"k{(i * 7 + split) % KEYS}"


class Paced(SplitSource):
    """``per_split`` records ``(key, 1)`` in each of ``splits`` splits, ``pace`` seconds
    every 20 records; then (unbounded) nothing, for ever, or (bounded) the end. With a
    ``gate`` file path: records past the middle wait until the file exists."""

    def __init__(
        self, per_split: int, splits: int, pace: float, bounded: bool, gate: str = ""
    ) -> None:
        self.per_split = per_split
        self.n = splits
        self.pace = pace
        self.bounded = bounded
        self.gate = gate

    def splits(self) -> list[int]:
        return list(range(self.n))

    def read(self, split: int, position: Any) -> Iterator[Any]:
        i = position or 0
        while i < self.per_split:
            if self.gate and i >= self.per_split // 2 and not os.path.exists(self.gate):
                time.sleep(0.02)
                yield None
                continue
            yield (key_of(split, i), 1), i + 1
            i += 1
            if i % 20 == 0:
                time.sleep(self.pace)
        while not self.bounded:
            time.sleep(0.05)
            yield None


def running_counts(per_split: int, splits: int) -> list[str]:
    """The reference: each key's running count 1..n exactly once."""
    totals = Counter(key_of(s, i) for s in range(splits) for i in range(per_split))
    return sorted(str((k, c)) for k, n in totals.items() for c in range(1, n + 1))


def final_counts(per_split: int, splits: int) -> list[tuple[str, int]]:
    totals = Counter(key_of(s, i) for s in range(splits) for i in range(per_split))
    return sorted(totals.items())


def checkpointing_env(
    cluster: LocalCluster, tmp_path: Path, parallelism: int = 2, **config: Any
) -> StreamEnvironment:
    env = StreamEnvironment(cluster, parallelism=parallelism)
    env.enable_checkpointing(config.pop("interval", 0.5), storage=str(tmp_path / "chk"), **config)
    env.set_restart_strategy(lambda: FixedDelay(attempts=100, delay=0.2))
    return env


def figures(handle: JobHandle) -> dict[str, Any]:
    checkpoints: dict[str, Any] = handle.metrics()["checkpoints"]
    return checkpoints


def kill_workers(
    cluster: LocalCluster, rng: random.Random, seconds: float, outs: list[Path]
) -> None:
    """SIGKILL a random worker every 2.5 s for ``seconds``, starting a new one each time;
    meanwhile no committed line of ``outs`` may be visible twice."""
    started = time.monotonic()
    kills = 0
    while time.monotonic() - started < seconds:
        time.sleep(2.5)
        alive = [w for w in cluster.workers if w.poll() is None]
        os.kill(rng.choice(alive).pid, signal.SIGKILL)
        kills += 1
        cluster.start_worker(name=f"replacement-{kills}")
        for out in outs:
            lines = committed_lines(str(out)) if out.exists() else []
            assert len(lines) == len(set(lines)), "a committed record is visible twice"


@pytest.mark.slow
def test_exactly_once_through_kills_of_random_workers(tmp_path: Path) -> None:
    """An unbounded keyed running count over a positioned source into the two-phase file
    sink; a random worker killed (SIGKILL) every 2.5 s for 12 s, a new one started: the
    committed output equals the reference, no record lost, none twice."""
    per_split, splits = 2500, 2
    out = tmp_path / "out"
    rng = random.Random(17)
    with make_cluster(3, 1) as cluster:
        env = checkpointing_env(cluster, tmp_path)
        source = Paced(per_split, splits, pace=0.08, bounded=False)
        env.from_source(source).key_by(lambda r: r[0]).sum(1).write_text(str(out))
        handle = env.execute("kills")
        assert isinstance(handle, JobHandle)
        eventually(lambda: figures(handle)["completed"] >= 1, "a first checkpoint")
        kill_workers(cluster, rng, 12.0, [out])
        reference = running_counts(per_split, splits)

        def caught_up() -> bool:
            return out.exists() and len(committed_lines(str(out))) >= len(reference)

        eventually(caught_up, "the committed output caught up", timeout=90)
        assert sorted(committed_lines(str(out))) == reference
        assert handle.metrics()["restarts"] >= 1
        assert figures(handle)["restored_from"]  # a restart restored a checkpoint
        handle.cancel()


@pytest.mark.slow
def test_a_checkpoint_under_back_pressure_completes(tmp_path: Path) -> None:
    """A slow sink (a map sleeping per record, one credit per channel): barriers queue behind
    the data, and checkpoints still complete."""

    def slow(record: Any) -> Any:
        time.sleep(0.002)
        return record

    with make_cluster(2, 1) as cluster:
        env = checkpointing_env(cluster, tmp_path, interval=0.3)
        env.set_network(credits=1, batch_records=50)
        source = Paced(10**6, 2, pace=0.0, bounded=False)
        env.from_source(source).key_by(lambda r: r[0]).map(slow).write_text(str(tmp_path / "o"))
        handle = env.execute("slow sink")
        assert isinstance(handle, JobHandle)
        eventually(lambda: figures(handle)["completed"] >= 2, "checkpoints completed", 60)
        backpressured = sum(handle.metrics()["backpressured_seconds"].values())
        assert backpressured > 0
        last = figures(handle)
        assert last["last_size"] > 0
        assert last["last_duration"] > 0
        assert committed_lines(str(tmp_path / "o"))  # committed as checkpoints complete
        handle.cancel()


@pytest.mark.slow
def test_a_checkpoint_that_times_out_is_aborted_and_the_next_succeeds(tmp_path: Path) -> None:
    marker = tmp_path / "stalled"

    def stall_once(record: Any) -> Any:
        if record[0] == "k3" and not marker.exists():
            marker.write_text("")
            time.sleep(3.0)  # longer than the checkpoint timeout
        return record

    with make_cluster(2, 1, heartbeat_timeout=3.0) as cluster:  # no restart under load
        env = checkpointing_env(cluster, tmp_path, interval=0.2, timeout=1.0)
        env.from_source(Paced(10**6, 1, pace=0.01, bounded=False)).map(stall_once).key_by(
            lambda r: r[0]
        ).sum(1).write_text(str(tmp_path / "o"))
        handle = env.execute("timeout")
        assert isinstance(handle, JobHandle)
        eventually(lambda: figures(handle)["aborted"] >= 1, "a checkpoint aborted", 60)
        after_abort = figures(handle)["completed"]
        eventually(lambda: figures(handle)["completed"] > after_abort, "the next completed", 60)
        assert handle.metrics()["restarts"] == 0
        handle.cancel()


@pytest.mark.slow
def test_a_corrupt_checkpoint_is_skipped_for_the_previous_one(tmp_path: Path) -> None:
    """A slice's worker killed, then the newest checkpoint's state damaged before the loss is
    noticed: the job restores the one before it and its collected result is still exact."""
    per_split, splits = 3000, 2
    # Two workers of one slot for two slices: the worker killed runs one of them. A slower
    # heartbeat than FAST, so that a loaded machine does not remove the other one too.
    with make_cluster(2, 1, heartbeat_timeout=3.0) as cluster:
        env = checkpointing_env(cluster, tmp_path, interval=1.0, retained=3)
        source = Paced(per_split, splits, pace=0.1, bounded=True)
        sink = env.from_source(source).key_by(lambda r: r[0]).sum(1)
        sink_id = sink._sink("Collect", {"sink": "collect", "columnar": False}).id
        handle = env.execute("corrupt")
        assert isinstance(handle, JobHandle)
        eventually(lambda: figures(handle)["completed"] >= 2, "two checkpoints", 60)
        os.kill(cluster.workers[0].pid, signal.SIGKILL)  # one slice lost: the job restores
        cluster.start_worker(name="replacement")
        # No checkpoint completes without the lost slice's acks; the restore waits for the
        # loss to be noticed (3 s): damage the newest checkpoint now.
        time.sleep(0.3)  # (a write under way when the worker died lands first)
        job_dir = next((tmp_path / "chk").iterdir())
        done = [p for p in job_dir.iterdir() if (p / "_metadata").exists()]
        latest = max(int(p.name.split("-")[1]) for p in done)
        state = job_dir / f"chk-{latest}" / "state"
        data = bytearray(state.read_bytes())
        data[len(data) // 2] ^= 0xFF
        state.write_bytes(bytes(data))
        result = handle.result(timeout=120)
        restored = figures(handle)["restored_from"]
        assert restored
        assert not restored.endswith(f"chk-{latest}")
        assert int(restored.rsplit("-", 1)[1]) < latest
        # Bounded: batch mode, one final count per key; nothing lost or twice.
        assert sorted(result.collected[sink_id]) == final_counts(per_split, splits)


@pytest.mark.slow
def test_a_savepoint_at_parallelism_2_restores_at_3_and_1_with_identical_results(
    tmp_path: Path,
) -> None:
    per_split, splits = 400, 4
    gate = tmp_path / "gate"
    source = Paced(per_split, splits, pace=0.01, bounded=True, gate=str(gate))
    reference = final_counts(per_split, splits)  # bounded: batch mode, final counts
    with make_cluster(3, 1, heartbeat_timeout=3.0) as cluster:
        env = checkpointing_env(cluster, tmp_path, parallelism=2)
        stream = env.from_source(source).key_by(lambda r: r[0]).sum(1)
        stream._sink("Collect", {"sink": "collect", "columnar": False})
        handle = env.execute("before")
        assert isinstance(handle, JobHandle)
        # Half of each split read (the rest waits for the gate), then a savepoint and stop.
        eventually(
            lambda: handle.metrics()["records_out"].get(0, 0) >= splits * per_split // 2,
            "half of the input read",
            60,
        )
        where = handle.savepoint(tmp_path / "sp", stop=True)
        with pytest.raises(CancelledError):
            handle.result(timeout=60)
        gate.write_text("")
        nowhere = checkpointing_env(cluster, tmp_path / "nowhere")
        nowhere.from_source(source).key_by(lambda r: r[0]).sum(1).for_each(print)
        with pytest.raises((ValueError, JobRefusedError), match="_metadata"):
            nowhere.execute("no savepoint", from_savepoint=str(tmp_path / "nothing"))
        for parallelism in (3, 1):
            again = checkpointing_env(cluster, tmp_path / f"p{parallelism}", parallelism)
            restored = again.from_source(source).key_by(lambda r: r[0]).sum(1)
            sink = restored._sink("Collect", {"sink": "collect", "columnar": False}).id
            resumed = again.execute(f"at {parallelism}", from_savepoint=where)
            assert isinstance(resumed, JobHandle)
            result = resumed.result(timeout=120)
            assert sorted(result.collected[sink]) == reference
            assert figures(resumed)["restored_from"] == where


@pytest.mark.slow
def test_a_restarted_dispatcher_resumes_the_job_from_its_latest_checkpoint(
    tmp_path: Path,
) -> None:
    """The dispatcher killed (SIGKILL) and started again on its store: the job's new master
    finds the job's checkpoints and resumes from the latest; the committed output is exact."""
    per_split, splits = 1500, 2
    out = tmp_path / "out"
    with make_cluster(2, 2) as cluster:
        env = checkpointing_env(cluster, tmp_path)
        source = Paced(per_split, splits, pace=0.05, bounded=False)
        env.from_source(source).key_by(lambda r: r[0]).sum(1).write_text(str(out))
        handle = env.execute("durable")
        assert isinstance(handle, JobHandle)
        eventually(lambda: figures(handle)["completed"] >= 1, "a first checkpoint")
        cluster.restart_dispatcher()
        reference = running_counts(per_split, splits)

        def caught_up() -> bool:
            return out.exists() and len(committed_lines(str(out))) >= len(reference)

        eventually(caught_up, "the committed output caught up", timeout=90)
        assert sorted(committed_lines(str(out))) == reference
        restored = figures(handle)["restored_from"]  # the new master's figures
        assert os.path.basename(restored).startswith("chk-")
        handle.cancel()


class Stamped(SplitSource):
    """Paced records ``(key, event time, 1)``, event time ascending per split, then idle."""

    bounded = False

    def __init__(self, per_split: int) -> None:
        self.per_split = per_split

    def splits(self) -> list[int]:
        return [0, 1]

    def read(self, split: int, position: Any) -> Iterator[Any]:
        i = position or 0
        while i < self.per_split:
            yield (key_of(split, i), i, 1), i + 1
            i += 1
            if i % 20 == 0:
                time.sleep(0.08)
        while True:
            time.sleep(0.05)
            yield None


class WindowByTimers(KeyedProcessFunction):
    """Tumbling event-time sums kept in map state, emitted by event-time timers."""

    def __init__(self, size: int) -> None:
        self.size = size

    def open(self, runtime_context: RuntimeContext) -> None:
        self.sums = runtime_context.get_map_state(MapStateDescriptor("sums"))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> None:
        start = value[1] - value[1] % self.size
        self.sums.put(start, (self.sums.get(start) or 0) + value[2])
        ctx.timer_service().register_event_time_timer(start + self.size)

    def on_timer(self, timestamp: Any, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        start = timestamp - self.size
        yield ctx.get_current_key(), start, self.sums.get(start)
        self.sums.remove(start)


@pytest.mark.slow
def test_event_time_windows_and_timers_exactly_once_through_kills(tmp_path: Path) -> None:
    """The same with an event-time window and a process function's event-time timers: the
    windows the final watermark (2049) closes (ends up to 2000), each exactly once, in both
    outputs."""
    per_split, size = 2050, 100
    windows, timers = tmp_path / "windows", tmp_path / "timers"
    with make_cluster(3, 1) as cluster:
        env = checkpointing_env(cluster, tmp_path)
        keyed = env.from_source(Stamped(per_split)).key_by(lambda r: r[0])
        keyed.time_window(size, timestamp=1).sum(2).write_text(str(windows))
        keyed.process(WindowByTimers(size), timestamp=1).write_text(str(timers))
        handle = env.execute("windows")
        assert isinstance(handle, JobHandle)
        eventually(lambda: figures(handle)["completed"] >= 1, "a first checkpoint")
        kill_workers(cluster, random.Random(5), 10.0, [windows, timers])
        sums = Counter((key_of(s, i), i - i % size) for s in range(2) for i in range(per_split))
        reference = sorted(
            str((k, start, n)) for (k, start), n in sums.items() if start + size <= per_split - 1
        )
        for out in (windows, timers):
            eventually(
                lambda out=out: out.exists() and len(committed_lines(str(out))) >= len(reference),
                f"{out.name} caught up",
                timeout=90,
            )
            assert sorted(committed_lines(str(out))) == reference
        assert handle.metrics()["restarts"] >= 1
        handle.cancel()


CLI_JOB = """
import os, time
from pydispatch.stream import SplitSource

GATE = {gate!r}

class Paced(SplitSource):
    def splits(self):
        return [0, 1, 2, 3]

    def read(self, split, position):
        i = position or 0
        while i < 300:
            if i >= 150 and not os.path.exists(GATE):
                time.sleep(0.02)
                yield None
                continue
            yield (f"k{{(i * 7 + split) % 17}}", 1), i + 1
            i += 1

def build(env):
    env.enable_checkpointing(0.5)
    return env.from_source(Paced()).key_by(lambda r: r[0]).sum(1)
"""


def _cli(*args: str) -> Any:
    import subprocess
    import sys

    command = [sys.executable, "-m", "pydispatch.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_savepoint_and_submit_from_it_on_the_command_line(tmp_path: Path) -> None:
    """``pydispatch savepoint ADDRESS JOB --stop`` then ``pydispatch submit ADDRESS job.py
    --from-savepoint PATH --parallelism 3``: the records printed are the uninterrupted run's."""
    gate = tmp_path / "gate"
    job = tmp_path / "job.py"
    job.write_text(CLI_JOB.format(gate=str(gate)))
    savepoint = tmp_path / "sp"
    with make_cluster(3, 1) as cluster:
        submitted = _cli("submit", cluster.address, str(job), "--detach", "--parallelism", "2")
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        handle = JobHandle.attach(cluster.address, job_id)
        eventually(lambda: handle.metrics()["records_out"].get(0, 0) >= 4 * 150, "half read", 60)
        taken = _cli("savepoint", cluster.address, job_id, "--path", str(savepoint), "--stop")
        assert taken.returncode == 0, taken.stderr
        assert taken.stdout.strip() == str(savepoint)
        assert (savepoint / "_metadata").is_file()
        gate.write_text("")
        again = _cli(
            "submit", cluster.address, str(job), "--from-savepoint", str(savepoint),
            "--parallelism", "3", "--progress-every", "0",
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
    printed = sorted(line for line in again.stdout.splitlines() if line.startswith("("))
    assert printed == [str(kv) for kv in final_counts(300, 4)]


@pytest.mark.slow
def test_a_monitored_directory_is_read_exactly_once_through_a_kill(tmp_path: Path) -> None:
    """``read_text(directory, monitor=...)``: files added and appended to while the job runs,
    a worker killed half way; every line is committed once."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    expected = []
    with make_cluster(2, 1, heartbeat_timeout=3.0) as cluster:  # both run a slice
        env = checkpointing_env(cluster, tmp_path, interval=0.3)
        env.read_text(inbox, monitor=0.1).map(lambda line: f"seen {line}").write_text(str(out))
        handle = env.execute("monitored")
        assert isinstance(handle, JobHandle)
        for n in range(8):
            lines = [f"{n}-{i}" for i in range(300)]
            expected += [f"seen {line}" for line in lines]
            (inbox / f"part-{n}.txt").write_text("\n".join(lines[:200]) + "\n")
            with open(inbox / f"part-{n}.txt", "a") as f:  # appended: read on from its offset
                f.write("\n".join(lines[200:]) + "\n")
            time.sleep(0.4)
            if n == 4:
                os.kill(cluster.workers[0].pid, signal.SIGKILL)
                cluster.start_worker(name="replacement")

        def caught_up() -> bool:
            return out.exists() and len(committed_lines(str(out))) >= len(expected)

        eventually(caught_up, "every line committed", timeout=90)
        assert sorted(committed_lines(str(out))) == sorted(expected)
        assert handle.metrics()["restarts"] >= 1
        handle.cancel()
