"""A slot's choices when messages reach it between two tiny tasks (slot_probe.py drives one).

Between tiny tasks a slot reads its socket only every 200 us, to save the cost of a look per
task; these pin what must not be lost to that: a Kill is honoured before its attempt starts
(the worker has answered "cancelled before it started" for it), and a higher-priority attempt
that came before the next one started goes first.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PROBE = Path(__file__).parents[1] / "_support" / "slot_probe.py"
N = 30


def _probe(kind: str) -> Any:
    out = subprocess.run(
        [sys.executable, str(PROBE), kind, str(N)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def _ran(kind: str) -> list[str]:
    ran: list[str] = _probe(kind)
    return ran


def test_a_kill_that_came_while_a_tiny_task_ran_stops_the_next_attempt() -> None:
    ran = _ran("kill")
    assert [r for r in ran if r.startswith("A")] == [f"A{i}" for i in range(N)]
    assert [r for r in ran if r.startswith("B")] == []


def test_a_higher_priority_attempt_that_came_meanwhile_goes_first() -> None:
    ran = _ran("priority")
    assert sorted(ran) == sorted([f"{x}{i}" for i in range(N) for x in "AHL"])
    late = [i for i in range(N) if ran.index(f"L{i}") < ran.index(f"H{i}")]
    assert late == []


def test_after_a_task_reported_running_the_slot_waits_for_earlier_kills() -> None:
    # Behind a task its slot reported running, a cancelled attempt is counted cancelled as its
    # Kill leaves (cancel() is True at once); the task may end before that Kill arrives. The
    # slot's Done of that task asks for a sync, and the next attempt waits for its answer,
    # which comes after every Kill sent before: the cancelled attempt never runs.
    report = _probe("sync")
    assert report["sync"] != 0
    assert report["before_kill"] == ["A"]
    assert report["ran"] == ["A"]
    assert report["b"] == "cancelled"
