"""The placement problem: validated, coerced numpy arrays (see ``pydispatch.solver``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["PlacementProblem"]

F64 = NDArray[np.float64]
I32 = NDArray[np.int32]


def _real(name: str, value: ArrayLike, ndim: int) -> F64:
    arr = np.asarray(value)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if np.isnan(out).any():
        where = tuple(int(i) for i in np.argwhere(np.isnan(out))[0])
        raise ValueError(f"{name} contains NaN at index {where}")
    return out


def _integral(name: str, value: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.int64]:
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _no_neg(name: str, arr: F64) -> None:
    if (arr < 0).any():
        where = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ValueError(f"{name} must be non-negative, {name}{list(where)} = {arr[where]}")


def _finite(name: str, arr: F64) -> None:
    if not np.isfinite(arr).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} must be finite, {name}{list(where)} = {arr[where]}")


def _prefix_groups(labels: NDArray[Any]) -> NDArray[np.int32]:
    """Per level (columns coarse -> fine) a dense id of the label *path* down to that level,
    so two workers share level l only if they share every coarser level too."""
    W, L = labels.shape
    out = np.empty((W, L), dtype=np.int32)
    key = np.zeros(W, dtype=np.int64)
    for level in range(L):
        _, col = np.unique(labels[:, level], return_inverse=True)
        pair = key * (int(col.max()) + 1) + col
        _, key = np.unique(pair, return_inverse=True)
        key = key.astype(np.int64)
        out[:, level] = key
    return out


class PlacementProblem:
    """Subtasks to place on workers: demands, capacities, costs, traffic and constraints.

    Arrays are copied into C-contiguous numpy arrays of one dtype; every problem is reported as
    ``TypeError`` (wrong kind of value) or ``ValueError`` (wrong shape or value) naming the field.

    - ``demand`` (tasks x resources) and ``capacity`` (workers x resources): non-negative;
      capacity may be ``inf`` (no limit).
    - compute cost: a dense ``cost`` (tasks x workers), or ``work`` (tasks) with ``speed``
      (workers, default 1) for cost = work / speed, or nothing (no compute cost).
    - ``traffic``: ``(src, dst, volume)`` between tasks.
    - distance between workers: a dense symmetric ``distance`` (workers x workers), or
      ``locations`` (workers x levels, labels ordered coarse -> fine, e.g. zone, rack, node) with
      ``level_distance`` (levels + 2: same worker, same finest level, ..., same coarsest level,
      nothing shared), non-decreasing. Default: 0 on the same worker, 1 elsewhere.
    - constraints: ``allowed`` (tasks x workers bool), or ``worker_labels`` with
      ``task_selectors`` (a task may run on workers carrying all its selector labels);
      ``anti_affinity`` group per task (-1: none) with ``anti_affinity_limit`` tasks of a group
      per worker (or per ``anti_affinity_level`` of ``locations``); ``pinned`` worker per task
      (-1: free).
    - ``group_hint``: tasks with equal hints are placed one after another by the construction
      (Flink's slot-sharing groups, subtask i of every operator, are a good hint: each zone then
      gets a share of every operator, so shuffles stay local). Never a constraint.
    """

    demand: F64
    capacity: F64
    resources: tuple[str, ...]
    cost: F64 | None
    work: F64 | None
    speed: F64 | None
    traffic_src: I32
    traffic_dst: I32
    traffic_volume: F64
    distance: F64 | None
    locations: NDArray[Any] | None
    level_distance: F64
    level_groups: I32
    allowed: NDArray[np.bool_] | None
    task_class: I32
    class_mask: NDArray[np.bool_]
    anti_affinity: I32 | None
    anti_affinity_limit: I32
    anti_affinity_domain: I32
    pinned: I32 | None
    group_hint: NDArray[np.int64] | None

    def __init__(
        self,
        demand: ArrayLike,
        capacity: ArrayLike,
        resources: Sequence[str] | None = None,
        *,
        cost: ArrayLike | None = None,
        work: ArrayLike | None = None,
        speed: ArrayLike | None = None,
        traffic: tuple[ArrayLike, ArrayLike, ArrayLike] | None = None,
        distance: ArrayLike | None = None,
        locations: ArrayLike | None = None,
        level_distance: ArrayLike | None = None,
        allowed: ArrayLike | None = None,
        worker_labels: Sequence[Collection[str]] | None = None,
        task_selectors: Sequence[Collection[str] | None] | None = None,
        anti_affinity: ArrayLike | None = None,
        anti_affinity_limit: int | ArrayLike = 1,
        anti_affinity_level: int | None = None,
        pinned: ArrayLike | None = None,
        group_hint: ArrayLike | None = None,
    ) -> None:
        self.demand = _real("demand", demand, 2)
        self.capacity = _real("capacity", capacity, 2)
        T, R = self.demand.shape
        W = self.capacity.shape[0]
        if T == 0:
            raise ValueError("demand is empty: a problem needs at least one task")
        if W == 0:
            raise ValueError("capacity is empty: a problem needs at least one worker")
        if self.capacity.shape[1] != R:
            raise ValueError(
                f"demand has {R} resources but capacity has {self.capacity.shape[1]}: "
                "both need one column per resource"
            )
        _finite("demand", self.demand)
        _no_neg("demand", self.demand)
        _no_neg("capacity", self.capacity)
        self.resources = self._names(resources, R)
        self._costs(cost, work, speed, T, W)
        self._traffic(traffic, T)
        self._distances(distance, locations, level_distance, W)
        self._allowed(allowed, worker_labels, task_selectors, T, W)
        self._anti_affinity(anti_affinity, anti_affinity_limit, anti_affinity_level, T, W)
        if pinned is None:
            self.pinned = None
        else:
            pin = _integral("pinned", pinned, (T,))
            if ((pin < -1) | (pin >= W)).any():
                bad = int(np.flatnonzero((pin < -1) | (pin >= W))[0])
                raise ValueError(f"pinned[{bad}] = {pin[bad]} is not a worker in [0, {W}) or -1")
            self.pinned = pin.astype(np.int32)
        self.group_hint = None if group_hint is None else _integral("group_hint", group_hint, (T,))

    @property
    def n_tasks(self) -> int:
        return int(self.demand.shape[0])

    @property
    def n_workers(self) -> int:
        return int(self.capacity.shape[0])

    @property
    def n_resources(self) -> int:
        return int(self.demand.shape[1])

    @property
    def has_traffic(self) -> bool:
        return bool(self.traffic_volume.size) and bool((self.traffic_volume > 0).any())

    def __repr__(self) -> str:
        return (
            f"PlacementProblem(tasks={self.n_tasks}, workers={self.n_workers}, "
            f"resources={list(self.resources)}, edges={self.traffic_volume.size})"
        )

    @staticmethod
    def _names(resources: Sequence[str] | None, R: int) -> tuple[str, ...]:
        if resources is None:
            return tuple(f"r{i}" for i in range(R))
        if isinstance(resources, str) or not all(isinstance(r, str) for r in resources):
            raise TypeError("resources must be a sequence of str")
        names = tuple(resources)
        if len(names) != R:
            raise ValueError(f"resources names {len(names)} columns, demand has {R}")
        if len(set(names)) != len(names):
            raise ValueError(f"resources has duplicate names: {names}")
        return names

    def _costs(
        self,
        cost: ArrayLike | None,
        work: ArrayLike | None,
        speed: ArrayLike | None,
        T: int,
        W: int,
    ) -> None:
        self.cost = self.work = self.speed = None
        if cost is not None:
            if work is not None or speed is not None:
                raise ValueError("give either cost or work/speed, not both")
            c = _real("cost", cost, 2)
            if c.shape != (T, W):
                raise ValueError(f"cost must have shape (tasks, workers) = {(T, W)}, got {c.shape}")
            _finite("cost", c)
            self.cost = c
            return
        if work is None:
            if speed is not None:
                raise ValueError("speed needs work (cost = work / speed)")
            return
        w = _real("work", work, 1)
        if w.shape != (T,):
            raise ValueError(f"work must have shape (tasks,) = {(T,)}, got {w.shape}")
        _finite("work", w)
        _no_neg("work", w)
        s = np.ones(W) if speed is None else _real("speed", speed, 1)
        if s.shape != (W,):
            raise ValueError(f"speed must have shape (workers,) = {(W,)}, got {s.shape}")
        if (s <= 0).any():
            bad = int(np.flatnonzero(s <= 0)[0])
            raise ValueError(f"speed must be positive, speed[{bad}] = {s[bad]}")
        self.work, self.speed = w, s

    def _traffic(self, traffic: tuple[ArrayLike, ArrayLike, ArrayLike] | None, T: int) -> None:
        if traffic is None:
            self.traffic_src = np.zeros(0, np.int32)
            self.traffic_dst = np.zeros(0, np.int32)
            self.traffic_volume = np.zeros(0, np.float64)
            return
        if len(traffic) != 3:
            raise ValueError("traffic must be a tuple (src, dst, volume)")
        vol = _real("traffic volume", traffic[2], 1)
        E = vol.shape[0]
        src = _integral("traffic src", traffic[0], (E,))
        dst = _integral("traffic dst", traffic[1], (E,))
        for name, arr in (("src", src), ("dst", dst)):
            if E and (arr.min() < 0 or arr.max() >= T):
                raise ValueError(f"traffic {name} must be task indices in [0, {T})")
        _finite("traffic volume", vol)
        _no_neg("traffic volume", vol)
        self.traffic_src = src.astype(np.int32)
        self.traffic_dst = dst.astype(np.int32)
        self.traffic_volume = vol

    def _distances(
        self,
        distance: ArrayLike | None,
        locations: ArrayLike | None,
        level_distance: ArrayLike | None,
        W: int,
    ) -> None:
        self.distance = None
        self.locations = None
        if distance is not None:
            if locations is not None or level_distance is not None:
                raise ValueError("give either distance or locations/level_distance, not both")
            d = _real("distance", distance, 2)
            if d.shape != (W, W):
                raise ValueError(f"distance must have shape {(W, W)}, got {d.shape}")
            _finite("distance", d)
            _no_neg("distance", d)
            if not np.array_equal(d, d.T):
                raise ValueError("distance must be symmetric")
            if np.ptp(np.diag(d)) != 0:
                # the kernels drop self-loop edges as constant; a per-worker diagonal would not be
                raise ValueError("distance must have one value on its whole diagonal")
            self.distance = d
            self.level_distance = np.array([0.0, 1.0])
            self.level_groups = np.zeros((W, 0), np.int32)
            return
        if locations is None:
            if level_distance is not None:
                raise ValueError("level_distance needs locations")
            labels: NDArray[Any] = np.zeros((W, 0), np.int64)
            ld = np.array([0.0, 1.0])
        else:
            labels = np.asarray(locations)
            if labels.ndim == 1:
                labels = labels[:, None]
            if labels.ndim != 2 or labels.shape[0] != W:
                raise ValueError(
                    f"locations must have shape (workers, levels) with {W} rows, got {labels.shape}"
                )
            L = labels.shape[1]
            if level_distance is None:
                raise ValueError(f"locations need level_distance ({L + 2} values)")
            ld = _real("level_distance", level_distance, 1)
            if ld.shape != (L + 2,):
                raise ValueError(
                    f"level_distance needs {L + 2} values (same worker, {L} levels fine -> "
                    f"coarse, nothing shared), got {ld.shape[0]}"
                )
            self.locations = labels
        _finite("level_distance", ld)
        _no_neg("level_distance", ld)
        if (np.diff(ld) < 0).any():
            raise ValueError(
                "level_distance must be non-decreasing from the same worker to nothing shared"
            )
        self.level_distance = ld
        self.level_groups = _prefix_groups(labels)

    def _allowed(
        self,
        allowed: ArrayLike | None,
        worker_labels: Sequence[Collection[str]] | None,
        task_selectors: Sequence[Collection[str] | None] | None,
        T: int,
        W: int,
    ) -> None:
        self.allowed = None
        # tasks share a few distinct masks: (class per task, one mask per class) stays small
        self.task_class = np.full(T, -1, np.int32)
        self.class_mask = np.ones((0, W), bool)
        if allowed is not None:
            if worker_labels is not None or task_selectors is not None:
                raise ValueError("give either allowed or worker_labels/task_selectors, not both")
            a = np.asarray(allowed)
            if a.dtype != bool:
                raise TypeError(f"allowed must be a bool array, got dtype {a.dtype}")
            if a.shape != (T, W):
                raise ValueError(f"allowed must have shape (tasks, workers) = {(T, W)}")
            self.allowed = np.ascontiguousarray(a)
            masks, inv = np.unique(self.allowed, axis=0, return_inverse=True)
            self.task_class = inv.reshape(-1).astype(np.int32)
            self.class_mask = np.ascontiguousarray(masks)
            return
        if worker_labels is None and task_selectors is None:
            return
        if worker_labels is None or task_selectors is None:
            raise ValueError("worker_labels and task_selectors go together")
        if len(worker_labels) != W:
            raise ValueError(f"worker_labels needs {W} entries, got {len(worker_labels)}")
        if len(task_selectors) != T:
            raise ValueError(f"task_selectors needs {T} entries, got {len(task_selectors)}")
        labels = [frozenset(x) for x in worker_labels]
        classes: dict[frozenset[str], int] = {}
        rows: list[NDArray[np.bool_]] = []
        for t, sel in enumerate(task_selectors):
            if not sel:
                continue
            key = frozenset(sel)
            if key not in classes:
                classes[key] = len(rows)
                rows.append(np.array([key <= lab for lab in labels], dtype=bool))
            self.task_class[t] = classes[key]
        if rows:
            self.class_mask = np.ascontiguousarray(np.stack(rows))

    def _anti_affinity(
        self,
        anti_affinity: ArrayLike | None,
        limit: int | ArrayLike,
        level: int | None,
        T: int,
        W: int,
    ) -> None:
        self.anti_affinity = None
        self.anti_affinity_limit = np.zeros(0, np.int32)
        self.anti_affinity_domain = np.arange(W, dtype=np.int32)
        if anti_affinity is None:
            return
        g = _integral("anti_affinity", anti_affinity, (T,))
        if (g < -1).any():
            raise ValueError("anti_affinity groups must be >= 0 (or -1 for none)")
        G = int(g.max()) + 1
        lim = np.asarray(limit)
        if lim.dtype == bool or not np.issubdtype(lim.dtype, np.integer):
            raise TypeError(f"anti_affinity_limit must be integer, got dtype {lim.dtype}")
        lim = np.broadcast_to(lim, (G,)) if lim.ndim == 0 else lim
        if lim.shape != (G,):
            raise ValueError(f"anti_affinity_limit needs one value per group ({G})")
        if (lim < 1).any():
            raise ValueError("anti_affinity_limit must be >= 1")
        if level is not None:
            L = self.level_groups.shape[1]
            if not 0 <= level < L:
                raise ValueError(f"anti_affinity_level must be a locations level in [0, {L})")
            self.anti_affinity_domain = np.ascontiguousarray(self.level_groups[:, level])
        self.anti_affinity = g.astype(np.int32)
        self.anti_affinity_limit = np.ascontiguousarray(lim, dtype=np.int32)

    def worker_mask(self, t: int) -> NDArray[np.bool_]:
        """The workers task t may run on (pinning and affinity; not capacity)."""
        if self.pinned is not None and self.pinned[t] >= 0:
            m = np.zeros(self.n_workers, bool)
            m[self.pinned[t]] = True
            return m
        c = int(self.task_class[t])
        return np.ones(self.n_workers, bool) if c < 0 else self.class_mask[c].copy()

    def allowed_matrix(self) -> NDArray[np.bool_]:
        """Dense (tasks x workers) allowed mask. Only for small problems (tests, exact models)."""
        out = np.ones((self.n_tasks, self.n_workers), bool)
        cls = self.task_class >= 0
        out[cls] = self.class_mask[self.task_class[cls]]
        if self.pinned is not None:
            on = np.flatnonzero(self.pinned >= 0)
            out[on] = False
            out[on, self.pinned[on]] = True
        return out

    def compute_cost_matrix(self) -> F64:
        """Dense (tasks x workers) compute cost. Only for small problems."""
        if self.cost is not None:
            return self.cost
        if self.work is not None and self.speed is not None:
            return self.work[:, None] / self.speed[None, :]
        return np.zeros((self.n_tasks, self.n_workers))

    def distance_matrix(self) -> F64:
        """Dense (workers x workers) distance. Only for small problems."""
        if self.distance is not None:
            return self.distance
        g = self.level_groups
        ld = self.level_distance
        L = g.shape[1]
        shared = np.zeros((self.n_workers, self.n_workers), np.int64)
        same = np.ones_like(shared, dtype=bool)
        for level in range(L):
            same &= g[:, level][:, None] == g[:, level][None, :]
            shared += same
        d = ld[L + 1 - shared]
        np.fill_diagonal(d, ld[0])
        return np.ascontiguousarray(d)
