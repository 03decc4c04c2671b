"""Standby dispatchers on PostgreSQL: leader election and the job store they share.

``pydispatch dispatcher --ha postgresql://...``: any number of dispatchers share one database.
One leads: the one whose session holds a PostgreSQL *session advisory lock*
(:class:`Leadership`). The lock is the session's: a leader that dies, is killed or is cut off
loses it when PostgreSQL ends its session (at once for a process killed on this host, whose
connection closes; after the server's TCP keepalive for a host that vanished), and a standby,
trying every second, takes it.

Fencing: taking the lead increments an epoch in the ``ha_leader`` row, and every write to the
store (:class:`PostgresJobStore`, the :class:`~pydispatch.runtime.job_store.JobStore` of a
leader) checks in its transaction that the row still holds its epoch, and writes it into the
record. A deposed leader that has not noticed yet (its lock session gone, its store connection
not) has its late writes refused (:class:`FencedError`) instead of overwriting the new
leader's records. The leader also checks its lock session every tick and stops serving when it
is gone (see ``run_dispatcher``).

The schema is versioned (``pydispatch_schema``) and migrated on start, as the SQLite store's.
psycopg 3 is imported here only: it is the ``ha`` extra's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, Final

import psycopg

from .job_store import ENDED_STATES, JobRecord, JobStoreError, Payload

__all__ = ["LOCK_KEY", "FencedError", "Leadership", "PostgresJobStore", "migrate"]

LOCK_KEY: Final = 0x7079_6469_7370_6174 & 0x7FFF_FFFF_FFFF_FFFF  # "pydispat", a bigint
SCHEMA_VERSION: Final = 2
_KEEP_ENDED: Final = 100

_SCHEMA: Final = [
    "CREATE TABLE IF NOT EXISTS pydispatch_schema (version integer NOT NULL)",
    "CREATE TABLE ha_leader (id integer PRIMARY KEY CHECK (id = 1), epoch bigint NOT NULL,"
    " address text NOT NULL, since timestamptz NOT NULL DEFAULT now())",
    "INSERT INTO ha_leader (id, epoch, address) VALUES (1, 0, '')",
    "CREATE TABLE jobs (job_id text PRIMARY KEY, name text NOT NULL, owner bytea NOT NULL,"
    " priority integer NOT NULL, state text NOT NULL, attempts integer NOT NULL DEFAULT 0,"
    " endpoint text NOT NULL DEFAULT '', submitted_at double precision NOT NULL,"
    " ended_at double precision, payload bytea, epoch bigint NOT NULL)",
    "CREATE TABLE job_frames (job_id text NOT NULL REFERENCES jobs ON DELETE CASCADE,"
    " position integer NOT NULL, data bytea NOT NULL, PRIMARY KEY (job_id, position))",
]
# Version 2: finished jobs' outcomes (see JobStore.keep_outcome).
_V2: Final = [
    "ALTER TABLE jobs ADD COLUMN outcome bytea",
    "ALTER TABLE jobs ADD COLUMN outcome_until double precision",
    "CREATE TABLE outcome_frames (job_id text NOT NULL REFERENCES jobs ON DELETE CASCADE,"
    " position integer NOT NULL, data bytea NOT NULL, PRIMARY KEY (job_id, position))",
]


class FencedError(JobStoreError):
    """A write by a dispatcher that no longer leads (another took the lead since)."""


def migrate(connection: psycopg.Connection[Any]) -> None:
    """Create or upgrade the schema (one transaction; concurrent starters serialise on it)."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY - 1,))
        connection.execute(_SCHEMA[0])
        row = connection.execute("SELECT version FROM pydispatch_schema").fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise JobStoreError(
                f"the PostgreSQL job store has schema version {version}, newer than this "
                f"pydispatch's {SCHEMA_VERSION}"
            )
        if version == 0:
            for statement in _SCHEMA[1:]:
                connection.execute(statement)
            connection.execute("INSERT INTO pydispatch_schema (version) VALUES (%s)", (1,))
        if version < 2:
            for statement in _V2:
                connection.execute(statement)
            connection.execute("UPDATE pydispatch_schema SET version = %s", (2,))


def _connect(dsn: str, **options: Any) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10, **options)
    except psycopg.Error as error:
        reason = " ".join(str(error).split())  # libpq's message spans lines: one line here
        raise JobStoreError(f"cannot connect to the PostgreSQL job store: {reason}") from None


class Leadership:
    """This dispatcher's claim to lead, held by its own session (``address``: where it serves
    once it leads, which standbys report)."""

    def __init__(self, dsn: str, address: str, heartbeat_timeout: float = 10.0) -> None:
        self.address = address
        # The lock lasts as long as the session: over TCP, keepalives on both ends end the
        # session of a vanished peer within about one heartbeat timeout (half of it idle, two
        # probes a quarter apart), not the operating system's two hours. A standby tries every
        # heartbeat interval: a takeover takes at most a heartbeat timeout, one interval and a
        # dispatcher's start (under two heartbeat timeouts); a leader killed on its host
        # closes its connection, and is replaced within one interval and a start.
        idle, probe = max(1, round(heartbeat_timeout / 2)), max(1, round(heartbeat_timeout / 4))
        self._session = _connect(
            dsn,
            keepalives=1,
            keepalives_idle=idle,
            keepalives_interval=probe,
            keepalives_count=2,
            tcp_user_timeout=int(heartbeat_timeout * 1000),
            options=f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={probe} "
            "-c tcp_keepalives_count=2",
        )
        migrate(self._session)
        self.epoch = 0  # while leading: the fencing epoch this dispatcher writes with

    def try_lead(self) -> int:
        """Take the lead if nobody holds it: the new epoch, or 0 (another leads)."""
        row = self._session.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if row is None or not row[0]:
            return 0
        with self._session.transaction():
            bumped = self._session.execute(
                "UPDATE ha_leader SET epoch = epoch + 1, address = %s, since = now()"
                " WHERE id = 1 RETURNING epoch",
                (self.address,),
            ).fetchone()
        assert bumped is not None
        self.epoch = int(bumped[0])
        return self.epoch

    def wait_to_lead(self, every: float = 1.0, on_wait: Any = None) -> int:
        """Block until this dispatcher leads (``on_wait(leader_address)`` between tries)."""
        while not (epoch := self.try_lead()):
            if on_wait is not None:
                on_wait(self.leader())
            time.sleep(every)
        return epoch

    def leader(self) -> str:
        """The address of the dispatcher that took the lead last."""
        row = self._session.execute("SELECT address FROM ha_leader WHERE id = 1").fetchone()
        return "" if row is None else str(row[0])

    def still_leading(self) -> bool:
        """Whether the lock session is alive and the epoch is still ours."""
        try:
            row = self._session.execute("SELECT epoch FROM ha_leader WHERE id = 1").fetchone()
        except psycopg.Error:
            return False
        return row is not None and int(row[0]) == self.epoch

    @property
    def session_pid(self) -> int:
        """The PostgreSQL backend of the lock session (tests end it to depose us)."""
        return int(self._session.info.backend_pid)

    def close(self) -> None:
        self._session.close()


class PostgresJobStore:
    """A :class:`~pydispatch.runtime.job_store.JobStore` in PostgreSQL, written by the
    leader of ``epoch`` only (fenced: see the module docstring)."""

    def __init__(self, dsn: str, epoch: int, keep_ended: int = _KEEP_ENDED) -> None:
        self.epoch = epoch
        self.keep_ended = keep_ended
        self._db = _connect(dsn)
        migrate(self._db)

    @contextlib.contextmanager
    def _fenced(self) -> Iterator[psycopg.Connection[Any]]:
        with self._db.transaction():
            # FOR SHARE: a new leader's epoch bump waits for this write, or this write sees it.
            row = self._db.execute("SELECT epoch FROM ha_leader WHERE id = 1 FOR SHARE").fetchone()
            current = 0 if row is None else int(row[0])
            if current != self.epoch:
                raise FencedError(
                    f"write refused: this dispatcher led at epoch {self.epoch}, another leads "
                    f"now (epoch {current})"
                )
            yield self._db

    def add(self, record: JobRecord, payload: Payload) -> None:
        header, frames = payload
        with self._fenced() as db:
            db.execute(
                "INSERT INTO jobs (job_id, name, owner, priority, state, attempts, endpoint,"
                " submitted_at, payload, epoch) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    record.job_id, record.name, record.owner, record.priority, record.state,
                    record.attempts, record.endpoint, record.submitted_at or time.time(),
                    header, self.epoch,
                ),
            )  # fmt: skip
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO job_frames (job_id, position, data) VALUES (%s, %s, %s)",
                    [(record.job_id, i, frame) for i, frame in enumerate(frames)],
                )

    def started(self, job_id: str) -> None:
        with self._fenced() as db:
            db.execute(
                "UPDATE jobs SET attempts = attempts + 1, epoch = %s WHERE job_id = %s",
                (self.epoch, job_id),
            )

    def update(self, job_id: str, state: str, endpoint: str) -> None:
        with self._fenced() as db:
            if state not in ENDED_STATES:
                db.execute(
                    "UPDATE jobs SET state = %s, endpoint = %s, epoch = %s WHERE job_id = %s",
                    (state, endpoint, self.epoch, job_id),
                )
                return
            db.execute(
                "UPDATE jobs SET state = %s, endpoint = %s, payload = NULL, epoch = %s,"
                " ended_at = COALESCE(ended_at, %s) WHERE job_id = %s",
                (state, endpoint, self.epoch, time.time(), job_id),
            )
            db.execute("DELETE FROM job_frames WHERE job_id = %s", (job_id,))
            db.execute(
                "DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM jobs WHERE ended_at IS"
                " NOT NULL ORDER BY ended_at DESC OFFSET %s)",
                (self.keep_ended,),
            )

    def records(self) -> list[JobRecord]:
        rows = self._db.execute(
            "SELECT job_id, name, owner, priority, state, attempts, endpoint, submitted_at"
            " FROM jobs ORDER BY submitted_at, job_id"
        ).fetchall()
        return [JobRecord(r[0], r[1], bytes(r[2]), r[3], r[4], r[5], r[6], r[7]) for r in rows]

    def written_by(self, job_id: str) -> int:
        """The epoch of the leader that last wrote the job's record (0: no such job)."""
        row = self._db.execute("SELECT epoch FROM jobs WHERE job_id = %s", (job_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def payload(self, job_id: str) -> Payload | None:
        row = self._db.execute("SELECT payload FROM jobs WHERE job_id = %s", (job_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        frames = self._db.execute(
            "SELECT data FROM job_frames WHERE job_id = %s ORDER BY position", (job_id,)
        ).fetchall()
        return bytes(row[0]), [bytes(f[0]) for f in frames]

    def keep_outcome(self, job_id: str, outcome: Payload, until: float) -> None:
        header, frames = outcome
        with self._fenced() as db:
            db.execute(
                "UPDATE jobs SET outcome = %s, outcome_until = %s, epoch = %s WHERE job_id = %s",
                (header, until, self.epoch, job_id),
            )
            db.execute("DELETE FROM outcome_frames WHERE job_id = %s", (job_id,))
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO outcome_frames (job_id, position, data) VALUES (%s, %s, %s)",
                    [(job_id, i, frame) for i, frame in enumerate(frames)],
                )
            now = time.time()
            db.execute(
                "DELETE FROM outcome_frames WHERE job_id IN (SELECT job_id FROM jobs WHERE"
                " outcome_until < %s)",
                (now,),
            )
            db.execute(
                "UPDATE jobs SET outcome = NULL, outcome_until = NULL WHERE outcome_until < %s",
                (now,),
            )

    def outcome(self, job_id: str) -> Payload | None:
        row = self._db.execute(
            "SELECT outcome FROM jobs WHERE job_id = %s AND outcome_until >= %s",
            (job_id, time.time()),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        frames = self._db.execute(
            "SELECT data FROM outcome_frames WHERE job_id = %s ORDER BY position", (job_id,)
        ).fetchall()
        return bytes(row[0]), [bytes(f[0]) for f in frames]

    def close(self) -> None:
        self._db.close()
