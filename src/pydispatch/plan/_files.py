"""The files text and CSV sources read: local paths, or fsspec URLs (private).

A path with ``://`` is an fsspec URL (``file://``, ``s3://``, ``gs://``, ``http(s)://``,
``hdfs://`` ...): every worker opens its own byte range of the file through fsspec, so files on
several hosts need not be on a shared file system. fsspec is an optional extra
(``pip install 'pydispatch-cluster[fsspec]'``); without it a URL is refused where the job is
built, naming the extra. Plain paths are local files, resolved where the job is built, that
must exist on every worker reading them.
"""

from __future__ import annotations

import os
from typing import IO, Any

__all__ = ["file_size", "is_url", "open_binary", "unreadable"]


def is_url(path: str) -> bool:
    return "://" in path


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise ImportError(
            f"{url!r} is a URL: reading it needs fsspec, the fsspec extra "
            "(pip install 'pydispatch-cluster[fsspec]')"
        ) from None
    try:
        fs, inner = url_to_fs(url)
    except (ImportError, ValueError) as error:  # an unknown protocol, or its package missing
        raise ValueError(f"cannot open {url!r} with fsspec: {error}") from error
    return fs, str(inner)


def file_size(path: str) -> int:
    if not is_url(path):
        return os.path.getsize(path)
    fs, inner = _filesystem(path)
    return int(fs.size(inner))


def open_binary(path: str) -> IO[bytes]:
    """The file, open for reading bytes (seekable: each split reads its own byte range)."""
    if not is_url(path):
        return open(path, "rb")
    fs, inner = _filesystem(path)
    opened: IO[bytes] = fs.open(inner, "rb")
    return opened


def unreadable(path: str) -> str | None:
    """Why this process cannot read the file ``path`` (None: it can)."""
    if not is_url(path):
        if os.path.isdir(path):
            return "a directory, not a file"
        if not os.path.isfile(path):
            return "no such file"
        if not os.access(path, os.R_OK):
            return "permission denied"
        return None
    try:
        fs, inner = _filesystem(path)
        if not fs.isfile(inner):
            return "a directory, not a file" if fs.isdir(inner) else "no such file"
    except Exception as error:  # the storage's own reason (credentials, network, ...)
        return f"{type(error).__name__}: {error}"
    return None
