"""pydispatch: a task dispatcher for Python.

The public API is re-exported here explicitly; ``tests/test_public_api.py`` pins it.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
