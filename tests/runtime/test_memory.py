"""The allocator settings of processes that receive large frames: freed frame buffers stay
mapped, so the next batch of frames does not page-fault its memory in again."""

from __future__ import annotations

import subprocess
import sys

import cloudpickle
import numpy as np

from pydispatch.runtime.cluster import LocalCluster
from pydispatch.runtime.memory import keep_large_buffers

cloudpickle.register_pickle_by_value(sys.modules[__name__])

# Allocates and frees 100 blocks of 1 MiB, as a batch of received frames would, and prints the
# page faults of one such batch once the process has seen two.
_BATCHES = """
import resource, sys
from pydispatch.runtime.memory import keep_large_buffers
if sys.argv[1] == "tuned":
    assert keep_large_buffers(256 << 20)
def batch():
    blocks = [bytearray(1 << 20) for _ in range(100)]
    del blocks
batch(); batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    batch()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


def _faults_per_batch(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _BATCHES, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_tuned_process_reuses_freed_frame_buffers() -> None:
    # 100 MiB is 25,600 pages: untuned, glibc gives the freed heap back and faults it in again.
    assert _faults_per_batch("plain") > 10_000
    assert _faults_per_batch("tuned") < 500


def test_refuses_nothing_it_cannot_set() -> None:
    assert keep_large_buffers(-5) in (True, False)  # clamped to 0, never an error


def _first(a: np.ndarray) -> float:
    return float(a[0])


def _minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[7])


def test_dispatcher_moves_a_second_batch_of_large_arguments_without_faulting() -> None:
    arrays = [np.full(131_072, i, dtype=np.float64) for i in range(40)]  # 40 MiB
    with LocalCluster(workers=1, slots=1) as cluster, cluster.client() as client:
        assert cluster.dispatcher is not None
        pid = cluster.dispatcher.pid
        assert [f.result() for f in [client.submit(_first, a) for a in arrays]] == list(range(40))
        before = _minor_faults(pid)
        assert [f.result() for f in [client.submit(_first, a) for a in arrays]] == list(range(40))
        # Faulting the batch in again would be 40 x 256 = 10,240 faults.
        assert _minor_faults(pid) - before < 2_000
