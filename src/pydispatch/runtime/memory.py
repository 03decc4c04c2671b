"""Memory settings of the long-running processes that move frames: the dispatcher and slots.

glibc's malloc, tuned for processes that receive large frames (``keep_large_buffers``), and
Python's cyclic garbage collector, made to run less often (``collect_less_often``).

libzmq receives a large frame straight into a ``malloc`` block of the frame's size. Left to
itself, glibc serves such blocks with ``mmap`` or returns the freed top of the heap to the
kernel as soon as more than a few MiB are free, so the next batch of frames page-faults all its
memory in again: 256 faults per MiB, which measured as half the cost of moving 1 MiB numpy
arguments through the dispatcher. Here blocks up to 32 MiB come from the heap and up to
``keep_free`` bytes of freed heap stay mapped, so a process that moved a batch of large
frames moves the next one without faulting. The price is memory: the process keeps up to
``keep_free`` bytes of free heap top, plus what fragmentation strands among heap blocks that
glibc would otherwise have given back one by one (measured: about 45 bytes more per queued
task in the dispatcher with a million queued, 970 instead of 920).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
from typing import Final

__all__ = ["collect_less_often", "keep_large_buffers"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
# glibc refuses larger values on 64-bit (its DEFAULT_MMAP_THRESHOLD_MAX).
_HEAP_BLOCKS_UP_TO: Final = 32 << 20


def keep_large_buffers(keep_free: int) -> bool:
    """Serve blocks up to 32 MiB from the heap and keep up to ``keep_free`` bytes of freed heap.

    Returns whether the allocator took the settings (False off glibc, where nothing changes).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # this process's own symbols: its C library's
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCKS_UP_TO)) and bool(
        mallopt(_M_TRIM_THRESHOLD, max(0, min(keep_free, 2**31 - 1)))
    )
    if not ok:
        log.info("malloc did not take the large-buffer settings; frames may page-fault")
    return ok


# Allocations between two young-generation collections (CPython's default: 700). The
# dispatcher allocates about ten container objects per task, so by default it collected every
# ~70 tasks and, now and then, walked every queued task in a full collection.
_YOUNG_COLLECTION_EVERY: Final = 50_000


def collect_less_often() -> None:
    """Freeze what start-up allocated (never collectable) and collect young objects about
    70x less often (10k no-op tasks: 6-12% faster, three interleaved pairs). Cyclic garbage
    is still collected, later; reference counting frees everything else at once, as ever."""
    gc.freeze()
    gc.set_threshold(_YOUNG_COLLECTION_EVERY, 10, 10)
