"""pydispatch: a task dispatcher for Python.

The public API is what this module re-exports, and the public subpackages ``partition``,
``solver``, ``plan``, ``stream`` and ``table`` with ``errors``; it is pinned by
``tests/test_public_api.py``. The other subpackages are the layers underneath (see
ARCHITECTURE.md): ``scheduling``, ``wire``, ``runtime``, ``dataflow`` and ``cli``.

The names below are imported on first use (PEP 562), so that processes needing none of them (the
dispatcher, workers, slot processes) start without importing numpy: a cold
``StreamEnvironment.local()`` starts five processes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import partition, plan, solver, stream, table
    from .errors import RemoteError, RemoteTraceback, TaskFailedError
    from .runtime.client import Client, TaskFuture
    from .runtime.cluster import LocalCluster
    from .runtime.progress import progress

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
    "progress",
    "solver",
    "stream",
    "table",
]

# public name -> (module, attribute or None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "partition": ("partition", None),
    "plan": ("plan", None),
    "solver": ("solver", None),
    "stream": ("stream", None),
    "table": ("table", None),
    "Client": ("runtime.client", "Client"),
    "TaskFuture": ("runtime.client", "TaskFuture"),
    "LocalCluster": ("runtime.cluster", "LocalCluster"),
    "progress": ("runtime.progress", "progress"),
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
