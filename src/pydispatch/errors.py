"""Exceptions a task's future can raise besides the task's own (kept import-light: slot
processes import this module)."""

from __future__ import annotations


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
