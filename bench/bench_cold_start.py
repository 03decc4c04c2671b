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

Why a subprocess rather than timing inside this process (as ``bench_stream``'s cold-start
benchmark does): the import, the teardown and the interpreter's exit are part of what the user
waits for, and only a process of its own measures them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
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
