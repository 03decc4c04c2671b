"""The dispatcher's removal of kept outcomes' shared-memory directories
(``runtime.spilled_outcomes``), with real directories in ``/dev/shm`` and the store's and the
listing's answers given by the test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pydispatch.runtime import spilled_outcomes
from pydispatch.runtime.spilled_outcomes import SpilledOutcomes
from pydispatch.wire import job_plane as jp
from pydispatch.wire import protocol as p
from pydispatch.wire.shm_files import COLLECT_TAG, SPILL_PREFIX, shared_dir, spill_prefix

pytestmark = pytest.mark.skipif(shared_dir() is None, reason="needs /dev/shm (Linux)")


@pytest.fixture
def directory() -> Iterator[str]:
    made = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}test-{COLLECT_TAG}", dir=shared_dir())
    Path(made, "slice-1").write_bytes(b"records")
    yield made
    shutil.rmtree(made, ignore_errors=True)


class _Clock:
    """The module's ``time``, moved by the test (wall and monotonic seconds together)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(spilled_outcomes, "time", fake)
    return fake


def _reply(spilled: str) -> bytes:
    return p.encode(jp.JobResultReply("j1", "job", "FINISHED", {}, spilled=spilled))


def test_a_stored_outcomes_directory_goes_when_the_store_drops_it(directory: str) -> None:
    kept = {"j1": True}
    spilled = SpilledOutcomes(lambda job_id: kept[job_id], lambda job_id: False)
    spilled.add("j1", _reply(directory), keep_for=0.0, stored=True)
    spilled.sweep(force=True)
    assert os.path.isdir(directory)  # the store keeps it: its retention is the store's
    kept["j1"] = False  # expired, or the job dropped
    spilled.sweep(force=True)
    assert not os.path.exists(directory)
    assert len(spilled) == 0


def test_a_store_less_outcomes_directory_outlives_its_master_a_little(
    directory: str, clock: _Clock
) -> None:
    serving = {"j1": True}
    spilled = SpilledOutcomes(None, lambda job_id: serving[job_id])
    spilled.add("j1", _reply(directory), keep_for=600.0, stored=False)
    spilled.sweep(force=True)
    assert os.path.isdir(directory)  # its master serves the outcome
    serving["j1"] = False
    spilled.sweep(force=True)
    assert os.path.isdir(directory)  # the grace: a handle maps what it was just sent
    clock.now += spilled_outcomes._GRACE + 1
    spilled.sweep(force=True)
    assert not os.path.exists(directory)


def test_a_store_less_outcomes_directory_goes_after_its_retention(
    directory: str, clock: _Clock
) -> None:
    spilled = SpilledOutcomes(None, lambda job_id: True)
    spilled.add("j1", _reply(directory), keep_for=60.0, stored=False)
    spilled.sweep(force=True)
    assert os.path.isdir(directory)
    clock.now += 60.0 + spilled_outcomes._GRACE + 1
    spilled.sweep(force=True)
    assert not os.path.exists(directory)


def test_the_store_is_asked_at_the_retentions_end_and_seldom_before(
    directory: str, clock: _Clock
) -> None:
    asked: list[float] = []

    def kept(job_id: str) -> bool:
        asked.append(clock.now)
        return clock.now < 1_000_600.0  # the store's retention: 600 s

    spilled = SpilledOutcomes(kept, lambda job_id: False)
    spilled.add("j1", _reply(directory), keep_for=600.0, stored=True)
    for _ in range(100):  # 200 s of ticks: the store asked every 30 s, not every look
        clock.now += 2.0
        spilled.sweep()
    assert 5 <= len(asked) <= 8
    assert os.path.isdir(directory)
    clock.now = 1_000_601.0
    spilled.sweep()
    assert not os.path.exists(directory)


def test_a_restored_outcome_is_followed_like_a_stored_one(directory: str) -> None:
    spilled = SpilledOutcomes(lambda job_id: False, lambda job_id: False)
    spilled.restore("j1", _reply(directory))
    spilled.sweep(force=True)
    assert not os.path.exists(directory)


def test_only_our_directories_are_removed(tmp_path: Path) -> None:
    spilled = SpilledOutcomes(lambda job_id: False, lambda job_id: False)
    spilled.add("j1", _reply(str(tmp_path)), keep_for=0.0, stored=True)  # not in /dev/shm
    spilled.add("j2", b"\x93garbage", keep_for=0.0, stored=True)  # not a reply: ignored
    spilled.add("j3", _reply(""), keep_for=0.0, stored=True)  # nothing spilled
    assert len(spilled) == 1
    spilled.sweep(force=True)
    assert tmp_path.is_dir()
    assert len(spilled) == 0  # (said in the log, and not tried again)


def test_orphans_named_after_the_address_go_and_kept_ones_stay(directory: str) -> None:
    address = "ipc:///tmp/some-cluster/dispatcher"
    prefix = spill_prefix(address) + COLLECT_TAG
    kept = tempfile.mkdtemp(prefix=prefix, dir=shared_dir())
    orphan = tempfile.mkdtemp(prefix=prefix, dir=shared_dir())
    try:
        spilled = SpilledOutcomes(lambda job_id: True, lambda job_id: False)
        spilled.restore("j1", _reply(kept))
        spilled.remove_orphans(address)
        assert os.path.isdir(kept)
        assert not os.path.exists(orphan)
        assert os.path.isdir(directory)  # another address's: not ours to judge
    finally:
        shutil.rmtree(kept, ignore_errors=True)
        shutil.rmtree(orphan, ignore_errors=True)
