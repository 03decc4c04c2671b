"""Where a cluster job's slices should run: the solver's pins, and the record of its claim.

Split from :class:`~pydispatch.dataflow.job_run.JobRun` because choosing workers is a question
of the plan and the cluster's capacity alone (the job master only asks it when it deploys the
whole job), and because its record (``metrics()["placement"]``: pinned or not and why, the
solver's objective and bound) is what users read to judge the placement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..plan import ExecutionGraph, placement_input, placement_problem, why_not_fit

if TYPE_CHECKING:
    from ..runtime.client import Client

__all__ = ["place_slices"]


def place_slices(
    plan: ExecutionGraph, client: Client
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Pin each slice to a worker chosen by the solver (compute and the plan's traffic
    estimates between slices, over the workers' free capacity; their total capacity if the
    job does not fit what is free now). No pins (the dispatcher places) if the solver is
    unavailable or finds nothing. Returns each slice's labels and the placement's record,
    which says which happened."""
    if plan.n_slots == 1:  # no traffic between slices: any free slot is as good
        return [{}], {"pinned": False, "reason": "one slice: the dispatcher places it"}
    free: list[dict[str, float]] = []
    total: list[dict[str, float]] = []
    try:
        workers = [w for w in client.status().workers if not w.draining]
        for w in workers:
            free.append({"slots": float(w.slots - w.slots_used), **w.free_resources})
            total.append({"slots": float(w.slots), **w.resources})
        data = placement_input(plan)
        capacity = free if why_not_fit(data, free) is None else total
        from ..solver import solve

        placement = solve(placement_problem(data, capacity), time_limit=1.0)
    except Exception as error:  # placement is an optimisation: fall back, say why
        unpinned: list[dict[str, str]] = [{} for _ in range(plan.n_slots)]
        return unpinned, {"pinned": False, "reason": f"{type(error).__name__}: {error}"}
    names = [workers[int(w)].name for w in placement.assignment]
    record = {
        "pinned": True,
        "workers": names,
        "method": placement.method,
        # the claim of the placement: its cost, a proven lower bound, how far apart
        "objective": placement.objective,
        "lower_bound": placement.lower_bound,
        "gap": placement.gap,
        "bound_method": placement.bound_method,
        "plan": plan.describe(placement),
    }
    return [{"worker": name} for name in names], record
