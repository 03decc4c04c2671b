"""Every benchmark file contributes benchmarks: a misnamed function (bench/ collects ``bench_*``)
would otherwise make `python -m pytest bench` skip it silently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_every_bench_file_collects() -> None:
    # The package's sources first, by absolute path: the run's cwd is bench/.
    src = str(BENCH.parent / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(BENCH),
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=BENCH,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    counts = {}
    for line in result.stdout.splitlines():
        name, _, count = line.partition(": ")
        if name.endswith(".py") and count.strip().isdigit():
            counts[Path(name).name] = int(count)
    files = {p.name for p in BENCH.glob("bench_*.py") if "def bench_" in p.read_text()}
    assert files, "no benchmark files found"
    assert {f for f in files if counts.get(f, 0) == 0} == set(), counts
