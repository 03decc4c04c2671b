"""Every public error type of pydispatch's own (kept import-light: slot processes import this
module). A task's exception reaches its caller as itself; these are what pydispatch adds.

Errors of a single subsystem's input stay beside it and are re-exported by its public module:
:class:`pydispatch.solver.InfeasibleError` (no placement exists), ``ValueError``/``TypeError``
for bad arguments everywhere.
"""

from __future__ import annotations

__all__ = [
    "JobFailedError",
    "RemoteError",
    "RemoteTraceback",
    "SqlError",
    "TaskFailedError",
    "UnfitError",
]


class TaskFailedError(RuntimeError):
    """The system could not run a task (impossible demand, retries exhausted, slot died)."""


class RemoteError(RuntimeError):
    """A task's exception that could not be rebuilt here; its text and traceback are kept."""


class RemoteTraceback(Exception):  # noqa: N818 - a traceback, not an error
    """Attached as ``__cause__`` of a task's exception: the traceback where it was raised."""

    def __init__(self, traceback: str) -> None:
        super().__init__(traceback)
        self.traceback = traceback

    def __str__(self) -> str:
        return f'\n"""\n{self.traceback}"""'


class JobFailedError(RuntimeError):
    """A dataflow job failed for good (its restart strategy gave up); the message has every
    failure."""


class UnfitError(ValueError):
    """A dataflow job can never fit the cluster's registered workers (the message says why)."""


class SqlError(ValueError):
    """A SQL statement or Table API expression pydispatch cannot run, said as a SQL user would:
    a syntax error with its position, an unknown table or column by name, a type mismatch by
    the types, an unsupported construct by name. ``line`` and ``column`` (1-based) locate it in
    the statement when known."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line = line
        self.column = column
