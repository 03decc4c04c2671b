"""The result of a placement, the infeasibility error, and the checks behind both."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ._problem import PlacementProblem

__all__ = ["InfeasibleError", "Placement", "SolveStep", "check_necessary", "verify"]


class InfeasibleError(ValueError):
    """No placement satisfies every capacity and constraint (or none was found in time).

    ``proven`` says whether infeasibility is proven; ``task``/``resource``/``worker`` and
    ``shortfall`` locate the reason when one constraint alone explains it.
    """

    def __init__(
        self,
        message: str,
        *,
        proven: bool,
        task: int | None = None,
        resource: str | None = None,
        worker: int | None = None,
        shortfall: float | None = None,
    ) -> None:
        super().__init__(message)
        self.proven = proven
        self.task = task
        self.resource = resource
        self.worker = worker
        self.shortfall = shortfall


@dataclass(frozen=True)
class SolveStep:
    """One phase of a solve, in the order run: what it was, its wall time, what came of it.

    ``name`` is e.g. ``construct``, ``bound:compute``, ``bound:kinds``, ``bound:lp[zone]``,
    ``local-search``, ``cpsat``; ``outcome`` says what it gave or, for a phase left out,
    why (``skipped: ...``), so a caller sees how its time limit shaped the result."""

    name: str
    seconds: float
    outcome: str

    @property
    def skipped(self) -> bool:
        return self.outcome.startswith("skipped")


@dataclass(frozen=True)
class Placement:
    """Where each task runs, what it costs and how far from optimal it can be at most."""

    assignment: NDArray[np.int32]
    objective: float
    compute_cost: float
    network_cost: float
    lower_bound: float
    status: str  # "optimal" (proven) or "feasible"
    method: str
    wall_time: float
    usage: NDArray[np.float64]  # (workers, resources)
    resources: tuple[str, ...] = field(default=())
    # which bound lower_bound is: "cpsat", "flow", or the compute part's bound ("capacity-free",
    # "lagrangian", "lp") and after a "+" the network part's ("knapsack", "shuffle")
    bound_method: str = ""
    # what the solve did, phase by phase (see SolveStep): which bounds ran, which the time
    # limit left out, how long the search had
    steps: tuple[SolveStep, ...] = ()
    time_limit: float = math.inf

    @property
    def gap(self) -> float:
        """(objective - lower_bound) / |objective|: 0 when proven optimal."""
        if self.status == "optimal":
            return 0.0
        if not math.isfinite(self.lower_bound):
            return math.inf
        diff = max(self.objective - self.lower_bound, 0.0)
        if diff <= 1e-9 * max(1.0, abs(self.objective)):
            return 0.0
        return diff / max(abs(self.objective), 1e-12)

    @property
    def tasks_per_worker(self) -> NDArray[np.int64]:
        return np.bincount(self.assignment, minlength=self.usage.shape[0])

    def describe(self) -> str:
        """One line: cost (compute + network), the proven bound and which one, the gap."""
        bound = f"{self.lower_bound:.6g}" + (f" ({self.bound_method})" if self.bound_method else "")
        return (
            f"cost {self.objective:.6g} (compute {self.compute_cost:.6g}, network "
            f"{self.network_cost:.6g}), lower bound {bound}, gap {self.gap:.2%}, "
            f"{self.status} by {self.method} in {self.wall_time:.3f}s"
            + (f" (left out for time: {', '.join(skipped)})" if (skipped := self.skipped) else "")
        )

    @property
    def skipped(self) -> list[str]:
        """The phases the time limit left out (names of :attr:`steps` marked skipped)."""
        return [s.name for s in self.steps if s.skipped]

    def __repr__(self) -> str:
        return (
            f"Placement(method={self.method!r}, status={self.status!r}, "
            f"objective={self.objective:.6g}, lower_bound={self.lower_bound:.6g}, "
            f"bound_method={self.bound_method!r}, gap={self.gap:.3%}, "
            f"wall_time={self.wall_time:.3f}s)"
        )


def _usage(p: PlacementProblem, assign: NDArray[np.int32]) -> NDArray[np.float64]:
    usage = np.zeros((p.n_workers, p.n_resources))
    np.add.at(usage, assign, p.demand)
    return usage


def verify(p: PlacementProblem, assign: NDArray[np.int32]) -> NDArray[np.float64]:
    """Raise AssertionError-free ValueError if `assign` breaks a constraint; return the usage.
    This is the last gate before a Placement leaves the solver: never a partial placement."""
    if assign.shape != (p.n_tasks,) or (assign < 0).any() or (assign >= p.n_workers).any():
        raise RuntimeError("internal error: incomplete assignment")
    usage = _usage(p, assign)
    cap = p.capacity
    tol = 1e-9 * np.maximum(1.0, np.where(np.isfinite(cap), cap, 0.0).max(initial=1.0))
    over = usage > cap + tol
    if over.any():
        w, r = (int(i) for i in np.argwhere(over)[0])
        raise RuntimeError(f"internal error: worker {w} over capacity on {p.resources[r]!r}")
    if p.pinned is not None and ((p.pinned >= 0) & (p.pinned != assign)).any():
        raise RuntimeError("internal error: a pinned task moved")
    cls = p.task_class >= 0
    if cls.any() and not p.class_mask[p.task_class[cls], assign[cls]].all():
        raise RuntimeError("internal error: a task on a forbidden worker")
    if p.anti_affinity is not None:
        g = p.anti_affinity
        on = g >= 0
        dom = p.anti_affinity_domain[assign[on]]
        n_dom = int(p.anti_affinity_domain.max()) + 1
        counts = np.bincount(g[on].astype(np.int64) * n_dom + dom, minlength=0)
        if counts.size:
            groups = np.arange(counts.size) // n_dom
            if (counts > p.anti_affinity_limit[groups]).any():
                raise RuntimeError("internal error: anti-affinity limit exceeded")
    return usage


def check_necessary(p: PlacementProblem) -> None:
    """Raise InfeasibleError (proven) for the simple reasons: a task that fits on no allowed
    worker even when empty, a resource the cluster has too little of in total, pinned tasks
    that overfill their worker, an anti-affinity group with too few domains."""
    cap = p.capacity
    _check_pins(p)
    # tasks come in few kinds (same demand, affinity class and pin): check one of each kind
    pin = p.pinned if p.pinned is not None else np.full(p.n_tasks, -1, np.int32)
    kinds = np.column_stack([p.demand, p.task_class, pin])
    _, first = np.unique(kinds, axis=0, return_index=True)
    for t in (int(i) for i in np.sort(first)):
        mask = p.worker_mask(t)
        if not mask.any():
            raise InfeasibleError(
                f"task {t} has no allowed worker (affinity/selectors exclude every worker)",
                proven=True,
                task=t,
            )
        short = p.demand[t][None, :] - cap[mask]  # > 0 where the worker lacks room
        worst = short.max(axis=1, initial=-np.inf)
        if (worst <= 1e-9).any():
            continue
        best = int(np.argmin(worst))
        r = int(np.argmax(short[best]))
        w = int(np.flatnonzero(mask)[best])
        raise InfeasibleError(
            f"task {t} fits on no allowed worker: it needs {p.resources[r]}="
            f"{p.demand[t, r]:g} but the closest candidate, worker {w}, has "
            f"{cap[w, r]:g} (short by {short[best, r]:g})",
            proven=True,
            task=t,
            resource=p.resources[r],
            worker=w,
            shortfall=float(short[best, r]),
        )
    total = p.demand.sum(axis=0)
    offer = cap.sum(axis=0)
    for r in range(p.n_resources):
        if total[r] > offer[r] * (1 + 1e-12) + 1e-9:
            raise InfeasibleError(
                f"resource {p.resources[r]!r}: the tasks demand {total[r]:g} in total but "
                f"the workers offer {offer[r]:g} (short by {total[r] - offer[r]:g})",
                proven=True,
                resource=p.resources[r],
                shortfall=float(total[r] - offer[r]),
            )
    if p.pinned is not None and (p.pinned >= 0).any():
        on = p.pinned >= 0
        usage = np.zeros_like(cap)
        np.add.at(usage, p.pinned[on], p.demand[on])
        over = usage - cap
        if (over > 1e-9).any():
            w, r = (int(i) for i in np.argwhere(over > 1e-9)[0])
            raise InfeasibleError(
                f"worker {w}: its pinned tasks need {p.resources[r]}={usage[w, r]:g} but it "
                f"has {cap[w, r]:g} (short by {over[w, r]:g})",
                proven=True,
                resource=p.resources[r],
                worker=w,
                shortfall=float(over[w, r]),
            )
    if p.anti_affinity is not None:
        n_dom = int(np.unique(p.anti_affinity_domain).size)
        sizes = np.bincount(p.anti_affinity[p.anti_affinity >= 0])
        for g, size in enumerate(sizes):
            room = int(p.anti_affinity_limit[g]) * n_dom
            if size > room:
                raise InfeasibleError(
                    f"anti-affinity group {g} has {size} tasks but at most {room} can be "
                    f"placed ({p.anti_affinity_limit[g]} per domain x {n_dom} domains)",
                    proven=True,
                    shortfall=float(size - room),
                )


def _check_pins(p: PlacementProblem) -> None:
    """A pin is a promise of where a task runs: one its own constraints break is no placement
    at all (else every method would place it there and :func:`verify` would call the result a
    bug). The pin wins over the allowed workers in :meth:`PlacementProblem.worker_mask`, so
    this is checked here, for both."""
    if p.pinned is None:
        return
    on = np.flatnonzero((p.pinned >= 0) & (p.task_class >= 0))
    if on.size:
        forbidden = ~p.class_mask[p.task_class[on], p.pinned[on]]
        if forbidden.any():
            t = int(on[np.argmax(forbidden)])
            w = int(p.pinned[t])
            why = "its allowed mask forbids" if p.allowed is not None else "its selectors forbid"
            raise InfeasibleError(
                f"task {t} is pinned to worker {w}, which {why}",
                proven=True,
                task=t,
                worker=w,
            )
    if p.anti_affinity is not None:
        pinned = np.flatnonzero((p.pinned >= 0) & (p.anti_affinity >= 0))
        if pinned.size:
            group = p.anti_affinity[pinned].astype(np.int64)
            domain = p.anti_affinity_domain[p.pinned[pinned]].astype(np.int64)
            pairs, counts = np.unique(np.column_stack([group, domain]), axis=0, return_counts=True)
            over = counts > p.anti_affinity_limit[pairs[:, 0]]
            if over.any():
                g, d = (int(x) for x in pairs[np.argmax(over)])
                raise InfeasibleError(
                    f"anti-affinity group {g}: {int(counts[np.argmax(over)])} of its tasks are "
                    f"pinned to domain {d} but at most {int(p.anti_affinity_limit[g])} may "
                    "share one",
                    proven=True,
                )
