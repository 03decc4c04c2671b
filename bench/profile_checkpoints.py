"""Where checkpoints cost on a slice's hot path: py-spy over the keyed running count's slices.

Run (py-spy installed): ``PYTHONPATH=src python bench/profile_checkpoints.py [INTERVAL] [SECONDS]``
(defaults 0.25 s, 10 s; INTERVAL 0: no checkpoints; ``PROFILE_DIR``: keep py-spy's raw
stacks there). It starts a 2-worker LocalCluster, runs
``bench_checkpoints``'s running count on an endless split source, samples both workers and
their slot processes for SECONDS at 200 Hz, and prints the source's records per second and,
per worker, the samples in checkpoint frames (pre-commit, snapshot, fsync thread, sink
writes) out of all samples. Not a benchmark (py-spy slows what it samples): a breakdown.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_checkpoints as bc
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import StreamEnvironment

cloudpickle.register_pickle_by_value(bc)

SPY = ("py-spy", "record", "--subprocesses", "--nonblocking", "-r", "200", "-f", "raw")
FRAMES = ("pre_commit", "_snapshot", "_sync_and_close", "SinkTransactions.write", "Aligner")


def breakdown(path: str) -> tuple[int, collections.Counter[str]]:
    """All samples of a py-spy raw file, and those under each of FRAMES."""
    text = Path(path).read_text()
    text = re.sub(r'process \d+:".*?";', "", text, flags=re.S)  # (command lines span lines)
    total, found = 0, collections.Counter[str]()
    for stack, count in re.findall(r"^(.*) (\d+)$", text, flags=re.M):
        total += int(count)
        for frame in FRAMES:
            if frame in stack:
                found[frame] += int(count)
    return total, found


def main() -> None:
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 0.25
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    with (
        LocalCluster(workers=2, slots=1, heartbeat_interval=0.2, heartbeat_timeout=2.0) as cluster,
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as out,  # (slices end late)
    ):
        env = StreamEnvironment(cluster, parallelism=2)
        if interval > 0:
            env.enable_checkpointing(interval, storage=os.path.join(out, "chk"))
        source = env.from_source(bc.Counting(10**12, bc.KEYS))
        source.key_by(lambda r: r[0]).sum(1).write_text(os.path.join(out, "o"))
        handle = env.execute("profiled")
        time.sleep(3)  # deployed and running
        keep = os.environ.get("PROFILE_DIR", out)  # where the raw stacks stay, if set
        files = [os.path.join(keep, f"spy-{w.pid}.txt") for w in cluster.workers]
        spies = [
            subprocess.Popen(
                [*SPY, "-d", str(seconds), "-o", f, "-p", str(w.pid)],
                stdout=subprocess.DEVNULL,
            )
            for f, w in zip(files, cluster.workers, strict=True)
        ]
        before, started = handle.metrics()["records_out"], time.monotonic()
        for spy in spies:
            spy.wait()
        after = handle.metrics()["records_out"]
        rate = (after[source.operator.id] - before[source.operator.id]) / (
            time.monotonic() - started
        )
        print(f"interval {interval:g} s: {rate / 1e3:.0f} k records/s while sampled")
        print(f"checkpoints: {handle.metrics().get('checkpoints')}")
        handle.cancel()
        for f in files:
            total, found = breakdown(f)
            shares = ", ".join(f"{k} {v} ({v / total:.1%})" for k, v in found.most_common())
            print(f"  {os.path.basename(f)}: {total} samples; {shares}")


if __name__ == "__main__":
    main()
