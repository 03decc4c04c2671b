"""Outcomes of attempts this scheduler did not place, kept until their task comes (back).

A dispatcher that restarted knows nothing of the attempts its previous incarnation sent: the
slots holding them go on running them and report their outcomes, each naming its task (its
client's identity and the client's task id, see ``RunSpec.owner``). The clients resubmit
every unresolved task under the same id (they own their tasks), but not necessarily before
those outcomes arrive: an outcome that finds no live task waits here until its task is
submitted again (it then resolves at once, without running again) or until it is too old to
be wanted (its client is presumed gone, or took no interest any more).

Pure: no clock of its own; the scheduler passes ``now``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from .vocabulary import AttemptOutcome

__all__ = ["OrphanOutcomes", "TaskKey"]

TaskKey = tuple[bytes, int]  # (client identity, its task id)

_KEEP_FOR: Final = 120.0  # seconds: longer than a client takes to notice a restart (a hello)
_AT_MOST: Final = 100_000  # outcomes kept at most (each holds its result's frames)


class OrphanOutcomes:
    """Outcomes by task key, oldest first, each kept for ``keep_for`` seconds at most."""

    def __init__(self, keep_for: float = _KEEP_FOR, at_most: int = _AT_MOST) -> None:
        self.keep_for = keep_for
        self.at_most = at_most
        self._kept: OrderedDict[TaskKey, tuple[float, AttemptOutcome]] = OrderedDict()
        self.dropped = 0  # expired or pushed out unclaimed

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, key: TaskKey, outcome: AttemptOutcome, now: float) -> None:
        if key in self._kept:
            return  # the first outcome stands: a task resolves once
        self._kept[key] = (now, outcome)
        while len(self._kept) > self.at_most:
            self._kept.popitem(last=False)
            self.dropped += 1

    def take(self, key: TaskKey) -> AttemptOutcome | None:
        kept = self._kept.pop(key, None)
        return None if kept is None else kept[1]

    def expire(self, now: float) -> None:
        while self._kept:
            key, (since, _) = next(iter(self._kept.items()))
            if now - since < self.keep_for:
                return
            del self._kept[key]
            self.dropped += 1
