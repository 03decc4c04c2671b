"""Cold start as a new user meets it: the seed example as a whole fresh process.

Run: ``python -m pytest bench/bench_cold_start.py -q -s`` (``-s`` shows the figures).

Each round runs ``python -c SCRIPT`` in a subprocess and times it from start to exit: the
interpreter, ``import pydispatch.stream``, the embedded cluster's start (a dispatcher, two workers
and their slot processes), the job, the cluster's teardown and the interpreter's exit. The
baseline is ``python -c pass`` in the same run, so the ratio is against what any Python program
costs on this machine. Variants:

- the seed example closing its environment (``with StreamEnvironment.local(...) as env``);
- the same never closing it (the cluster is ended at interpreter exit);
- ``import pydispatch.stream`` alone, to tell the import from the rest.

``python bench/bench_cold_start.py [ROUNDS] [SRC ...]`` prints, per round, the seed example's wall
time and the CPU time of every process it ran (the interpreter, the cluster's host, the
dispatcher, the workers and their slots: this process becomes a child subreaper, so the slots a
killed worker leaves are reaped and counted here), next to ``python -c pass``: on a loaded
machine the CPU total is the figure that does not depend on the neighbours. With ``SRC``
directories (say a ``git archive`` of main with its ``_core`` extension, and this tree's
``src``), the seed example runs with each as ``PYTHONPATH``, interleaved round by round (the
order alternating), so that before and after meet the same neighbours.

Why a subprocess rather than timing inside this process (as ``bench_stream``'s cold-start
benchmark does): the import, the teardown and the interpreter's exit are part of what the user
waits for, and only a process of its own measures them.
"""

from __future__ import annotations

import ctypes
import os
import resource
import statistics
import subprocess
import sys
import textwrap
import time
from typing import Any

ROUNDS = 5

SEED = """
from pydispatch.stream import StreamEnvironment

with StreamEnvironment.local(workers=2) as env:
    assert env.from_elements([1, 2, 3, 4, 5]).map(lambda x: x + 1).collect() == [2, 3, 4, 5, 6]
"""

SEED_NEVER_CLOSED = """
from pydispatch.stream import StreamEnvironment

env = StreamEnvironment.local(workers=2)
assert env.from_elements([1, 2, 3, 4, 5]).map(lambda x: x + 1).collect() == [2, 3, 4, 5, 6]
"""

GROUP = "seed example, whole process (processes)"


def _process(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # quiet: no traceback, no warning at exit


def bench_python_pass(benchmark: Any, record: Any) -> None:
    benchmark.pedantic(_process, args=("pass",), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    record(GROUP, "python -c pass", 1, baseline=True)


def bench_import_stream(benchmark: Any, record: Any) -> None:
    benchmark.pedantic(
        _process,
        args=("import pydispatch.stream",),
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=1,
    )
    record(GROUP, "import pydispatch.stream", 1)


def bench_seed_example_process(benchmark: Any, record: Any) -> None:
    benchmark.pedantic(_process, args=(SEED,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    record(GROUP, "seed example, local(workers=2), closed", 1)


def bench_seed_example_never_closed_process(benchmark: Any, record: Any) -> None:
    benchmark.pedantic(
        _process, args=(SEED_NEVER_CLOSED,), rounds=ROUNDS, iterations=1, warmup_rounds=1
    )
    record(GROUP, "seed example, never closed (ended at exit)", 1)


_PR_SET_CHILD_SUBREAPER = 36  # prctl(2): orphaned descendants are reparented to us


def _cpu_and_wall(code: str) -> tuple[float, float]:
    """Wall time of ``python -c code`` and the CPU time of every process it started."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    _process(code)
    wall = time.perf_counter() - started
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the orphans (slots of killed workers): reap them
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if not pid:
            time.sleep(0.01)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(rounds: int, sources: list[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    variants: list[tuple[str, str | None]] = [("seed", None)]
    if sources:
        variants = [(f"seed {source}", source) for source in sources]
    figures: dict[str, list[tuple[float, float]]] = {"pass": []}
    figures.update((name, []) for name, _ in variants)
    for round_ in range(rounds):
        figures["pass"].append(_cpu_and_wall("pass"))
        for name, source in variants if round_ % 2 == 0 else variants[::-1]:
            if source is not None:
                os.environ["PYTHONPATH"] = os.path.abspath(source)
            figures[name].append(_cpu_and_wall(SEED))
    for name, runs in figures.items():
        walls = ", ".join(f"{wall:.2f}" for wall, _ in runs)
        cpus = ", ".join(f"{cpu:.2f}" for _, cpu in runs)
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{name}: median wall {wall:.3f} s, CPU {cpu:.3f} s  (walls {walls}; CPU {cpus})")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS, sys.argv[2:])
