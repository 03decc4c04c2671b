"""Exactly once for a bounded, checkpointed keyed job killed at its end, with real processes:
one keyed subtask has finished (its final aggregates went to its two-phase sink) while the
other is still emitting its own, when the worker of the latter is killed (SIGKILL). The job
restores from its latest checkpoint and finishes; the committed output is every key's final
sum exactly once."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from _support.clusters import make_cluster
from _support.process_guard import children, eventually
from pydispatch.dataflow import checkpoints as ck
from pydispatch.dataflow.file_sink import committed_lines
from pydispatch.dataflow.routing import key_array, keyed_subtasks, max_parallelism
from pydispatch.dataflow.snapshots import load_snapshot, restore_part
from pydispatch.dataflow.subtask import SubtaskRunner
from pydispatch.plan import ExecutionGraph
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import FixedDelay, JobHandle, StreamEnvironment, TransactionalSink

SLOW = "slow"  # the key whose final sum waits for the gate, holding its subtask in its end
KEYS = [f"k{i}" for i in range(16)] + [SLOW]
RECORDS = [(KEYS[i % len(KEYS)], i) for i in range(1_700)]


def final_sums() -> dict[str, int]:
    sums: dict[str, int] = {}
    for key, value in RECORDS:
        sums[key] = sums.get(key, 0) + value
    return sums


def reference() -> list[str]:
    """The committed output expected: each key's final sum, once."""
    return sorted(str(item) for item in final_sums().items())


def owners(env: StreamEnvironment) -> dict[str, int]:
    """Which keyed subtask owns each key (the job's own routing)."""
    plan = env.execution_graph()
    [edge] = [e for e in plan.job.edges if e.key is not None]
    target = plan.job.operator(edge.target)
    scheme = edge.key.scheme
    ids = keyed_subtasks(key_array(KEYS, scheme), scheme, 2, max_parallelism(target))
    return dict(zip(KEYS, ids.tolist(), strict=True))


def all_lines(directory: Path) -> list[str]:
    """Lines in every file of a two-phase sink's directory, committed or in progress."""
    out: list[str] = []
    for name in os.listdir(directory) if directory.exists() else []:
        with open(directory / name, encoding="utf-8") as f:
            out.extend(line.rstrip("\n") for line in f)
    return out


def worker_of(cluster: LocalCluster, slot_pid: int) -> Any:
    [worker] = [w for w in cluster.workers if w.poll() is None and slot_pid in children(w.pid)]
    return worker


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # ended, not reaped yet
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_a_kill_after_one_keyed_subtask_finished_commits_each_final_sum_once(
    tmp_path: Path,
) -> None:
    out, gate, pid_file = tmp_path / "out", tmp_path / "gate", tmp_path / "slow.pid"
    with make_cluster(3, 1) as cluster:
        env = StreamEnvironment(cluster, parallelism=2)
        env.set_network(batch_records=20)
        env.enable_checkpointing(0.2, storage=str(tmp_path / "chk"), timeout=60.0)
        env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=0.2))

        def paced(record: Any) -> Any:
            time.sleep(0.002)  # the input lasts a few checkpoints
            return record

        def held(record: Any) -> Any:
            # Batch mode: the sums arrive here at the end of the input only.
            if record[0] == SLOW and not gate.exists():
                pid_file.write_text(str(os.getpid()))
                while not gate.exists():
                    time.sleep(0.01)
            return record

        summed = env.from_collection(RECORDS).map(paced).key_by(lambda r: r[0]).sum(1)
        summed.map(held).write_text(str(out))
        assert env.execution_graph().runtime_mode == "batch"
        owned = owners(env)
        fast = [k for k in KEYS if owned[k] != owned[SLOW]]
        assert fast, "every key on one subtask"
        handle = env.execute("bounded kill")
        assert isinstance(handle, JobHandle)
        eventually(lambda: pid_file.exists(), "the slow subtask at its end", timeout=60)
        assert handle.metrics()["checkpoints"]["completed"] >= 1  # while the input lasted
        wanted = {str((k, v)) for k, v in final_sums().items() if k in fast}

        def fast_one_done() -> bool:
            return wanted <= set(all_lines(out))

        eventually(fast_one_done, "the other subtask's final sums in its sink", timeout=60)
        slot = int(pid_file.read_text())
        os.kill(worker_of(cluster, slot).pid, signal.SIGKILL)
        cluster.start_worker(name="replacement")
        eventually(lambda: gone(slot), "the killed worker's slot ended with it", timeout=30)
        gate.touch()  # (the restarted subtask goes through)
        handle.result(timeout=120)
        assert handle.metrics()["restarts"] >= 1
        assert sorted(committed_lines(str(out))) == reference()


class GatedFiles(TransactionalSink):
    """A user's transactional sink: a file per transaction, renamed on commit; subtask
    ``held``'s commits wait for the ``gate`` file (writing the slot's pid to ``pid_file``)."""

    def __init__(self, directory: Path, held: int, gate: Path, pid_file: Path) -> None:
        self.directory, self.held, self.gate, self.pid_file = directory, held, gate, pid_file

    def begin(self, subtask: int, parallelism: int, checkpoint: int) -> Any:
        self.directory.mkdir(exist_ok=True)
        name = f"part-{subtask}-{checkpoint:09d}"
        return subtask, str(self.directory / f".{name}.inprogress"), str(self.directory / name)

    def write(self, transaction: Any, records: list[Any]) -> None:
        with open(transaction[1], "a", encoding="utf-8") as f:
            f.writelines(f"{r}\n" for r in records)

    def pre_commit(self, transaction: Any) -> None:
        pass  # (each write closed its file)

    def commit(self, transaction: Any) -> None:
        if transaction[0] == self.held and not self.gate.exists():
            self.pid_file.write_text(str(os.getpid()))
            while not self.gate.exists():
                time.sleep(0.01)
        with contextlib.suppress(FileNotFoundError):  # committed already: idempotent
            os.replace(transaction[1], transaction[2])

    def abort(self, transaction: Any) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(transaction[1])

    def recover(self, subtask: int, parallelism: int, transactions: Sequence[Any]) -> None:
        for transaction in transactions:
            self.commit(transaction)
        keep = {t[1] for t in transactions}
        for name in os.listdir(self.directory) if self.directory.exists() else []:
            path = str(self.directory / name)
            if name.startswith(f".part-{subtask}-") and path not in keep:
                os.remove(path)


@pytest.mark.slow
def test_a_kill_while_a_final_transaction_commits_leaves_each_final_sum_once(
    tmp_path: Path,
) -> None:
    """The checkpoint holding every subtask's final state has completed; subtask 0's sink
    committed, subtask 1's is still committing when its worker is killed. The job restores
    that checkpoint: its transactions are committed (again, idempotently) and the keyed
    subtasks, finished in it, emit nothing twice."""
    out, gate, pid_file = tmp_path / "out", tmp_path / "gate", tmp_path / "held.pid"
    with make_cluster(3, 1) as cluster:
        env = StreamEnvironment(cluster, parallelism=2)
        env.enable_checkpointing(0.2, storage=str(tmp_path / "chk"), timeout=60.0)
        env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=0.2))
        summed = env.from_collection(RECORDS).key_by(lambda r: r[0]).sum(1)
        summed.sink_to(GatedFiles(out, 1, gate, pid_file))
        owned = owners(env)
        handle = env.execute("commit kill")
        assert isinstance(handle, JobHandle)
        eventually(lambda: pid_file.exists(), "subtask 1's final commit under way", timeout=60)
        assert handle.metrics()["checkpoints"]["completed"] >= 1  # the final one
        wanted = {str((k, v)) for k, v in final_sums().items() if owned[k] == 0}
        eventually(lambda: wanted <= set(committed_lines(str(out))), "subtask 0 committed", 60)
        slot = int(pid_file.read_text())
        os.kill(worker_of(cluster, slot).pid, signal.SIGKILL)
        cluster.start_worker(name="replacement")
        eventually(lambda: gone(slot), "the killed worker's slot ended with it", timeout=30)
        gate.touch()
        handle.result(timeout=120)
        assert handle.metrics()["restarts"] >= 1
        assert sorted(committed_lines(str(out))) == reference()


def test_a_bounded_job_does_not_wait_an_interval_for_its_final_checkpoint(
    tmp_path: Path,
) -> None:
    """Every slice says its subtasks ended: the master triggers their final checkpoint at
    once, not one interval (a minute here) after the previous start."""
    out = tmp_path / "out"
    with make_cluster(2, 1) as cluster:
        env = StreamEnvironment(cluster, parallelism=2)
        env.enable_checkpointing(60.0, storage=str(tmp_path / "chk"))
        env.from_collection(RECORDS).key_by(lambda r: r[0]).sum(1).write_text(str(out))
        handle = env.execute("final at once")
        assert isinstance(handle, JobHandle)
        handle.result(timeout=40)  # (a liveness bound: the interval would be 60 s)
        assert handle.metrics()["checkpoints"]["completed"] == 1  # the final one
        assert sorted(committed_lines(str(out))) == reference()


# -- without processes: a subtask's end under checkpoints -------------------------------------


def _sum_into_files(out: Path) -> tuple[ExecutionGraph, int, int]:
    """A keyed sum (a reduce: no pre-aggregation before it) into a two-phase file sink: the
    plan, the chain of the sum and sink, the sum's operator id."""
    env = StreamEnvironment(parallelism=1)
    env.enable_checkpointing(1.0)
    keyed = env.from_collection(RECORDS).key_by(lambda r: r[0])
    keyed.reduce(lambda a, b: (a[0], a[1] + b[1])).write_text(str(out))
    plan = env.execution_graph()
    [chain] = [c for c in plan.chains if plan.job.operator(c.operators[0]).kind == "aggregate"]
    return plan, chain.id, chain.operators[0]


def _runner(plan: ExecutionGraph, chain: int, next_checkpoint: int) -> SubtaskRunner:
    def unused(*_: Any) -> None:
        raise AssertionError("the sum's chain sends nothing")

    return SubtaskRunner(plan, chain, 0, unused, unused, checkpointing=True,
                         next_checkpoint=next_checkpoint)  # fmt: skip


def test_a_finished_sink_commits_with_the_checkpoint_after_its_end_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan, chain, total = _sum_into_files(out)
    runner = _runner(plan, chain, 1)
    runner.push(total, RECORDS[:900])
    half = load_snapshot(runner.snapshot(1))  # a checkpoint while the input lasts
    assert half.keyed
    runner.checkpoint_complete(1)
    runner.push(total, RECORDS[900:])
    runner.finish()  # the final sums are written...
    assert committed_lines(str(out)) == []  # ...but not committed at the end of input
    final = load_snapshot(runner.snapshot(2, final=True))
    assert final.keyed == {}  # emitted already: a restore must not emit them again
    assert final.transactions  # the last transaction, pre-committed in this checkpoint
    runner.checkpoint_complete(2)
    assert sorted(committed_lines(str(out))) == reference()
    # Restored from that final checkpoint (a slice killed before it committed): the sink
    # commits the checkpoint's transactions again, idempotently, and nothing is re-emitted.
    again = _runner(plan, chain, 3)
    again.restore(restore_part(plan, chain, 0, [final], 2))
    again.finish()
    again.checkpoint_complete(3)
    assert sorted(committed_lines(str(out))) == reference()


def test_a_restore_from_before_the_end_writes_the_final_sums_once(tmp_path: Path) -> None:
    """Killed after its end, before a checkpoint covered it: the replay from the checkpoint
    before writes the final sums again, and the first run's never become visible."""
    out = tmp_path / "out"
    plan, chain, total = _sum_into_files(out)
    runner = _runner(plan, chain, 1)
    runner.push(total, RECORDS[:900])
    half = load_snapshot(runner.snapshot(1))
    runner.checkpoint_complete(1)
    runner.push(total, RECORDS[900:])
    runner.finish()  # (and the slice is killed here)
    assert [n for n in os.listdir(out) if n.endswith(".inprogress")]
    replay = _runner(plan, chain, 2)
    replay.restore(restore_part(plan, chain, 0, [half], 1))
    replay.push(total, RECORDS[900:])
    replay.finish()
    replay.snapshot(2, final=True)
    replay.checkpoint_complete(2)
    assert sorted(committed_lines(str(out))) == reference()
    assert not [n for n in os.listdir(out) if n.endswith(".inprogress")]


def test_the_final_checkpoint_goes_without_waiting_for_the_interval() -> None:
    config = ck.CheckpointConfig(interval=10.0, timeout=5.0, min_pause=0.5)
    c = ck.CheckpointCoordinator(config, subtasks=1)
    c.running(0.0)
    assert c.tick(10.0) == [ck.Trigger(1)]
    [done] = c.acknowledged(1, 0, b"", 11.0)
    assert isinstance(done, ck.Complete)
    c.finishing()  # every subtask ended: their final checkpoint is wanted now
    assert c.tick(11.2) == []  # min_pause still holds
    assert c.tick(11.5) == [ck.Trigger(2)]  # not at 20.0
    c.acknowledged(2, 0, b"", 11.6)
    assert c.tick(12.0) == []  # then the interval again
    assert c.tick(21.5) == [ck.Trigger(3)]
