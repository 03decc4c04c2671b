"""The job store (a real SQLite file in a temporary directory): what it keeps, its schema
versions and migration, and a store that is not readable stopping the dispatcher with one
line naming the file (rather than a dispatcher starting empty and forgetting its jobs)."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pydispatch.runtime.job_store import (
    SCHEMA_VERSION,
    JobRecord,
    JobStoreError,
    SqliteJobStore,
    store_path,
    unfinished,
)

# The first schema, as pydispatch wrote it (version 1): no attempts, no end time.
V1 = [
    "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, name TEXT NOT NULL, owner BLOB NOT NULL,"
    " priority INTEGER NOT NULL, state TEXT NOT NULL, endpoint TEXT NOT NULL DEFAULT '',"
    " submitted_at REAL NOT NULL, payload BLOB)",
    "CREATE TABLE job_frames (job_id TEXT NOT NULL REFERENCES jobs ON DELETE CASCADE,"
    " position INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (job_id, position))",
]


def _record(job_id: str, state: str = "ACCEPTED") -> JobRecord:
    return JobRecord(job_id, f"name-{job_id}", b"peer", 0, state, 1, "", 1.0)


def test_jobs_are_kept_until_they_end_and_ended_ones_are_bounded(tmp_path: Path) -> None:
    path = str(tmp_path / "deep" / "jobs.sqlite3")
    store = SqliteJobStore(path, keep_ended=2)
    for i in range(4):
        store.add(_record(f"j{i}"), (b"header", [b"frame-a", bytes(100_000)]))
    store.started("j0")
    store.update("j1", "RUNNING", "tcp://127.0.0.1:1")
    store.close()
    store = SqliteJobStore(path, keep_ended=2)  # what a restarted dispatcher reads
    assert store.schema_version == SCHEMA_VERSION
    assert [(r.job_id, r.state, r.attempts) for r in store.records()] == [
        ("j0", "ACCEPTED", 2), ("j1", "RUNNING", 1), ("j2", "ACCEPTED", 1), ("j3", "ACCEPTED", 1)
    ]  # fmt: skip
    assert store.payload("j2") == (b"header", [b"frame-a", bytes(100_000)])
    for i in range(3):
        store.update(f"j{i}", "FINISHED", "")
    assert store.payload("j0") is None  # an ended job needs no payload
    # Two ended records kept (the newest), and the unfinished one.
    assert [r.job_id for r in store.records()] == ["j1", "j2", "j3"]
    assert [r.job_id for r in unfinished(store.records())] == ["j3"]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()


def test_an_older_schema_is_migrated_and_its_jobs_kept(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    for statement in V1:
        db.execute(statement)
    db.execute("INSERT INTO jobs VALUES ('old-1', 'old', x'00', 3, 'RUNNING', '', 5.0, x'0102')")
    db.execute("INSERT INTO job_frames VALUES ('old-1', 0, x'ff')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = SqliteJobStore(str(path))
    assert store.schema_version == SCHEMA_VERSION == 3
    assert store.records() == [JobRecord("old-1", "old", b"\0", 3, "RUNNING", 0, "", 5.0)]
    assert store.payload("old-1") == (b"\x01\x02", [b"\xff"])
    store.update("old-1", "FINISHED", "")  # the new columns work
    store.keep_outcome("old-1", (b"reply", [b"records"]), until=time.time() + 60)
    assert store.outcome("old-1") == (b"reply", [b"records"])
    store.close()


def test_an_outcome_is_kept_until_its_time(tmp_path: Path) -> None:
    store = SqliteJobStore(str(tmp_path / "jobs.sqlite3"))
    for job_id in ("brief", "long"):
        store.add(_record(job_id), (b"h", []))
        store.update(job_id, "FINISHED", "")
    store.keep_outcome("brief", (b"r1", [b"x" * 1000]), until=time.time() - 1)  # past already
    store.keep_outcome("long", (b"r2", [b"y"]), until=time.time() + 60)
    assert store.outcome("brief") is None
    assert store.outcome("long") == (b"r2", [b"y"])
    # The expired one's frames are gone from the file, not just hidden.
    db = sqlite3.connect(store.path)
    assert db.execute("SELECT job_id FROM outcome_frames").fetchall() == [("long",)]
    store.close()


def test_a_store_from_a_newer_pydispatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    SqliteJobStore(str(path)).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(JobStoreError, match=r"new\.sqlite3 has schema version 4, newer"):
        SqliteJobStore(str(path))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dispatcher(bind: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "pydispatch.cli", "dispatcher", "--bind", bind,
        "--state-dir", str(state_dir),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("damage", ["truncated", "not a database"])
def test_an_unreadable_store_stops_the_dispatcher_with_one_line_naming_it(
    tmp_path: Path, damage: str
) -> None:
    bind = f"tcp://127.0.0.1:{_free_port()}"
    path = Path(store_path(str(tmp_path), bind))
    store = SqliteJobStore(str(path))
    for i in range(50):
        store.add(_record(f"j{i}"), (b"h" * 1000, [bytes(5000)]))
    store.close()
    size = path.stat().st_size
    if damage == "truncated":
        with open(path, "r+b") as f:
            f.truncate(size // 2)
    else:
        path.write_bytes(b"this is not a database" * 300)
    stopped = _dispatcher(bind, tmp_path)
    assert stopped.returncode == 1
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1, stopped.stderr
    assert lines[0].startswith("pydispatch dispatcher: the job store ")
    assert str(path) in lines[0]
    assert "unreadable" in lines[0]


def test_a_dispatcher_lists_the_jobs_of_a_migrated_store(tmp_path: Path) -> None:
    bind = f"tcp://127.0.0.1:{_free_port()}"
    path = Path(store_path(str(tmp_path), bind))
    db = sqlite3.connect(path)
    for statement in V1:
        db.execute(statement)
    db.execute("INSERT INTO jobs VALUES ('old-1', 'old', x'00', 0, 'FINISHED', '', 5.0, NULL)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    command = [
        sys.executable, "-m", "pydispatch.cli", "dispatcher", "--bind", bind,
        "--state-dir", str(tmp_path), "--no-job-masters",
    ]  # fmt: skip
    dispatcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert dispatcher.stdout is not None
        assert "listening" in dispatcher.stdout.readline()
        listed = subprocess.run(
            [sys.executable, "-m", "pydispatch.cli", "jobs", bind, "--json"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert [(j["job_id"], j["state"]) for j in json.loads(listed.stdout)] == [
            ("old-1", "FINISHED")
        ]
    finally:
        dispatcher.kill()
        dispatcher.wait()
    assert SqliteJobStore(str(path)).schema_version == SCHEMA_VERSION


def test_finished_is_written_with_the_outcome_so_a_kill_between_loses_no_result(
    tmp_path: Path,
) -> None:
    from pydispatch.runtime.durable_jobs import DurableJobs
    from pydispatch.wire import protocol as p

    store = SqliteJobStore(str(tmp_path / "jobs.sqlite"))
    durable = DurableJobs(store)
    store.add(_record("j1"), (b"header", [b"frame"]))

    def state() -> str:
        return {r.job_id: r.state for r in store.records()}["j1"]

    durable.update(p.JobInfo("j1", "name-j1", "RUNNING", "tcp://m:1", 1, 2))
    durable.update(p.JobInfo("j1", "name-j1", "FINISHED", "tcp://m:1", 1, 2))
    # Finished, its outcome not written yet: a dispatcher killed now restarts it from its
    # payload (still there), rather than list it FINISHED with its result lost.
    assert state() == "FINISHING"
    assert [r.job_id for r in unfinished(store.records())] == ["j1"]
    assert store.payload("j1") is not None
    durable.keep_outcome("j1", b"reply", [b"rows"], keep_for=60.0)
    assert state() == "FINISHED"
    assert store.outcome("j1") == (b"reply", [b"rows"])
    assert unfinished(store.records()) == []
    # Its master's exit noticed afterwards changes nothing.
    durable.update(p.JobInfo("j1", "name-j1", "FINISHED", "", 1, 0))
    assert state() == "FINISHED"
    store.close()
