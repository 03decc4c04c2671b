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
    from . import partition, plan, stream

__version__ = "0.1.0"

__all__ = ["__version__", "partition", "plan", "stream"]

_LAZY = frozenset({"partition", "plan", "stream"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
