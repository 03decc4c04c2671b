"""Finding the processes a test module started, and waiting without timing assertions.

Every process inherits its parent's environment, so a tag set in this process's environment
while a module's tests run marks every process they start, however deep (dispatcher, workers,
slots). ``conftest.py`` sets a fresh tag per module and fails the module if a tagged process
outlives it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

ENV = "PYDISPATCH_TEST_TAG"


def tagged_processes(tag: str) -> list[int]:
    """Live processes (other than this one) whose environment carries ``tag``."""
    needle = f"{ENV}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if state != "Z" and needle in environ:
            found.append(int(entry.name))
    return found


def eventually(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for a condition (a liveness bound, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux: from /proc)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(child) for child in f.read().split()]
    return found


def slot_state_path(pid: int) -> str:
    """The state file of the slot process ``pid``, which it keeps mapped (a slot forked from
    its worker has the worker's command line, not its own arguments)."""
    with open(f"/proc/{pid}/maps") as f:
        paths = {line.split(maxsplit=5)[-1].strip() for line in f if "/slot-" in line}
    (path,) = {p for p in paths if p.startswith("/")}
    return path
