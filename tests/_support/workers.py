"""Workers made in a test's own process and never started: their sockets closed afterwards."""

from __future__ import annotations

import shutil

from pydispatch.runtime.worker import Worker

__all__ = ["close_unstarted"]


def close_unstarted(worker: Worker) -> None:
    """Close what a :class:`Worker` opened when it was made (it was never run)."""
    worker._sock.disable_monitor()
    worker._monitor.close(linger=0)
    worker._sock.close(linger=0)
    worker._context.term()
    shutil.rmtree(worker._tmpdir, ignore_errors=True)
