"""Benchmark instances for the solver: Chu & Beasley GAP (types C, D, E) and job-shaped
placements (a keyed pipeline, an all-to-all exchange) on a cluster of zones and racks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pydispatch.solver import PlacementProblem


@dataclass
class GapInstance:
    name: str
    cost: NDArray[np.float64]  # (agents, jobs)
    weight: NDArray[np.float64]  # (agents, jobs)
    capacity: NDArray[np.float64]  # (agents,)

    def problem(self) -> PlacementProblem:
        """Agent i = worker i with resource i of b_i and inf of every other resource; job j
        demands r_ij of resource i."""
        m, _ = self.cost.shape
        cap = np.full((m, m), np.inf)
        np.fill_diagonal(cap, self.capacity)
        return PlacementProblem(
            self.weight.T.copy(), cap, [f"agent{i}" for i in range(m)], cost=self.cost.T.copy()
        )


def chu_beasley(kind: str, m: int, n: int, seed: int) -> GapInstance:
    """Chu & Beasley (1997) generation rules, as used for the OR-Library gap C/D/E sets:
    C: r_ij ~ U[5, 25], c_ij ~ U[10, 50], b_i = 0.8 * sum_j r_ij / m.
    D: r_ij ~ U[1, 100], c_ij = 111 - r_ij + U[-10, 10], b_i = 0.8 * sum_j r_ij / m.
    E: r_ij = 1 - 10 ln U(0, 1], c_ij = 1000 / r_ij - 10 U[0, 1], b_i = 0.8 * sum_j r_ij / m.
    (Integers where the published sets are integer: r, c and b are rounded for C and D; E keeps
    the integer part of r and c, as the published E files do.)"""
    rng = np.random.default_rng(seed)
    if kind == "C":
        r = rng.integers(5, 26, (m, n)).astype(float)
        c = rng.integers(10, 51, (m, n)).astype(float)
    elif kind == "D":
        r = rng.integers(1, 101, (m, n)).astype(float)
        c = 111 - r + rng.integers(-10, 11, (m, n))
    elif kind == "E":
        u = 1.0 - rng.random((m, n))  # (0, 1]
        r = np.floor(1 - 10 * np.log(u))
        c = np.floor(1000 / r - 10 * rng.random((m, n)))
    else:
        raise ValueError(kind)
    b = np.floor(0.8 * r.sum(axis=1) / m)
    return GapInstance(f"gap{kind}-{m}x{n}-s{seed}", c.astype(float), r, b)


# Published optima of the OR-Library gapc/gapd sets (minimisation), proven by exact methods and
# cited throughout the literature (e.g. Yagiura, Ibaraki & Glover 2004; Posta, Ferland &
# Michelon 2012), in the files' order: 5x100, 5x200, 10x100, 10x200, 20x100, 20x200.
ORLIB_BEST_KNOWN: dict[str, tuple[int, ...]] = {
    "c": (1931, 3456, 1402, 2806, 1243, 2391),
    "d": (6353, 12742, 6347, 12430, 6185, 12235),
}


def orlib_gap(path: str, kind: str) -> list[tuple[GapInstance, int]]:
    """The instances of an OR-Library file ``gapc.txt`` / ``gapd.txt`` (count, then per
    instance: m n, the m x n costs, the m x n weights, the m capacities) with their published
    best known values. The files are not shipped with the project: point
    PYDISPATCH_BENCH_ORLIB at a directory holding them."""
    with open(path) as fh:
        nums = [int(x) for x in fh.read().split()]
    pos = 1
    out: list[tuple[GapInstance, int]] = []
    for i in range(nums[0]):
        m, n = nums[pos], nums[pos + 1]
        pos += 2
        c = np.array(nums[pos : pos + m * n], dtype=float).reshape(m, n)
        pos += m * n
        r = np.array(nums[pos : pos + m * n], dtype=float).reshape(m, n)
        pos += m * n
        b = np.array(nums[pos : pos + m], dtype=float)
        pos += m
        name = f"orlib-{kind}{m:02d}{n}"
        out.append((GapInstance(name, c, r, b), ORLIB_BEST_KNOWN[kind][i]))
    if pos != len(nums):
        raise ValueError(f"{path}: {len(nums) - pos} numbers left after {nums[0]} instances")
    return out


@dataclass
class JobInstance:
    name: str
    problem: PlacementProblem
    slot_group: NDArray[np.int64]  # Flink slot sharing: subtask i of every operator


Cluster = tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]


def cluster(W: int, seed: int, cpu: float = 16.0) -> Cluster:
    """W workers (`cpu` cores, 4 GB per core, speed 0.8-1.2) in zones of 10 racks of 10."""
    rng = np.random.default_rng(seed)
    cap = np.tile([cpu, 4.0 * cpu], (W, 1))
    rack = np.arange(W) // 10
    zone = rack // 10
    speed = rng.uniform(0.8, 1.2, W)
    return cap, np.column_stack([zone, rack]), speed


# same worker, same rack, same zone, across zones (cost per unit of volume)
LEVEL_DISTANCE = [0.0, 1.0, 4.0, 10.0]
# same worker, same node, same rack, same zone, across zones
NODE_LEVEL_DISTANCE = [0.0, 0.5, 1.0, 4.0, 10.0]


def node_cluster(W: int, seed: int, cpu: float = 8.0) -> Cluster:
    """W workers (`cpu` cores, 4 GB per core, speed 0.8-1.2), 4 per node, 5 nodes per rack,
    5 racks per zone (100 workers a zone)."""
    rng = np.random.default_rng(seed)
    cap = np.tile([cpu, 4.0 * cpu], (W, 1))
    node = np.arange(W) // 4
    rack = node // 5
    zone = rack // 5
    speed = rng.uniform(0.8, 1.2, W)
    return cap, np.column_stack([zone, rack, node]), speed


def keyed_pipeline(
    T: int,
    W: int,
    seed: int = 0,
    net_weight: float = 1.0,
    cpu: float = 16.0,
    nodes: bool = False,
) -> JobInstance:
    """source -> map (forward) -> keyBy (all-to-all) -> window -> sink (forward), each operator
    of parallelism T / 4; on zones/racks (or, with `nodes`, zones/racks/nodes: node_cluster)."""
    p = T // 4
    ops_cpu = np.array([0.5, 1.0, 1.5, 0.5])
    ops_mem = np.array([1.0, 2.0, 4.0, 1.0])
    ops_work = np.array([1.0, 2.0, 3.0, 1.0])
    op = np.repeat(np.arange(4), p)
    sub = np.tile(np.arange(p), 4)
    demand = np.column_stack([ops_cpu[op], ops_mem[op]])
    i = np.arange(p)
    fwd_vol = 10.0 * net_weight
    key_vol = 10.0 * net_weight  # what one map subtask ships in total through keyBy
    src = [i, 2 * p + i]
    dst = [p + i, 3 * p + i]
    vol = [np.full(p, fwd_vol), np.full(p, fwd_vol)]
    a, b = np.meshgrid(i, i, indexing="ij")
    src.append(p + a.ravel())
    dst.append(2 * p + b.ravel())
    vol.append(np.full(p * p, key_vol / p))
    cap, loc, speed = node_cluster(W, seed, cpu) if nodes else cluster(W, seed, cpu)
    prob = PlacementProblem(
        demand,
        cap,
        ["cpu", "memory"],
        work=ops_work[op],
        speed=speed,
        traffic=(np.concatenate(src), np.concatenate(dst), np.concatenate(vol)),
        locations=loc,
        level_distance=NODE_LEVEL_DISTANCE if nodes else LEVEL_DISTANCE,
        group_hint=sub,
    )
    name = f"keyed-{4 * p}x{W}-cpu{cpu:g}" + ("-nodes" if nodes else "")
    return JobInstance(name, prob, sub.astype(np.int64))


def all_to_all(
    T: int, W: int, seed: int = 0, net_weight: float = 1.0, cpu: float = 16.0
) -> JobInstance:
    """Two operators of parallelism T / 2 exchanging all-to-all (a shuffle)."""
    p = T // 2
    op = np.repeat(np.arange(2), p)
    sub = np.tile(np.arange(p), 2)
    demand = np.column_stack([np.where(op == 0, 1.0, 2.0), np.where(op == 0, 2.0, 6.0)])
    i = np.arange(p)
    a, b = np.meshgrid(i, i, indexing="ij")
    cap, loc, speed = cluster(W, seed, cpu)
    prob = PlacementProblem(
        demand,
        cap,
        ["cpu", "memory"],
        work=np.where(op == 0, 1.0, 2.0),
        speed=speed,
        traffic=(a.ravel(), p + b.ravel(), np.full(p * p, 20.0 * net_weight / p)),
        locations=loc,
        level_distance=LEVEL_DISTANCE,
        group_hint=sub,
    )
    return JobInstance(f"all2all-{2 * p}x{W}-cpu{cpu:g}", prob, sub.astype(np.int64))
