"""A pin that the task's own constraints break: no placement exists, and the solver says why
(``InfeasibleError`` naming the task and the worker) instead of calling its answer a bug."""

from __future__ import annotations

import pytest

from pydispatch.solver import InfeasibleError, PlacementProblem, solve

METHODS = ["auto", "greedy", "local", "cpsat", "first_fit", "least_utilisation"]


@pytest.mark.parametrize("method", METHODS)
def test_a_task_pinned_where_its_selector_forbids_is_infeasible(method: str) -> None:
    problem = PlacementProblem(
        [[1.0], [1.0]],
        [[4.0], [4.0]],
        worker_labels=[{"gpu"}, set()],
        task_selectors=[{"gpu"}, None],
        pinned=[1, -1],
    )
    with pytest.raises(InfeasibleError, match="task 0 is pinned to worker 1") as info:
        solve(problem, method=method, time_limit=2.0)
    assert "selectors forbid" in str(info.value)
    assert (info.value.task, info.value.worker, info.value.proven) == (0, 1, True)


def test_a_task_pinned_outside_its_allowed_mask_is_infeasible() -> None:
    problem = PlacementProblem(
        [[1.0], [1.0], [1.0]],
        [[4.0], [4.0]],
        allowed=[[True, True], [True, True], [True, False]],
        pinned=[-1, 0, 1],
    )
    with pytest.raises(InfeasibleError, match="task 2 is pinned to worker 1") as info:
        solve(problem)
    assert "allowed mask forbids" in str(info.value)


def test_pins_that_break_anti_affinity_are_infeasible() -> None:
    problem = PlacementProblem(
        [[1.0]] * 3, [[4.0]] * 2, anti_affinity=[0, 0, -1], pinned=[1, 1, -1]
    )
    with pytest.raises(InfeasibleError, match="anti-affinity group 0: 2 of its tasks"):
        solve(problem)


def test_pins_that_respect_the_constraints_still_place() -> None:
    problem = PlacementProblem(
        [[1.0], [1.0]],
        [[4.0], [4.0]],
        worker_labels=[{"gpu"}, set()],
        task_selectors=[{"gpu"}, None],
        pinned=[0, 1],
    )
    assert solve(problem).assignment.tolist() == [0, 1]
