"""pydispatch: a task dispatcher for Python.

Subpackages are public by name (``pydispatch.partition``); the names re-exported here are the
package's public API, pinned by ``tests/test_public_api.py``.
"""

from __future__ import annotations

from . import partition, plan, solver, stream

__version__ = "0.1.0"

__all__ = ["__version__", "partition", "plan", "solver", "stream"]
