"""The command line, run as a user runs it: a separate process."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_and_reports() -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "pydispatch", "demo",
            "--items", "20000", "--rows", "200000", "--parts", "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "embedded cluster of 3 workers up" in out
    assert "map(square) over 20,000 items" in out
    assert "(result checked)" in out
    # Resource- and label-constrained tasks ran on the only worker that has what they need.
    for kind in ("gpu", "zone=b", "8 GiB"):
        line = next(line for line in out.splitlines() if line.startswith(f"    {kind:<7} ->"))
        assert line.split("->")[1].strip().startswith("gpu-box x")
        assert "," not in line  # and nowhere else
    assert "no registered worker could ever run this task" in out
    assert "partitioning 200,000 generated records across 8 subtasks" in out
    assert "sum of amounts kept: True" in out
    for scheme in ("hash", "flink", "kafka"):
        assert f"{scheme:<5} scheme, 1M str keys" in out
    assert "range(0, 16)" in out  # Flink's key groups of subtask 0 of 8 at max parallelism 128


def test_unknown_command_fails_with_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pydispatch", "frobnicate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr


def test_demo_into_a_closed_pipe_exits_quietly() -> None:
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    demo = subprocess.run(
        [sys.executable, "-m", "pydispatch", "demo", "--items", "1000", "--rows", "100000"],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    assert reader.stdin is not None
    reader.stdin.close()
    reader.wait(timeout=30)
    assert demo.returncode == 0
    assert "Traceback" not in demo.stderr
