"""pydispatch: a task dispatcher for Python.

Subpackages are public by name (``pydispatch.partition``); the names re-exported here are the
package's public API, pinned by ``tests/test_public_api.py``.
"""

from __future__ import annotations

from . import partition, plan, solver, stream
from .client import Client, TaskFuture
from .cluster import LocalCluster
from .errors import RemoteError, RemoteTraceback, TaskFailedError

__version__ = "0.1.0"

__all__ = [
    "Client",
    "LocalCluster",
    "RemoteError",
    "RemoteTraceback",
    "TaskFailedError",
    "TaskFuture",
    "__version__",
    "partition",
    "plan",
    "solver",
    "stream",
]
