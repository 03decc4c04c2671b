"""Standby dispatchers' election and job store on a real PostgreSQL server (started by these
tests in a temporary directory, on a Unix socket, stopped by its pid): one leader at a time,
standbys told where it is, a leader whose session ends deposed, its late writes refused."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from _support.postgres import throwaway_postgres
from pydispatch.runtime.job_store import JobRecord
from pydispatch.runtime.pg_store import FencedError, Leadership, PostgresJobStore


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with throwaway_postgres() as dsn:
        yield dsn


@pytest.fixture
def dsn(server: str) -> str:
    """A database of this test's own on the module's server."""
    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    return server.replace("/postgres?", f"/{name}?")


def _record(job_id: str) -> JobRecord:
    return JobRecord(job_id, f"name-{job_id}", b"peer", 1, "ACCEPTED", 1, "", 2.0)


def test_one_leads_a_standby_names_it_and_takes_over_when_its_session_ends(dsn: str) -> None:
    first = Leadership(dsn, "tcp://h1:5555")
    second = Leadership(dsn, "tcp://h2:5555")
    assert first.try_lead() == 1
    assert second.try_lead() == 0  # a standby
    assert second.leader() == "tcp://h1:5555"
    assert first.still_leading()
    # The leader's session ends (its process died, its host vanished): the standby leads.
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first.session_pid,))
    assert second.wait_to_lead(every=0.05) == 2
    assert second.leader() == "tcp://h2:5555"
    assert not first.still_leading()
    # The old leader started again is a standby.
    again = Leadership(dsn, "tcp://h1:5555")
    assert again.try_lead() == 0
    assert again.leader() == "tcp://h2:5555"
    for leadership in (again, second, first):
        leadership.close()


def test_a_deposed_leaders_late_writes_are_refused(dsn: str) -> None:
    first = Leadership(dsn, "tcp://h1:5555")
    old = PostgresJobStore(dsn, first.try_lead())
    old.add(_record("j1"), (b"header", [b"a", b"b"]))
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first.session_pid,))
    second = Leadership(dsn, "tcp://h2:5555")
    new = PostgresJobStore(dsn, second.wait_to_lead(every=0.05))
    # The deposed leader's store connection is alive, and has not noticed: fenced.
    with pytest.raises(FencedError, match="led at epoch 1, another leads now"):
        old.update("j1", "FINISHED", "")
    with pytest.raises(FencedError):
        old.add(_record("j2"), (b"h", []))
    with pytest.raises(FencedError):
        old.keep_outcome("j1", (b"late", []), until=time.time() + 60)
    new.started("j1")
    new.update("j1", "RUNNING", "tcp://h2:6000")
    assert [(r.job_id, r.state, r.attempts) for r in new.records()] == [("j1", "RUNNING", 2)]
    assert new.written_by("j1") == 2
    assert new.payload("j1") == (b"header", [b"a", b"b"])
    new.update("j1", "FINISHED", "")
    assert new.payload("j1") is None
    new.keep_outcome("j1", (b"reply", [b"records"]), until=time.time() + 60)
    assert new.outcome("j1") == (b"reply", [b"records"])
    for closing in (old, new, second, first):
        closing.close()


def test_an_unreachable_database_stops_the_dispatcher_with_one_line(tmp_path: Path) -> None:
    dsn = f"postgresql://nobody@/x?host={tmp_path}"  # no server listens there
    command = [
        sys.executable, "-m", "pydispatch.cli", "dispatcher", "--bind", "tcp://127.0.0.1:0",
        "--ha", dsn,
    ]  # fmt: skip
    stopped = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert stopped.returncode == 1
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 1, stopped.stderr
    assert lines[0].startswith("pydispatch dispatcher: cannot connect to the PostgreSQL job store:")
    assert str(tmp_path) in lines[0]
