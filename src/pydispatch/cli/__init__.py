"""The ``pydispatch`` command line (internal; the entry point is :func:`main`).

- ``main``: the parser and the cluster subcommands (``dispatcher``, ``worker``, ``status``);
- ``jobs``: ``submit``, ``jobs``, ``cancel`` and ``result`` for dataflow jobs;
- ``demo``: ``pydispatch demo``, an embedded cluster running a real workload.
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
