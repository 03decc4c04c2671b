"""How many attempts the scheduler queues on a slot beyond the running one, by default.

A module of its own so that a process naming the default (a ``LocalCluster``, the command
line) imports neither the dispatcher nor the scheduler's vocabulary (~10-80 ms at start).
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_PREFETCH"]

# Attempts queued on a slot beyond the running one, at most (the scheduler also bounds them
# by about 2 ms of measured work, so this cap binds only for tasks under ~30 us): small tasks
# then never wait for a dispatcher round trip, and a slot that never runs dry is never woken
# (on 2 cores, waking one cost the dispatcher more than sending it work: 16 -> 64 took 10k
# no-ops from ~42k to ~56k tasks/s). 0 = exact priorities and fair share.
DEFAULT_PREFETCH: Final = 64
