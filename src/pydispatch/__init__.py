"""pydispatch: a task dispatcher for Python.

Subpackages are public by name (``pydispatch.partition``); the names re-exported here are the
package's public API, pinned by ``tests/test_public_api.py``. They are imported on first use
(PEP 562), so that processes needing none of them (the dispatcher, workers, slot processes)
start without importing numpy: a cold ``StreamEnvironment.local()`` starts five processes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# public name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "partition": ("partition", None),
    "plan": ("plan", None),
    "solver": ("solver", None),
    "stream": ("stream", None),
    "Client": ("client", "Client"),
    "TaskFuture": ("client", "TaskFuture"),
    "LocalCluster": ("cluster", "LocalCluster"),
    "RemoteError": ("errors", "RemoteError"),
    "RemoteTraceback": ("errors", "RemoteTraceback"),
    "TaskFailedError": ("errors", "TaskFailedError"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
