"""Names of the shared-memory files of a cluster on one host, and their removal (private).

A job submitted to a dispatcher at an ``ipc://`` address has every slot on the client's host:
its large ``from_arrays`` and ``from_collection`` sources are written to ``/dev/shm`` by the
client (``dataflow.handle``) and read there by the slices. The job's master removes them when
it ends; a master killed by SIGKILL cannot, and ``LocalCluster`` ends its processes so. The
directories are therefore named after the dispatcher's address (:func:`spill_prefix`), and the
cluster behind that address removes what its jobs left when it closes (:func:`remove_spilled`).

A job's collected records take the other way in a directory of the same kind (its name adds
:data:`COLLECT_TAG`): the client makes it, the slices write their results there, the client
maps them; the dispatcher removes it when the job's outcome is no longer kept. Whoever reads
or removes a path a peer named checks it first (:func:`checked_spill_dir`): a directory right
under ``/dev/shm``, named so, private to this user (0700, not a link).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from typing import Final

__all__ = [
    "COLLECT_TAG",
    "SPILL_PREFIX",
    "checked_spill_dir",
    "remove_spill_dir",
    "remove_spilled",
    "shared_dir",
    "spill_prefix",
]

#: How the directories of spilled job sources are named (then the address's tag, then "-").
SPILL_PREFIX: Final = "pydispatch-arrays-"
_SHM: Final = "/dev/shm"
#: After the prefix: a directory of a job's collected records (see dataflow.slice_results).
COLLECT_TAG: Final = "collect-"


def shared_dir() -> str | None:
    """Where spilled sources go on this host; None where there is no ``/dev/shm``."""
    return _SHM if os.path.isdir(_SHM) else None


def _tag(address: str) -> str:
    return hashlib.sha256(address.encode()).hexdigest()[:12]


def spill_prefix(address: str) -> str:
    """The name prefix of what jobs submitted to the dispatcher at ``address`` spill."""
    return f"{SPILL_PREFIX}{_tag(address)}-"


def remove_spilled(address: str) -> None:
    """Remove what the jobs of the dispatcher at ``address`` left in shared memory (its
    cluster is closing: no slice reads them any more)."""
    directory = shared_dir()
    if directory is None:
        return
    prefix = spill_prefix(address)
    for entry in os.listdir(directory):
        if entry.startswith(prefix):
            shutil.rmtree(os.path.join(directory, entry), ignore_errors=True)


def checked_spill_dir(directory: str) -> str:
    """``directory`` if it is one of ours: right under the shared-memory directory, named
    :data:`SPILL_PREFIX` ..., a real directory (not a link) owned by this user and closed to
    others (0700). Else ValueError naming what is wrong: a path from a peer must not make this
    process read or remove anything else."""
    shm = shared_dir()
    parent, name = os.path.split(os.path.normpath(directory))
    if shm is None or parent != shm or not name.startswith(SPILL_PREFIX):
        raise ValueError(f"{directory!r} is not a pydispatch directory in {_SHM}")
    info = os.lstat(directory)  # FileNotFoundError: said as it is
    if not stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{directory!r} is not a directory (a link?)")
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ValueError(f"{directory!r} is not private to this user (owner or mode)")
    return directory


def remove_spill_dir(directory: str) -> bool:
    """Remove one job's directory, if it is one of ours (:func:`checked_spill_dir`); whether
    it is gone now."""
    try:
        checked_spill_dir(directory)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return not os.path.lexists(directory)
