"""From an execution graph to the solver's placement problem (private; see ``pydispatch.plan``).

Units of placement. With slot sharing (Flink's default), the unit is a slot: slot ``i`` holds
subtask ``i`` of every chain of parallelism > ``i``, demands one ``slots`` and the sum of its
subtasks' other resources, and traffic between two subtasks of one slot costs nothing (they
share a worker) so it is left out. Without slot sharing, every subtask is a unit demanding one
slot, and its slot group (its index) is passed to the solver as a construction hint only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ._execution import ExecutionGraph


__all__ = [
    "F64",
    "I32",
    "PlacementInput",
    "placement_input",
    "placement_problem",
    "why_not_fit",
    "worker_capacity",
]

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]


@dataclass(frozen=True)
class PlacementInput:
    """The arrays the solver needs, one row per unit (see the module docstring).

    Invariants: ``demand`` is (units x resources) with ``resources[0] == "slots"``; ``work`` has
    one entry per unit; traffic rows are distinct ``(src, dst)`` unit pairs with ``src != dst``
    and a positive ``traffic_volume`` in bytes; ``unit_of_subtask`` maps every subtask to its
    unit; ``slot_group`` is every subtask's slot-sharing group (its subtask index).
    """

    resources: tuple[str, ...]
    demand: F64
    work: F64
    traffic_src: I32
    traffic_dst: I32
    traffic_volume: F64
    unit_of_subtask: I32
    slot_group: npt.NDArray[np.int64]
    slot_sharing: bool

    @property
    def n_units(self) -> int:
        return int(self.demand.shape[0])

    def subtask_workers(self, assignment: npt.ArrayLike) -> I32:
        """The worker of every subtask, given the worker of every unit."""
        units = np.asarray(assignment)
        if units.shape != (self.n_units,):
            raise ValueError(f"assignment needs one worker per unit ({self.n_units})")
        workers: I32 = units[self.unit_of_subtask].astype(np.int32)
        return workers


def why_not_fit(
    data: PlacementInput, workers_capacity: Sequence[Mapping[str, float]] | npt.ArrayLike
) -> str | None:
    """Why the job can never fit these workers, or None if it may (a necessary check only:
    the solver decides). Checks each resource's total, then each unit against every worker."""
    capacity = worker_capacity(workers_capacity, data.resources)
    needed = data.demand.sum(axis=0)
    available = capacity.sum(axis=0)
    for r, name in enumerate(data.resources):
        if needed[r] > available[r] * (1 + 1e-9):
            return f"the job needs {needed[r]:g} {name} in all, the workers have {available[r]:g}"
    fits = np.all(data.demand[:, None, :] <= capacity[None, :, :] * (1 + 1e-9), axis=2)
    stuck = np.flatnonzero(~np.any(fits, axis=1))
    if stuck.size:
        u = int(stuck[0])
        what = "slot" if data.slot_sharing else "subtask"
        need = ", ".join(f"{n}={v:g}" for n, v in zip(data.resources, data.demand[u], strict=True))
        return f"{what} {u} needs {need}: no single worker has that much"
    return None


def placement_input(plan: ExecutionGraph, *, slot_sharing: bool = True) -> PlacementInput:
    """The placement arrays of ``plan`` (see the module docstring)."""
    extra = sorted({name for c in plan.chains for name in c.resources})
    resources = ("slots", *extra)
    n = plan.n_subtasks
    per_subtask = np.zeros((n, len(resources)))
    per_subtask[:, 0] = 1.0
    for c in plan.chains:
        for j, name in enumerate(extra, start=1):
            per_subtask[c.first_subtask : c.first_subtask + c.parallelism, j] = c.resources.get(
                name, 0.0
            )
    work = plan.work()
    slot_group = plan.subtask_index.astype(np.int64)
    if slot_sharing:
        unit_of = plan.subtask_index.astype(np.int32)
        units = plan.n_slots
        demand = np.zeros((units, len(resources)))
        np.add.at(demand, unit_of, per_subtask)
        demand[:, 0] = 1.0  # one slot holds them all
        unit_work = np.zeros(units)
        np.add.at(unit_work, unit_of, work)
    else:
        unit_of = np.arange(n, dtype=np.int32)
        units = n
        demand, unit_work = per_subtask, work
    src = unit_of[plan.channel_src].astype(np.int64)
    dst = unit_of[plan.channel_dst].astype(np.int64)
    volume = plan.channel_bytes
    between = (src != dst) & (volume > 0)
    pair = src[between] * units + dst[between]
    pairs, inverse = np.unique(pair, return_inverse=True)
    summed = np.zeros(pairs.shape[0])
    np.add.at(summed, inverse.reshape(-1), volume[between])
    return PlacementInput(
        resources=resources,
        demand=demand,
        work=unit_work,
        traffic_src=(pairs // units).astype(np.int32),
        traffic_dst=(pairs % units).astype(np.int32),
        traffic_volume=summed,
        unit_of_subtask=unit_of,
        slot_group=slot_group,
        slot_sharing=slot_sharing,
    )


def worker_capacity(
    workers: Sequence[Mapping[str, float]] | npt.ArrayLike, resources: tuple[str, ...]
) -> F64:
    """Capacity (workers x resources): an array in ``resources`` order, or one mapping per
    worker (a resource a worker does not name counts as 0 there)."""
    if isinstance(workers, Sequence) and workers and isinstance(workers[0], Mapping):
        rows = []
        for w, worker in enumerate(workers):
            if not isinstance(worker, Mapping):
                raise TypeError(f"worker {w}: a mapping of resource -> amount expected")
            rows.append([float(worker.get(r, 0.0)) for r in resources])
        return np.asarray(rows, dtype=np.float64)
    capacity = np.asarray(workers, dtype=np.float64)
    if capacity.ndim != 2 or capacity.shape[1] != len(resources):
        raise ValueError(
            f"capacity must be (workers x {len(resources)}) for resources {list(resources)}, "
            f"got shape {capacity.shape}"
        )
    return capacity


def placement_problem(
    plan: ExecutionGraph | PlacementInput,
    workers_capacity: Sequence[Mapping[str, float]] | npt.ArrayLike,
    *,
    slot_sharing: bool = True,
    **options: Any,
) -> Any:
    """A ``pydispatch.solver.PlacementProblem`` for ``plan`` on workers of the given capacity.

    ``options`` go to ``PlacementProblem`` unchanged (``speed``, ``distance``, ``locations``,
    ``level_distance``, ``pinned``...). Without slot sharing the slot groups become the solver's
    ``group_hint``. The solver is imported here, not at module load, so that planning works
    where the solver is not installed.
    """
    from ..solver import PlacementProblem  # type: ignore[import-not-found,unused-ignore]

    data = (
        plan
        if isinstance(plan, PlacementInput)
        else placement_input(plan, slot_sharing=slot_sharing)
    )
    capacity = worker_capacity(workers_capacity, data.resources)
    if not data.slot_sharing:
        options.setdefault("group_hint", data.slot_group)
    return PlacementProblem(
        data.demand,
        capacity,
        list(data.resources),
        work=data.work,
        traffic=(data.traffic_src, data.traffic_dst, data.traffic_volume),
        **options,
    )
