"""Checkpoint storage: completed checkpoints and savepoints as files (private).

A checkpoint ``n`` of a job is a directory ``<root>/<job>/chk-<n>`` holding ``state`` (every
subtask's snapshot bytes, msgpack) and ``_metadata`` (JSON: the checkpoint's id, the SHA-256
and size of ``state``, the plan's subtasks). ``_metadata`` is written last and atomically
(a temporary file, fsync, rename), so a checkpoint is complete exactly when its ``_metadata``
exists; a crash while writing leaves no half checkpoint. Reading checks the digest: a corrupt
checkpoint is skipped, with a log line, for the one before it (Flink falls back the same way).

``root`` is a local directory, or any fsspec URL (``memory://``, ``s3://``...) when fsspec is
installed (the ``fsspec`` extra); a savepoint is the same two files in a directory of the
user's choice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = [
    "CheckpointStorage",
    "CorruptCheckpointError",
    "StoredCheckpoint",
    "directory_name",
    "read_checkpoint",
]

log = logging.getLogger(__name__)

_METADATA = "_metadata"
_STATE = "state"
_FORMAT = 1
_CHK = re.compile(r"^chk-(\d+)$")


class CorruptCheckpointError(ValueError):
    """A checkpoint's files are missing, truncated or do not match their digest."""


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint read back: its id, each subtask's snapshot, the plan it was taken of."""

    checkpoint: int
    snapshots: dict[int, bytes]
    subtasks: dict[int, Any]  # subtask id -> what it was (see dataflow.snapshots)
    path: str
    size: int


class _Files:
    """The few file operations storage needs, on a local directory or an fsspec URL."""

    def __init__(self, root: str) -> None:
        self.fs: Any = None
        if "://" in root and not root.startswith("file://"):
            try:
                from fsspec.core import url_to_fs
            except ImportError as error:
                raise ValueError(
                    f"checkpoint storage {root!r} is a URL: install the fsspec extra "
                    "(pip install 'pydispatch-cluster[fsspec]')"
                ) from error
            self.fs, root = url_to_fs(root)
        elif root.startswith("file://"):
            root = root[len("file://") :]
        self.root = root.rstrip("/") or "/"

    def join(self, *parts: str) -> str:
        return self.sub(self.root, *parts)

    def sub(self, directory: str, *parts: str) -> str:
        if self.fs is not None:
            return "/".join([directory.rstrip("/"), *parts])
        return os.path.join(directory, *parts)

    def write_atomic(self, path: str, data: bytes) -> None:
        temp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        if self.fs is not None:
            self.fs.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            with self.fs.open(temp, "wb") as f:
                f.write(data)
            self.fs.mv(temp, path)
            return
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        # The rename itself must survive a crash too: sync the directory entry.
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, path: str) -> bytes:
        if self.fs is not None:
            with self.fs.open(path, "rb") as f:
                data: bytes = f.read()
                return data
        with open(path, "rb") as f:
            return f.read()

    def listdir(self, path: str) -> list[str]:
        if self.fs is not None:
            if not self.fs.exists(path):
                return []
            return [os.path.basename(p.rstrip("/")) for p in self.fs.ls(path, detail=False)]
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []

    def remove_tree(self, path: str) -> None:
        if self.fs is not None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(path, recursive=True)
            return
        shutil.rmtree(path, ignore_errors=True)

    def remove_if_empty(self, path: str) -> None:
        if self.fs is not None:
            if self.fs.exists(path) and not self.fs.ls(path, detail=False):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(path, recursive=True)
            return
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(path)  # (OSError: not empty, e.g. a savepoint the user put there)


def _write(
    files: _Files,
    directory: str,
    checkpoint: int,
    snapshots: dict[int, bytes],
    subtasks: dict[int, Any],
) -> int:
    state = msgspec.msgpack.encode({str(k): v for k, v in snapshots.items()})
    files.write_atomic(files.sub(directory, _STATE), state)
    metadata = {
        "format": _FORMAT,
        "checkpoint": checkpoint,
        "sha256": hashlib.sha256(state).hexdigest(),
        "size": len(state),
        "created": time.time(),
        "subtasks": {str(k): v for k, v in subtasks.items()},
    }
    files.write_atomic(files.sub(directory, _METADATA), json.dumps(metadata).encode())
    return len(state)


def _read(files: _Files, directory: str) -> StoredCheckpoint:
    try:
        metadata = json.loads(files.read(files.sub(directory, _METADATA)))
        state = files.read(files.sub(directory, _STATE))
    except (OSError, ValueError) as error:
        raise CorruptCheckpointError(f"{directory}: {error}") from error
    if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
        raise CorruptCheckpointError(f"{directory}: not a pydispatch checkpoint")
    if hashlib.sha256(state).hexdigest() != metadata.get("sha256"):
        raise CorruptCheckpointError(f"{directory}: its state does not match its digest")
    try:
        decoded = msgspec.msgpack.decode(state, type=dict[str, bytes])
        snapshots = {int(k): v for k, v in decoded.items()}
        subtasks = {int(k): v for k, v in metadata["subtasks"].items()}
        checkpoint = int(metadata["checkpoint"])
    except (msgspec.DecodeError, KeyError, ValueError, TypeError) as error:
        raise CorruptCheckpointError(f"{directory}: {error}") from error
    return StoredCheckpoint(checkpoint, snapshots, subtasks, directory, len(state))


def read_checkpoint(path: str) -> StoredCheckpoint:
    """A savepoint (or one checkpoint's directory) at ``path``; raises
    :class:`CorruptCheckpointError`."""
    files = _Files(path)
    return _read(files, files.root)


def directory_name(job: str) -> str:
    """The directory a job's checkpoints go to: its id, made a safe file name (a job named
    after its file's path has slashes) with a digest of the id so that names stay apart."""
    safe = _UNSAFE.sub("_", job).strip(".")[-100:]
    if safe == job:
        return job
    return f"{safe}-{hashlib.sha256(job.encode()).hexdigest()[:8]}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class CheckpointStorage:
    """The checkpoints of job ``job`` under ``root`` (see the module docstring)."""

    def __init__(self, root: str, job: str) -> None:
        if not job:
            raise ValueError("a checkpoint storage needs the job's id")
        self._files = _Files(root)
        self.directory = self._files.join(directory_name(job))

    def _chk(self, checkpoint: int) -> str:
        return self._files.sub(self.directory, f"chk-{checkpoint}")

    def write(self, checkpoint: int, snapshots: dict[int, bytes], subtasks: dict[int, Any]) -> int:
        """Store a completed checkpoint; its size in bytes."""
        return _write(self._files, self._chk(checkpoint), checkpoint, snapshots, subtasks)

    def write_savepoint(
        self, path: str, checkpoint: int, snapshots: dict[int, bytes], subtasks: dict[int, Any]
    ) -> int:
        files = _Files(path)
        return _write(files, files.root, checkpoint, snapshots, subtasks)

    def remove(self, checkpoint: int) -> None:
        self._files.remove_tree(self._chk(checkpoint))

    def discard_all(self) -> int:
        """Remove every checkpoint of the job (``chk-<n>``, complete or not) and then its
        directory if nothing else is in it; how many were removed."""
        names = [n for n in self._files.listdir(self.directory) if _CHK.match(n)]
        for name in names:
            self._files.remove_tree(self._files.sub(self.directory, name))
        self._files.remove_if_empty(self.directory)
        return len(names)

    def completed(self) -> list[int]:
        """Ids of the checkpoints with metadata, newest first."""
        ids = []
        for name in self._files.listdir(self.directory):
            match = _CHK.match(name)
            if match and _METADATA in self._files.listdir(self._chk(int(match[1]))):
                ids.append(int(match[1]))
        return sorted(ids, reverse=True)

    def latest(self) -> StoredCheckpoint | None:
        """The newest readable checkpoint; a corrupt one is skipped with a log line."""
        for checkpoint in self.completed():
            try:
                return _read(self._files, self._chk(checkpoint))
            except CorruptCheckpointError as error:
                log.warning("skipping corrupt checkpoint %d: %s", checkpoint, error)
        return None

    def highest(self) -> int:
        """The highest checkpoint id ever started here (completed or not), or 0."""
        ids = [int(m[1]) for n in self._files.listdir(self.directory) if (m := _CHK.match(n))]
        return max(ids, default=0)
