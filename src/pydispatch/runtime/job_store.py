"""Where a dispatcher keeps the dataflow jobs it accepted, so that they outlive it.

Every accepted job is written here before ``SubmitJob`` is answered: its payload (the pickled
job, as its frames; never unpickled by the dispatcher), its owner (the submitting peer), the
options the dispatcher reads (name, priority), its state, how many masters were started for it
(``attempts``) and where its outcome is served (``endpoint``: its master's control socket). A
dispatcher started on the same store restarts a master for every job not ended; that job runs
again from its sources. An ended job drops its payload and keeps its record (state, attempts),
which ``pydispatch jobs`` lists, until ``keep_ended`` newer jobs have ended. A finished job's
outcome (its master's answer to a handle, sent by the master: ``protocol.JobOutcome``) is kept
until its result retention passes, so that ``result()`` works after the master or the
dispatcher is gone.

:class:`JobStore` is the interface the dispatcher uses; :class:`SqliteJobStore` the embedded
implementation (one SQLite file in WAL mode: a crash loses no committed write, and nothing
but the dispatcher writes). A PostgreSQL store for standby dispatchers would implement the
same interface. The schema is versioned (``PRAGMA user_version``) and migrated on opening; a
file that is not a readable store raises :class:`JobStoreError` naming it, so the dispatcher
stops instead of starting empty and forgetting jobs.

Plain tasks never come here: they are their clients' to resubmit (see ``client_io``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "DEFAULT_STATE_DIR",
    "ENDED_STATES",
    "SCHEMA_VERSION",
    "JobRecord",
    "JobStore",
    "JobStoreError",
    "Payload",
    "SqliteJobStore",
    "default_state_dir",
    "store_path",
    "unfinished",
]

SCHEMA_VERSION: Final = 3
ENDED_STATES: Final = frozenset({"FINISHED", "FAILED", "CANCELED"})
_KEEP_ENDED: Final = 100  # ended jobs' records kept (as many as `pydispatch jobs` lists)
DEFAULT_STATE_DIR: Final = "~/.local/state/pydispatch"


class JobStoreError(Exception):
    """The store cannot be used (unreadable, not a store, from a newer pydispatch)."""


@dataclass(slots=True)
class JobRecord:
    job_id: str
    name: str
    owner: bytes  # the identity of the peer that submitted it
    priority: int
    state: str  # ACCEPTED until its master announces it, then the master's states
    attempts: int = 0  # masters started for it (more than one: dispatchers restarted)
    endpoint: str = ""  # where its outcome is served ("": nowhere now)
    submitted_at: float = 0.0  # time.time()


# The pickled job: its blob's header (msgpack, the dispatcher's own encoding) and its frames.
Payload = tuple[bytes, list[bytes]]


class JobStore(Protocol):
    """What the dispatcher asks of a job store (each call is one transaction)."""

    def add(self, record: JobRecord, payload: Payload) -> None: ...

    def started(self, job_id: str) -> None:
        """A master was started for the job (its attempts count one more)."""

    def update(self, job_id: str, state: str, endpoint: str) -> None:
        """The job's master announced ``state``; an ended job's payload is dropped."""

    def records(self) -> list[JobRecord]:
        """Every job kept, oldest first."""

    def payload(self, job_id: str) -> Payload | None: ...

    def keep_outcome(self, job_id: str, outcome: Payload, until: float) -> None:
        """A finished job's outcome (its master's reply), fetchable until ``until``."""

    def outcome(self, job_id: str) -> Payload | None:
        """The job's kept outcome, unless there is none or it expired."""

    def close(self) -> None: ...


def default_state_dir() -> str:
    """``$XDG_STATE_HOME/pydispatch``, else ``~/.local/state/pydispatch``."""
    base = os.environ.get("XDG_STATE_HOME")
    if base:
        return os.path.join(base, "pydispatch")
    return os.path.expanduser(DEFAULT_STATE_DIR)


def store_path(state_dir: str, bind: str) -> str:
    """The store of the dispatcher bound at ``bind`` in ``state_dir``: one per address, so
    that two dispatchers on one host never share (nor resume each other's) jobs, and one
    started again on its address finds its own."""
    safe = "".join(c if c.isalnum() or c in "-." else "_" for c in bind)
    return os.path.join(state_dir, f"jobs-{safe}.sqlite3")


# Each migration takes the schema from version i to i + 1 (index i - 1 here); 0 is empty.
_MIGRATIONS: Final[list[Callable[[sqlite3.Connection], None]]] = []


def _migration(step: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    _MIGRATIONS.append(step)
    return step


@_migration
def _v1_jobs_and_frames(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, name TEXT NOT NULL, owner BLOB NOT NULL,"
        " priority INTEGER NOT NULL, state TEXT NOT NULL, endpoint TEXT NOT NULL DEFAULT '',"
        " submitted_at REAL NOT NULL, payload BLOB)"
    )
    db.execute(
        "CREATE TABLE job_frames (job_id TEXT NOT NULL REFERENCES jobs ON DELETE CASCADE,"
        " position INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (job_id, position))"
    )


@_migration
def _v2_attempts_and_end(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE jobs ADD COLUMN ended_at REAL")
    db.execute("CREATE INDEX jobs_by_end ON jobs (ended_at)")


@_migration
def _v3_outcomes(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN outcome BLOB")
    db.execute("ALTER TABLE jobs ADD COLUMN outcome_until REAL")
    db.execute(
        "CREATE TABLE outcome_frames (job_id TEXT NOT NULL REFERENCES jobs ON DELETE CASCADE,"
        " position INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (job_id, position))"
    )


assert len(_MIGRATIONS) == SCHEMA_VERSION


class SqliteJobStore:
    """A :class:`JobStore` in the SQLite file at ``path`` (created with its directory)."""

    def __init__(self, path: str, keep_ended: int = _KEEP_ENDED) -> None:
        self.path = path
        self.keep_ended = keep_ended
        try:
            os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
            # Autocommit: each method is its own explicit transaction.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            raise JobStoreError(f"cannot open the job store {path}: {error}") from None
        try:
            self._open()
        except sqlite3.Error as error:
            self._db.close()
            raise JobStoreError(
                f"the job store {path} is unreadable ({error}): move it away to start "
                "without its jobs"
            ) from None

    def _open(self) -> None:
        db = self._db
        db.execute("PRAGMA foreign_keys = ON")
        check = db.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or mode[0].lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot use WAL mode (journal mode {mode})")
        # In WAL mode no commit is lost when the process dies; a power cut may take the last
        # ones unless the WAL is synced. An accepted job's is (see add); state changes are not
        # (one lost means the job may run again: at least once, never lost).
        db.execute("PRAGMA synchronous = NORMAL")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise JobStoreError(
                f"the job store {self.path} has schema version {version}, newer than this "
                f"pydispatch's {SCHEMA_VERSION}"
            )
        for step in range(version, SCHEMA_VERSION):
            with self._transaction():
                _MIGRATIONS[step](db)
                db.execute(f"PRAGMA user_version = {step + 1}")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def add(self, record: JobRecord, payload: Payload) -> None:
        header, frames = payload
        self._db.execute("PRAGMA synchronous = FULL")  # the promise made to its submitter
        try:
            self._insert(record, header, frames)
        finally:
            self._db.execute("PRAGMA synchronous = NORMAL")

    def _insert(self, record: JobRecord, header: bytes, frames: list[bytes]) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO jobs (job_id, name, owner, priority, state, attempts, endpoint,"
                " submitted_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.job_id,
                    record.name,
                    record.owner,
                    record.priority,
                    record.state,
                    record.attempts,
                    record.endpoint,
                    record.submitted_at or time.time(),
                    header,
                ),
            )
            self._db.executemany(
                "INSERT INTO job_frames (job_id, position, data) VALUES (?, ?, ?)",
                [(record.job_id, i, frame) for i, frame in enumerate(frames)],
            )

    def started(self, job_id: str) -> None:
        with self._transaction():
            self._db.execute("UPDATE jobs SET attempts = attempts + 1 WHERE job_id = ?", (job_id,))

    def update(self, job_id: str, state: str, endpoint: str) -> None:
        with self._transaction():
            if state not in ENDED_STATES:
                self._db.execute(
                    "UPDATE jobs SET state = ?, endpoint = ? WHERE job_id = ?",
                    (state, endpoint, job_id),
                )
                return
            self._db.execute(
                "UPDATE jobs SET state = ?, endpoint = ?, payload = NULL,"
                " ended_at = COALESCE(ended_at, ?) WHERE job_id = ?",
                (state, endpoint, time.time(), job_id),
            )
            self._db.execute("DELETE FROM job_frames WHERE job_id = ?", (job_id,))
            self._db.execute(
                "DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM jobs WHERE ended_at IS"
                " NOT NULL ORDER BY ended_at DESC LIMIT -1 OFFSET ?)",
                (self.keep_ended,),
            )

    def records(self) -> list[JobRecord]:
        rows = self._db.execute(
            "SELECT job_id, name, owner, priority, state, attempts, endpoint, submitted_at"
            " FROM jobs ORDER BY submitted_at, rowid"
        ).fetchall()
        return [JobRecord(*row) for row in rows]

    def payload(self, job_id: str) -> Payload | None:
        row = self._db.execute("SELECT payload FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        frames = self._db.execute(
            "SELECT data FROM job_frames WHERE job_id = ? ORDER BY position", (job_id,)
        ).fetchall()
        return bytes(row[0]), [bytes(f[0]) for f in frames]

    def keep_outcome(self, job_id: str, outcome: Payload, until: float) -> None:
        header, frames = outcome
        with self._transaction():
            self._db.execute(
                "UPDATE jobs SET outcome = ?, outcome_until = ? WHERE job_id = ?",
                (header, until, job_id),
            )
            self._db.execute("DELETE FROM outcome_frames WHERE job_id = ?", (job_id,))
            self._db.executemany(
                "INSERT INTO outcome_frames (job_id, position, data) VALUES (?, ?, ?)",
                [(job_id, i, frame) for i, frame in enumerate(frames)],
            )
            # Expired ones go now: an outcome may be large, and nobody can fetch it any more.
            expired = "SELECT job_id FROM jobs WHERE outcome_until < ?"
            now = time.time()
            self._db.execute(f"DELETE FROM outcome_frames WHERE job_id IN ({expired})", (now,))
            self._db.execute(
                "UPDATE jobs SET outcome = NULL, outcome_until = NULL WHERE outcome_until < ?",
                (now,),
            )

    def outcome(self, job_id: str) -> Payload | None:
        row = self._db.execute(
            "SELECT outcome FROM jobs WHERE job_id = ? AND outcome_until >= ?",
            (job_id, time.time()),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        frames = self._db.execute(
            "SELECT data FROM outcome_frames WHERE job_id = ? ORDER BY position", (job_id,)
        ).fetchall()
        return bytes(row[0]), [bytes(f[0]) for f in frames]

    def close(self) -> None:
        self._db.close()


def unfinished(records: Sequence[JobRecord]) -> list[JobRecord]:
    """The jobs a dispatcher starting on this store restarts."""
    return [r for r in records if r.state not in ENDED_STATES]
