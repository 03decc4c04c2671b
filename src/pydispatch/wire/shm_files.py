"""Names of the shared-memory files of a cluster on one host, and their removal (private).

A job submitted to a dispatcher at an ``ipc://`` address has every slot on the client's host:
its large ``from_arrays`` and ``from_collection`` sources are written to ``/dev/shm`` by the
client (``dataflow.handle``) and read there by the slices. The job's master removes them when
it ends; a master killed by SIGKILL cannot, and ``LocalCluster`` ends its processes so. The
directories are therefore named after the dispatcher's address (:func:`spill_prefix`), and the
cluster behind that address removes what its jobs left when it closes (:func:`remove_spilled`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Final

__all__ = ["SPILL_PREFIX", "remove_spilled", "shared_dir", "spill_prefix"]

#: How the directories of spilled job sources are named (then the address's tag, then "-").
SPILL_PREFIX: Final = "pydispatch-arrays-"
_SHM: Final = "/dev/shm"


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
