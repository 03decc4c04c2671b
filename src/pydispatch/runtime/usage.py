"""What a worker's processes use, for its heartbeats: CPU seconds and resident memory.

Measured with ``psutil`` (portable, and it knows each platform's clock ticks and page sizes)
in the worker's heartbeat thread, never on a task's way. psutil is imported there, on the first
heartbeat, so a worker starts no slower; if it cannot be imported, the figures are zeros.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["ProcessUsage"]


class ProcessUsage:
    """Sums over processes by pid; keeps each ``psutil.Process`` (its CPU times are
    cumulative, and creating one reads /proc). A process gone ends in its last figures'
    absence: CPU seconds of replaced slots are not kept (a counter may step down; Prometheus'
    ``rate`` treats that as a reset)."""

    def __init__(self) -> None:
        self._processes: dict[int, Any] = {}
        self._psutil: Any = None
        self._missing = False

    def measure(self, pids: Iterable[int]) -> tuple[float, int]:
        if self._psutil is None and not self._missing:
            try:
                import psutil
            except ImportError:
                self._missing = True
            else:
                self._psutil = psutil
        if self._psutil is None:
            return 0.0, 0
        psutil = self._psutil
        wanted = set(pids)
        for gone in set(self._processes) - wanted:
            del self._processes[gone]
        cpu, rss = 0.0, 0
        for pid in wanted:
            try:
                process = self._processes.get(pid)
                if process is None:
                    process = self._processes[pid] = psutil.Process(pid)
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
            except psutil.Error:  # it ended meanwhile (a slot being replaced)
                self._processes.pop(pid, None)
        return cpu, rss
