"""The time limit shapes what a solve does, and the placement says what that was.

Each optional phase (a bound, one LP per topology level, the search) runs only when its
expected cost fits in the time left, and every phase, run or left out, is a ``SolveStep`` of
``Placement.steps``. No assertion here is on a duration: a limit far below any phase's cost
must leave phases out (more load only leaves out more), a limit far above must leave none out.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pydispatch.solver import PlacementProblem, SolveStep, solve
from pydispatch.solver import _bounds as bounds
from pydispatch.solver import _native as native
from pydispatch.solver._steps import StepLog


def keyed_job(par: int = 150, workers: int = 60) -> PlacementProblem:
    """source -> (keyed shuffle) -> map -> sink: three operators of ``par`` subtasks on
    workers in zones of 12 and racks of 4 (a job shaped like the benchmark's keyed pipeline)."""
    i = np.arange(par)
    a, b = (x.ravel() for x in np.meshgrid(i, i, indexing="ij"))
    src = np.concatenate([a, par + i])
    dst = np.concatenate([par + b, 2 * par + i])
    vol = np.concatenate([np.full(par * par, 1.0 / par), np.full(par, 2.0)])
    w = np.arange(workers)
    return PlacementProblem(
        np.repeat([[1.0], [2.0], [1.0]], par, axis=0),
        np.full((workers, 1), 16.0),
        traffic=(src, dst, vol),
        locations=np.column_stack([w // 12, w // 4]),
        level_distance=[0.0, 1.0, 4.0, 10.0],
    )


def test_a_limit_below_every_phase_leaves_the_bounds_out_and_says_so() -> None:
    p = keyed_job()
    placed = solve(p, "local", time_limit=1e-4)
    names = [s.name for s in placed.steps]
    # the placement itself is never left out: build and construction always run
    assert names[:2] == ["build", "construct"]
    assert all(isinstance(s, SolveStep) and s.seconds >= 0 for s in placed.steps)
    skipped = placed.skipped
    assert "bound:kinds" in skipped
    assert "local-search" in skipped
    assert all(s.outcome.startswith("skipped: ") for s in placed.steps if s.skipped)
    assert "left out for time: " in placed.describe()
    assert placed.time_limit == 1e-4
    # what is left is still a valid bound: the Lagrangian (ms, always run) and no network part
    assert 0.0 <= placed.lower_bound <= placed.objective
    assert placed.bound_method.endswith("+volume")


def test_a_generous_limit_runs_every_phase_and_proves_more() -> None:
    p = keyed_job()
    short = solve(p, "local", time_limit=1e-4)
    # the bound gets up to 2 s of it (about 0.3 s idle), the search the rest
    placed = solve(p, "local", time_limit=3.0)
    assert placed.skipped == []
    names = [s.name for s in placed.steps]
    assert {"build", "construct", "bound:compute", "bound:kinds", "bound:pairs"} <= set(names)
    # one joint LP per level of sharing: two topology levels and the worker
    lps = [s for s in placed.steps if s.name.startswith("bound:lp[")]
    assert sorted(s.name for s in lps) == [
        "bound:lp[level0]",
        "bound:lp[level1]",
        "bound:lp[worker]",
    ]
    assert names[-1] == "local-search"
    assert placed.bound_method.split("+")[1].startswith("shuffle")
    assert placed.lower_bound > short.lower_bound
    assert placed.lower_bound <= placed.objective <= short.objective + 1e-9
    assert placed.gap < short.gap


def test_the_lps_are_budgeted_level_by_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """Coarse levels first; a level whose LP is estimated not to fit in the time left is
    named as left out and keeps its pair bound, which is still a valid (weaker) bound."""
    p = keyed_job()
    nat = native.build(p)
    log = StepLog.within(3600.0)
    full, method = bounds.network_bound(p, nat, log=log)
    lps = [s for s in log.steps if s.name.startswith("bound:lp[")]
    assert [s.name for s in lps] == ["bound:lp[level0]", "bound:lp[level1]", "bound:lp[worker]"]
    assert not any(s.skipped for s in lps)
    assert method == "shuffle-lp"
    # an LP estimated to need more than the hour left: every level left out, by name
    monkeypatch.setattr(bounds, "_LP_FIRST_ESTIMATE", 7200.0)
    log = StepLog.within(3600.0)
    pairs_only, method = bounds.network_bound(p, nat, log=log)
    lps = [s for s in log.steps if s.name.startswith("bound:lp")]
    assert lps
    assert all(s.skipped for s in lps)
    assert method == "shuffle"
    assert 0.0 < pairs_only <= full


def test_step_log_shares_its_record_and_keeps_the_sooner_deadline() -> None:
    log = StepLog(time.perf_counter() + 3600.0)
    log.graph_pass = 0.25
    sub = log.until(10.0)
    assert sub.deadline <= log.deadline
    assert sub.graph_pass == 0.25
    assert log.until(1e9).deadline == log.deadline
    assert sub.affords("cheap", 0.0)
    assert not sub.affords("dear", 100.0)
    sub.done("phase", time.perf_counter(), "done")
    assert [s.name for s in log.steps] == ["dear", "phase"]
    assert log.steps[0].skipped
    assert log.steps[0].outcome.startswith("skipped: needs ~100")
    assert not log.steps[1].skipped


def test_every_method_reports_its_steps() -> None:
    rng = np.random.default_rng(3)
    T, W = 30, 5
    p = PlacementProblem(
        rng.integers(1, 10, (T, 1)).astype(float),
        np.full((W, 1), 40.0),
        cost=rng.integers(1, 20, (T, W)).astype(float),
    )
    greedy = solve(p, "greedy", time_limit=5.0)
    assert [s.name for s in greedy.steps][:3] == ["build", "construct", "bound:lagrangian"]
    cp = solve(p, "cpsat", time_limit=5.0)
    assert "cpsat" in [s.name for s in cp.steps]
    cp_step = next(s for s in cp.steps if s.name == "cpsat")
    assert "cost" in cp_step.outcome
    assert "bound" in cp_step.outcome
    base = solve(p, "first_fit")
    assert [s.name for s in base.steps][:2] == ["build", "first_fit"]
