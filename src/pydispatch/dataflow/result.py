"""What a finished dataflow job gives back, in process or from a cluster.

Kept apart from both executors and from the user API that returns it (``pydispatch.stream``
re-exports it), so that the runtime never imports the user API to build one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["JobResult"]


@dataclass(frozen=True)
class JobResult:
    """What a finished in-process job gives back.

    ``collected``: each ``collect`` sink's records (a list, or a dict of columns on the columnar
    path) by operator id; ``records_in`` / ``records_out``: per operator id, summed over its
    subtasks; ``runtime_mode``: ``"batch"`` or ``"streaming"``.
    """

    name: str
    runtime_mode: str
    collected: dict[int, Any] = field(default_factory=dict)
    records_in: dict[int, int] = field(default_factory=dict)
    records_out: dict[int, int] = field(default_factory=dict)
