"""Checkpoints without processes: the coordinator's state machine, checkpoint storage, barrier
alignment, sink transactions and the two-phase file sink, positioned sources."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pydispatch.dataflow import checkpoints as ck
from pydispatch.dataflow.barriers import Aligner, SinkTransactions
from pydispatch.dataflow.checkpoint_storage import (
    CheckpointStorage,
    CorruptCheckpointError,
    read_checkpoint,
)
from pydispatch.dataflow.file_sink import TwoPhaseFileSink, committed_lines
from pydispatch.dataflow.positions import PositionedReader
from pydispatch.stream import SplitSource, StreamEnvironment

# -- the coordinator -------------------------------------------------------------------------


def _coordinator(**config: Any) -> ck.CheckpointCoordinator:
    settings = {"interval": 1.0, "timeout": 5.0, **config}
    return ck.CheckpointCoordinator(ck.CheckpointConfig(**settings), subtasks=2)


def test_nothing_is_triggered_before_the_job_runs_nor_before_the_interval() -> None:
    c = _coordinator()
    assert c.tick(100.0) == []
    c.running(100.0)
    assert c.tick(100.5) == []
    assert c.tick(101.0) == [ck.Trigger(1)]
    assert c.tick(101.5) == []  # one pending at a time


def test_a_checkpoint_completes_when_every_subtask_acknowledged() -> None:
    c = _coordinator()
    c.running(0.0)
    c.tick(1.0)
    assert c.acknowledged(1, 0, b"a", 1.2) == []
    assert c.acknowledged(1, 0, b"a", 1.2) == []  # twice from one subtask: still one
    [done] = c.acknowledged(1, 1, b"b", 1.5)
    assert isinstance(done, ck.Complete)
    assert done.snapshots == {0: b"a", 1: b"b"}
    assert done.duration == pytest.approx(0.5)
    assert c.acknowledged(1, 1, b"late", 1.6) == []  # complete already
    c.tick(2.0)
    with pytest.raises(ValueError, match="no subtask 7"):
        c.acknowledged(2, 7, b"", 2.1)


def test_interval_counts_from_the_start_and_min_pause_from_the_end() -> None:
    c = _coordinator(interval=1.0, min_pause=0.8)
    c.running(0.0)
    c.tick(1.0)
    c.acknowledged(1, 0, b"", 1.9)
    c.acknowledged(1, 1, b"", 1.9)
    assert c.tick(2.0) == []  # the interval has passed, the pause has not
    assert c.tick(2.7) == [ck.Trigger(2)]


def test_a_checkpoint_that_times_out_is_aborted_and_the_next_one_succeeds() -> None:
    c = _coordinator(timeout=2.0)
    c.running(0.0)
    assert c.tick(1.0) == [ck.Trigger(1)]
    c.acknowledged(1, 0, b"", 1.1)
    out = c.tick(3.5)
    assert isinstance(out[0], ck.Abort)
    assert out[0].checkpoint == 1
    assert out[1:] == [ck.Trigger(2)]
    assert c.acknowledged(1, 1, b"", 3.6) == []  # the aborted one's late ack
    c.acknowledged(2, 0, b"", 3.7)
    [done] = c.acknowledged(2, 1, b"", 3.8)
    assert isinstance(done, ck.Complete)
    assert done.checkpoint == 2
    assert c.aborted == 1


def test_a_failure_aborts_the_pending_checkpoint_until_the_job_runs_again() -> None:
    c = _coordinator()
    c.running(0.0)
    c.tick(1.0)
    [abort] = c.reset(1.5)
    assert isinstance(abort, ck.Abort)
    assert c.tick(5.0) == []
    c.running(6.0)
    assert c.tick(7.0) == [ck.Trigger(2)]


def test_only_the_retained_checkpoints_are_kept() -> None:
    c = _coordinator(retained=2)
    assert c.stored(1) == []
    assert c.stored(2) == []
    assert c.stored(3) == [1]
    assert c.completed == [2, 3]
    assert c.count == 3


@pytest.mark.parametrize(
    ("outcome", "retain_on_cancellation", "discarded"),
    [
        ("FINISHED", False, True),
        ("FINISHED", True, True),
        ("CANCELED", False, True),
        ("CANCELED", True, False),
        ("FAILED", False, False),
        ("FAILED", True, False),
    ],
)
def test_an_ended_job_discards_or_keeps_its_checkpoints_as_flink_does(
    outcome: str, retain_on_cancellation: bool, discarded: bool
) -> None:
    c = _coordinator(retain_on_cancellation=retain_on_cancellation)
    c.running(0.0)
    assert c.tick(1.0) == [ck.Trigger(1)]  # pending when the job ends: aborted
    out = c.ended(outcome, 1.5)
    assert out[0] == ck.Abort(1, f"the job ended {outcome}")
    assert (ck.Discard(outcome) in out) is discarded
    assert c.ended(outcome, 2.0) == []  # once
    c.running(3.0)
    assert c.tick(10.0) == []  # nothing triggered after the end


def test_ended_refuses_a_state_that_is_not_final() -> None:
    with pytest.raises(ValueError, match="not a final state"):
        _coordinator().ended("RUNNING", 0.0)


def test_a_savepoint_goes_before_the_periodic_checkpoints() -> None:
    c = _coordinator(interval=100.0)
    c.running(0.0)
    c.request_savepoint("/tmp/sp")
    assert c.tick(0.1) == [ck.Trigger(1, "/tmp/sp")]
    c.acknowledged(1, 0, b"", 0.2)
    [done] = c.acknowledged(1, 1, b"", 0.3)
    assert isinstance(done, ck.Complete)
    assert done.savepoint == "/tmp/sp"


@pytest.mark.parametrize(
    "bad", [{"interval": 0}, {"timeout": -1}, {"min_pause": -1}, {"retained": 0}]
)
def test_bad_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=f"{next(iter(bad)).replace('_', '.')}"):
        ck.CheckpointConfig(**{"interval": 1.0, **bad})  # type: ignore[arg-type]


# -- storage ---------------------------------------------------------------------------------


def test_storage_keeps_checkpoints_and_skips_a_corrupt_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = CheckpointStorage(str(tmp_path), "job-1")
    assert storage.latest() is None
    storage.write(1, {0: b"one"}, {0: [[0], 0, 1]})
    size = storage.write(2, {0: b"two", 1: b"2"}, {0: [[0], 0, 2]})
    assert size > 0
    assert storage.completed() == [2, 1]
    latest = storage.latest()
    assert latest is not None
    assert latest.checkpoint == 2
    assert latest.snapshots[1] == b"2"
    with open(os.path.join(storage.directory, "chk-2", "state"), "r+b") as f:
        f.seek(3)
        f.write(b"X")
    with caplog.at_level(logging.WARNING):
        previous = storage.latest()
    assert previous is not None
    assert previous.checkpoint == 1
    assert "skipping corrupt checkpoint 2" in caplog.text
    with pytest.raises(CorruptCheckpointError, match="digest"):
        read_checkpoint(os.path.join(storage.directory, "chk-2"))
    # A checkpoint without its metadata (a crash while writing) is not complete.
    os.makedirs(os.path.join(storage.directory, "chk-3"))
    assert storage.completed() == [2, 1]
    assert storage.highest() == 3
    storage.remove(1)
    assert storage.completed() == [2]


def test_a_job_id_with_slashes_gets_a_safe_directory(tmp_path: Path) -> None:
    storage = CheckpointStorage(str(tmp_path), "/home/me/job.py-1-abc")
    storage.write(1, {0: b"x"}, {})
    [directory] = os.listdir(tmp_path)
    assert directory.startswith("_home_me_job.py-1-abc-")
    assert CheckpointStorage(str(tmp_path), "/home/me/job.py-1-abc").completed() == [1]
    assert CheckpointStorage(str(tmp_path), "_home_me_job.py-1-abc").completed() == []


def test_storage_at_an_fsspec_url() -> None:
    pytest.importorskip("fsspec")
    storage = CheckpointStorage("memory://pydispatch-test", "job-9")
    storage.write(4, {3: b"state"}, {3: [[1, 2], 0, 1]})
    latest = storage.latest()
    assert latest is not None
    assert latest.snapshots == {3: b"state"}
    assert latest.subtasks == {3: [[1, 2], 0, 1]}
    storage.write_savepoint("memory://pydispatch-test/sp", 4, {3: b"s"}, {})
    assert read_checkpoint("memory://pydispatch-test/sp").snapshots == {3: b"s"}


@pytest.mark.parametrize("url", [False, True], ids=["directory", "fsspec memory://"])
def test_discarding_removes_every_checkpoint_but_not_a_savepoint_inside(
    tmp_path: Path, url: bool
) -> None:
    if url:
        pytest.importorskip("fsspec")
    root = "memory://pydispatch-discard" if url else str(tmp_path)
    storage = CheckpointStorage(root, "job-2")
    storage.write(1, {0: b"one"}, {})
    storage.write(2, {0: b"two"}, {})
    assert storage.discard_all() == 2
    assert storage.completed() == []
    assert storage.highest() == 0
    if not url:
        assert os.listdir(tmp_path) == []  # no directory of the job left behind
    else:
        import fsspec

        assert not fsspec.filesystem("memory").exists("/pydispatch-discard/job-2")
    # A savepoint the user wrote under the job's directory is the user's: it stays.
    storage.write(3, {0: b"three"}, {})
    inside = f"{storage.directory}/my-savepoint"
    storage.write_savepoint(inside, 3, {0: b"three"}, {})
    assert storage.discard_all() == 1
    assert read_checkpoint(inside).snapshots == {0: b"three"}


def test_a_url_without_fsspec_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "fsspec.core", None)
    with pytest.raises(ValueError, match="fsspec extra"):
        CheckpointStorage("s3://bucket/chk", "job")


# -- alignment and transactions --------------------------------------------------------------


def test_alignment_holds_channels_until_every_barrier_came() -> None:
    a = Aligner(3)
    assert a.barrier("x", 1) is None
    assert a.holds("x")
    assert not a.holds("y")
    a.hold("x", "after x's barrier")
    assert a.end("z") is None  # an ended channel counts as aligned
    assert a.barrier("y", 1) == 1
    assert not a.holds("x")
    assert list(a.release()) == [("x", "after x's barrier")]


def test_sink_transactions_commit_what_a_complete_checkpoint_covers(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    sinks = SinkTransactions({7: TwoPhaseFileSink(out)}, 0, 1, next_id=1)
    sinks.write(7, ["a", "b"])
    pending = sinks.pre_commit(1)
    sinks.write(7, ["c"])
    assert len(pending[7]) == 1
    assert committed_lines(out) == []
    sinks.pre_commit(2)  # checkpoint 2 will be aborted: its file waits for a later one
    sinks.commit(1)
    assert committed_lines(out) == ["a", "b"]
    sinks.write(7, ["d"])
    sinks.pre_commit(3)
    sinks.commit(3)
    assert committed_lines(out) == ["a", "b", "c", "d"]
    assert not [n for n in os.listdir(out) if n.startswith(".")]


def test_a_pre_commit_syncs_in_the_background_and_its_checkpoint_waits_for_it(
    tmp_path: Path,
) -> None:
    out = str(tmp_path / "out")
    sinks = SinkTransactions({7: TwoPhaseFileSink(out)}, 0, 1, next_id=1)
    sinks.write(7, [f"line {i}" for i in range(20_000)])
    sinks.pre_commit(1)
    [syncing] = sinks.take_durability()  # the acknowledgement of checkpoint 1 waits for it
    assert sinks.take_durability() == []
    sinks.write(7, ["next"])  # the subtask goes on meanwhile, into the next transaction
    syncing.result(timeout=60)
    [temp] = [n for n in os.listdir(out) if n.endswith(".inprogress") and "000000001" in n]
    with open(os.path.join(out, temp)) as f:
        assert sum(1 for _ in f) == 20_000  # flushed whole before the fsync
    sinks.pre_commit(2)
    assert len(sinks.take_durability()) == 1
    sinks.commit(2)  # waits for checkpoint 2's fsync too before it renames
    assert len(committed_lines(out)) == 20_001
    sinks.pre_commit(3)  # nothing written since: no transaction, nothing to wait for
    assert sinks.take_durability() == []


def test_recovery_commits_the_checkpoint_and_drops_what_came_after(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = SinkTransactions({0: TwoPhaseFileSink(out)}, 1, 2, next_id=1)
    first.write(0, ["kept"])
    restored = first.pre_commit(1)  # in checkpoint 1's snapshot; its commit never happened
    first.write(0, ["lost"])  # after the barrier: the replay writes it again
    first.pre_commit(2)  # a checkpoint that never completed
    first.write(0, ["in progress"])
    again = SinkTransactions({0: TwoPhaseFileSink(out)}, 1, 2, next_id=2)
    again.recover(restored)
    assert committed_lines(out) == ["kept"]
    assert os.listdir(out) == ["part-1-000000001"]


# -- positioned sources ----------------------------------------------------------------------


class _Letters(SplitSource):
    def splits(self) -> list[str]:
        return ["ab", "cde", "f"]

    def read(self, split: str, position: Any) -> Any:
        for i in range(position or 0, len(split)):
            yield split[i], i + 1


def _all(reader: PositionedReader) -> list[Any]:
    return [r for b in reader.batches(1) for r in b]


def test_a_split_source_reads_on_from_its_positions_at_any_parallelism() -> None:
    params = {"source": "split", "split_source": _Letters(), "bounded": True}
    reader = PositionedReader(params, 0, 2, None)  # splits 0 and 2
    batches = reader.batches(1)
    assert next(batches) == ["a"]
    assert reader.position() == {0: 1, 2: None}
    merged = {**reader.position(), 1: 2}  # as two old subtasks' positions merge
    assert _all(PositionedReader(params, 0, 1, merged)) == ["b", "e", "f"]  # round robin


def test_a_counted_source_skips_what_it_emitted(tmp_path: Path) -> None:
    params = {"source": "elements", "elements": tuple(range(10)), "bounded": True}
    reader = PositionedReader(params, 1, 2, None)
    assert _all(reader) == [5, 6, 7, 8, 9]
    assert reader.position() == 5
    assert _all(PositionedReader(params, 1, 2, 3)) == [8, 9]


def _file_job(path: Path, parallelism: int) -> Any:
    env = StreamEnvironment(parallelism=parallelism)
    env.read_text(str(path)).map(lambda line: line).for_each(print)
    return env.execution_graph()


def _read_some(readers: list[PositionedReader], batches: int) -> list[Any]:
    """``batches`` batches of 7 records from each reader (fewer where one ends)."""
    out = []
    for reader in readers:
        iterator = reader.batches(7)
        for _ in range(batches):
            out += next(iterator, [])
    return out


def test_a_file_source_restores_at_another_parallelism_from_its_counts(tmp_path: Path) -> None:
    from pydispatch.dataflow.snapshots import Snapshot, restore_part

    lines = [f"line {i}" for i in range(200)]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(lines) + "\n")
    plan = _file_job(path, 2)
    chain = plan.chains[0]
    source = plan.job.operator(chain.operators[0])
    ops = tuple(chain.operators)

    def readers_at(parallelism: int, olds: list[Snapshot]) -> list[PositionedReader]:
        plan = _file_job(path, parallelism)
        parts = [restore_part(plan, 0, i, olds, 1) for i in range(parallelism)]
        return [PositionedReader(source.params, i, parallelism, parts[i].position) for i in
                range(parallelism)]  # fmt: skip

    first = [PositionedReader(source.params, i, 2, None) for i in range(2)]
    seen = _read_some(first, 3)  # part of each split at parallelism 2
    at_2 = [Snapshot(ops, i, 2, 1, r.position()) for i, r in enumerate(first)]
    assert all(0 < s.position < 100 for s in at_2)  # counts: split by split, part read
    second = readers_at(3, at_2)  # subtask 2 of 3 gets no old split: it reads nothing
    assert [sorted(r.position().counts) for r in second] == [[0], [1], []]
    seen += _read_some(second, 2)
    at_3 = [Snapshot(ops, i, 3, 1, r.position()) for i, r in enumerate(second)]
    [last] = readers_at(1, at_3)  # back to one subtask: both old splits, round robin
    seen += _read_some([last], 1000)
    assert sorted(seen) == sorted(lines)  # every line once
    assert len(seen) == len(lines)


def test_a_monitored_directory_reads_new_files_and_whole_lines(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("1\n2\n")
    (tmp_path / "b.txt").write_text("3\npartial")
    params = {"source": "monitor", "path": str(tmp_path), "monitor": 0.01, "bounded": False}
    reader = PositionedReader(params, 0, 1, None)
    batches = reader.batches(100)
    seen: list[str] = []
    while len(seen) < 3:
        seen += next(batches)
    assert sorted(seen) == ["1", "2", "3"]
    assert reader.position() == {"a.txt": 4, "b.txt": 2}
    (tmp_path / "c.txt").write_text("4\n")
    with open(tmp_path / "b.txt", "a") as f:
        f.write(" line\n")
    while len(seen) < 5:
        seen += next(batches)
    assert sorted(seen[3:]) == ["4", "partial line"]
    restored = PositionedReader(params, 0, 1, {"a.txt": 2, "b.txt": 15, "c.txt": 2})
    assert next(restored.batches(100)) == ["2"]


def test_a_monitored_position_counts_every_line_of_a_batch_cut_mid_file(tmp_path: Path) -> None:
    """A batch that fills (or lingers) in the middle of a file: the position taken after it
    covers its last line too, so that a restore does not read that line again."""
    (tmp_path / "a.txt").write_text("".join(f"{i}\n" for i in range(5)))
    params = {"source": "monitor", "path": str(tmp_path), "monitor": 0.01, "bounded": False}
    reader = PositionedReader(params, 0, 1, None)
    batches = reader.batches(2)
    assert next(batches) == ["0", "1"]
    assert reader.position() == {"a.txt": 4}
    restored = PositionedReader(params, 0, 1, reader.position())
    assert next(restored.batches(2)) == ["2", "3"]


def _until_idle(batches: Iterator[list[Any]]) -> list[Any]:
    out: list[Any] = []
    for batch in batches:
        if not batch:  # a monitored directory with nothing to read now
            return out
        out += batch
    return out


def test_a_monitored_directory_position_covers_every_line_emitted_before_it(
    tmp_path: Path,
) -> None:
    """The position between two batches (where a barrier goes) counts every line emitted:
    restored from it, the source reads each line once, also of a file that grew meanwhile.
    (CI once committed a new file's first line twice: a one-line batch left, a checkpoint
    was taken, and the offset was recorded only when the next line was read.)"""
    (tmp_path / "a.txt").write_text("a0\na1\na2\n")
    params = {"source": "monitor", "path": str(tmp_path), "monitor": 0.01, "bounded": False}
    reader = PositionedReader(params, 0, 1, None)
    batches = reader.batches(1)
    assert next(batches) == ["a0"]
    assert reader.position() == {"a.txt": 3}  # the first line of a file counts at once
    emitted = ["a0"]
    cuts = [(list(emitted), reader.position())]
    for step in range(6):
        if step == 1:  # the file grows, its last line still being written
            with open(tmp_path / "a.txt", "a") as f:
                f.write("a3\na4\na5")
        if step == 3:
            (tmp_path / "b.txt").write_text("b0\nb1\n")
        batch = next(batches)
        assert len(batch) == 1, batch
        emitted += batch
        cuts.append((list(emitted), reader.position()))
    everything = ["a0", "a1", "a2", "a3", "a4", "b0", "b1"]
    assert sorted(emitted) == everything
    for before, position in cuts:
        after = _until_idle(PositionedReader(params, 0, 1, position).batches(1))
        assert sorted(before + after) == everything, (before, position, after)


def test_read_text_monitor_and_split_sources_run_in_process(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("a\nb\n")
    env = StreamEnvironment()
    assert sorted(env.read_text(tmp_path, monitor=1).collect()) == ["a", "b"]  # type: ignore[type-var]
    assert sorted(StreamEnvironment().from_source(_Letters()).collect()) == list("abcdef")  # type: ignore[type-var]
    with pytest.raises(ValueError, match="not a directory"):
        env.read_text(tmp_path / "x", monitor=1)
    with pytest.raises(ValueError, match="monitor must be"):
        env.read_text(tmp_path, monitor=0)


# -- the master's glue, with its sockets replaced by lists -----------------------------------


def test_the_glue_triggers_stores_notifies_and_answers_savepoints(tmp_path: Path) -> None:
    from pydispatch.dataflow.checkpoint_glue import CheckpointGlue
    from pydispatch.dataflow.snapshots import describe
    from pydispatch.wire import job_plane as jp

    env = StreamEnvironment(parallelism=2)
    env.from_collection(range(4)).key_by(lambda x: x % 2).sum(0).write_text(str(tmp_path / "o"))
    plan = env.execution_graph()
    sent: list[tuple[int, Any]] = []
    replies: list[tuple[bytes, Any]] = []
    stopped: list[bool] = []
    config = ck.CheckpointConfig(1.0, storage=str(tmp_path / "chk"))
    glue = CheckpointGlue(
        config,
        plan,
        "job/1",
        lambda index, message: sent.append((index, message)),
        lambda identity, message: replies.append((identity, message)),
        lambda: stopped.append(True),
    )
    assert glue.deploy_args((0, 1)) == {"next": 1}  # nothing to restore yet
    glue.running(0.0)
    glue.savepoint(b"handle", str(tmp_path / "sp"), stop=True)
    glue.tick(0.1)
    assert sent == [(0, jp.TriggerCheckpoint(0, 1)), (1, jp.TriggerCheckpoint(0, 1))]
    for gid in range(len(describe(plan))):
        glue.on_message(b"slice", jp.CheckpointAck(1, 0, 1, gid, b"s%d" % gid), lambda i: 1)
    assert (1, jp.CheckpointComplete(1)) in sent
    assert replies == [(b"handle", jp.SavepointReply(str(tmp_path / "sp")))]
    assert stopped == [True]
    assert read_checkpoint(str(tmp_path / "sp")).snapshots[0] == b"s0"
    assert glue.figures()["completed"] == 1
    assert glue.figures()["last_size"] > 0
    args = glue.deploy_args((1,))  # a restart of slice 1: its own snapshots only
    assert args["restored"] == 1
    assert args["next"] == 2
    mine = {plan.subtask(c.id, 1) for c in plan.chains if c.parallelism > 1}
    assert set(args["snapshots"]) == mine
    glue.savepoint(b"late", str(tmp_path / "sp2"), stop=False)
    assert glue.storage.completed() == [1]
    glue.tick(5.0, "CANCELED")  # (the savepoint's stop)
    assert replies[-1] == (b"late", jp.SavepointReply(str(tmp_path / "sp2"), "the job has ended"))
    assert glue.storage.completed() == []  # cancelled: its checkpoints removed...
    assert read_checkpoint(str(tmp_path / "sp")).snapshots[0] == b"s0"  # ...its savepoint not


def _glue(tmp_path: Path, **config: Any) -> Any:
    from pydispatch.dataflow.checkpoint_glue import CheckpointGlue

    env = StreamEnvironment(parallelism=2)
    env.from_collection(range(4)).key_by(lambda x: x % 2).sum(0).write_text(str(tmp_path / "o"))
    settings = ck.CheckpointConfig(0.5, storage=str(tmp_path / "chk"), **config)
    return CheckpointGlue(
        settings, env.execution_graph(), "job-7", lambda i, m: None, lambda i, m: None, list
    )


def _complete_one(glue: Any, now: float) -> None:
    from pydispatch.dataflow.snapshots import describe
    from pydispatch.wire import job_plane as jp

    checkpoint = glue.coordinator.next_id
    glue.tick(now)
    assert glue.coordinator.pending is not None
    for gid in range(len(describe(glue.plan))):
        glue.acknowledged(jp.CheckpointAck(1, 0, checkpoint, gid, b"x"), now)
    assert glue.coordinator.pending is None


def test_the_glue_removes_checkpoints_beyond_retained_from_storage(tmp_path: Path) -> None:
    glue = _glue(tmp_path, retained=2)
    glue.running(0.0)
    for n in range(1, 5):
        _complete_one(glue, n * 1.0)
        assert glue.storage.completed() == list(range(n, max(n - 2, 0), -1))
    assert sorted(os.listdir(glue.storage.directory)) == ["chk-3", "chk-4"]
    glue.tick(9.0, "FAILED")  # a failed job keeps them (to be resumed)
    assert glue.storage.completed() == [4, 3]


@pytest.mark.parametrize(
    ("outcome", "retain", "kept"),
    [("FINISHED", True, False), ("CANCELED", True, True), ("CANCELED", False, False)],
)
def test_the_glue_discards_an_ended_jobs_checkpoints(
    tmp_path: Path, outcome: str, retain: bool, kept: bool
) -> None:
    glue = _glue(tmp_path, retained=2, retain_on_cancellation=retain)
    glue.running(0.0)
    _complete_one(glue, 1.0)
    _complete_one(glue, 2.0)
    glue.tick(3.0, outcome)
    assert glue.storage.completed() == ([2, 1] if kept else [])
    assert os.path.exists(glue.storage.directory) is kept
    assert os.listdir(tmp_path / "chk") == (
        [os.path.basename(glue.storage.directory)] if kept else []
    )


def test_a_slice_acks_once_its_fsyncs_are_done_in_order_and_declines_a_failed_one() -> None:
    """The slice's ack sender (``slice._send_acks``) over a real ZeroMQ pair: an ack waits
    for its sinks' background fsyncs, later acks wait behind it, a failed fsync declines."""
    import queue
    import types
    from collections import deque
    from concurrent.futures import Future

    import zmq

    from pydispatch.dataflow.slice import _send_acks
    from pydispatch.wire import job_plane as jp
    from pydispatch.wire import transport

    context = zmq.Context()
    master = context.socket(zmq.ROUTER)
    slice_side = context.socket(zmq.DEALER)
    try:
        master.bind("inproc://acks")
        slice_side.connect("inproc://acks")
        first, second = Future[None](), Future[None]()
        subtask = types.SimpleNamespace(
            acks=queue.SimpleQueue(), unsynced=deque(), ended=False, error=None, acked=2, gid=5
        )
        subtask.acks.put((1, b"one", [first]))
        subtask.acks.put((2, b"two", [second]))
        second.set_result(None)  # done, but checkpoint 1's fsync is not yet

        def received() -> list[Any]:
            out = []
            while master.poll(200):
                _, body = transport.split_envelope(master.recv_multipart(copy=False), True)
                out.append(transport.parse_job(body))
            return out

        _send_acks(slice_side, 3, 0, [subtask], 2)  # type: ignore[list-item]
        assert received() == []
        first.set_exception(OSError(5, "Input/output error"))
        _send_acks(slice_side, 3, 0, [subtask], 2)  # type: ignore[list-item]
        declined, acked = received()
        assert isinstance(declined, jp.CheckpointDeclined)
        assert (declined.checkpoint, declined.attempt) == (1, 3)
        assert "Input/output error" in declined.reason
        assert acked == jp.CheckpointAck(3, 0, 2, 5, b"two")
    finally:
        slice_side.close(linger=0)
        master.close(linger=0)
        context.term()
