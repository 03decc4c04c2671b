"""Job graph -> chained execution graph -> traffic estimates -> placement input.

Steps, each as Apache Flink does it unless said otherwise:

1. Partitioning. An edge left at the default ``forward`` between operators of different
   parallelism becomes ``rebalance``; an explicit ``forward()`` there is an error.
2. Chaining (``StreamingJobGraphGenerator.isChainable``): an edge is chained iff it is
   ``forward``, both ends have the same parallelism, the target has exactly one input edge, the
   target's chaining strategy is ``always`` and the source's is not ``never``, and chaining is
   enabled for the job. Sources are ``head`` (they start chains); sinks chain like any
   operator. A chain is a tree of operators under one head, run as one task per subtask.
3. Subtasks and channels. Chain ``c`` of parallelism ``p`` has subtasks ``(c, 0..p-1)``. An
   exchange (an edge between chains) has channels: ``forward`` i -> i; ``rescale`` from i to
   :func:`pydispatch.partition.rescale_targets` (Flink's pointwise pattern); ``hash``,
   ``rebalance``, ``broadcast`` and ``custom`` all-to-all.
4. Traffic estimates (pydispatch's; Flink has none). Records out of each operator: a source's
   known or hinted count (else :data:`DEFAULT_SOURCE_RECORDS`), else records in times the
   operator's selectivity (``hint()``, else :data:`DEFAULT_SELECTIVITY`); a broadcast edge
   delivers its records to each of the ``q`` consumers. Bytes per record: ``hint()``, else the
   exact row size on the columnar path, else :data:`DEFAULT_BYTES_PER_RECORD`. A producer's
   records are assumed spread evenly over its subtasks and, on an all-to-all exchange, over its
   channels; a rescale subtask splits its records evenly over its targets; broadcast sends all.
5. Slot sharing: subtask ``i`` of every chain goes to slot ``i`` (Flink's default single
   slot-sharing group), or each subtask is placed on its own (``slot_sharing=False``); see
   :mod:`pydispatch.plan._placement_input`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..partition import rescale_targets
from . import _sources
from ._job_graph import Edge, JobGraph, KeySpec, Partitioning

__all__ = [
    "DEFAULT_BYTES_PER_RECORD",
    "DEFAULT_SELECTIVITY",
    "DEFAULT_SOURCE_RECORDS",
    "DEFAULT_WORK_PER_RECORD",
    "Chain",
    "Exchange",
    "ExecutionGraph",
    "execution_graph",
    "is_chainable",
    "resolve_partitioning",
]


class _Described(Protocol):
    """What describe() needs of a placement (the solver is not imported by planning)."""

    def describe(self) -> str: ...


#: Output records per input record by operator kind, unless hinted. ``aggregate`` is exact in
#: streaming mode (one update per record) and an upper bound in batch mode.
DEFAULT_SELECTIVITY: Mapping[str, float] = {
    "map": 1.0,
    "flat_map": 1.0,
    "filter": 0.5,
    "map_batches": 1.0,
    "aggregate": 1.0,
    "window": 0.1,
    "process": 1.0,
    "sink": 0.0,
}
#: Bytes per record of the record path (pickled small tuples and strings are about this size).
DEFAULT_BYTES_PER_RECORD = 64.0
#: Records of a source whose size is unknown (a factory without ``estimated_records``).
DEFAULT_SOURCE_RECORDS = 1_000_000.0
#: Estimated seconds of compute per input record: Python functions on the record path, numpy
#: kernels on the columnar path (the placement's ``work``).
DEFAULT_WORK_PER_RECORD: Mapping[str, float] = {"record": 1e-6, "columnar": 1e-8}


def resolve_partitioning(graph: JobGraph, edge: Edge) -> Partitioning:
    """The partitioning an edge really has (step 1 of the module docstring)."""
    if edge.partitioning != "forward":
        return edge.partitioning
    up, down = graph.operator(edge.source), graph.operator(edge.target)
    if up.parallelism == down.parallelism:
        return "forward"
    if edge.explicit:
        raise ValueError(
            f"forward partitioning does not allow a change of parallelism: {up.name} "
            f"({up.parallelism}) -> {down.name} ({down.parallelism}); use rebalance, rescale, "
            "broadcast or key_by"
        )
    return "rebalance"


def is_chainable(graph: JobGraph, edge: Edge, *, chaining: bool = True) -> bool:
    """Whether ``edge`` is fused into a chain (step 2 of the module docstring)."""
    up, down = graph.operator(edge.source), graph.operator(edge.target)
    return (
        chaining
        and len(graph.inputs(down.id)) == 1
        and down.chaining == "always"
        and up.chaining != "never"
        and resolve_partitioning(graph, edge) == "forward"
        and up.parallelism == down.parallelism
    )


@dataclass(frozen=True)
class Chain:
    """Operators run as one task: ``operators`` in topological order, ``operators[0]`` the
    head. ``resources``: one subtask's needs (the sum of its operators')."""

    id: int
    operators: tuple[int, ...]
    parallelism: int
    name: str
    resources: Mapping[str, float]
    first_subtask: int  # global id of subtask 0; subtask i is first_subtask + i

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "operators": list(self.operators),
            "parallelism": self.parallelism,
            "resources": dict(sorted(self.resources.items())),
        }


@dataclass(frozen=True)
class Exchange:
    """A job edge between two chains, with its resolved partitioning and estimates."""

    edge: int  # index into job.edges
    source: int  # operator ids
    target: int
    source_chain: int
    target_chain: int
    partitioning: Partitioning
    key: KeySpec | None
    records: float  # estimated records crossing it, summed over channels
    bytes: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "edge": self.edge,
            "source": self.source,
            "target": self.target,
            "source_chain": self.source_chain,
            "target_chain": self.target_chain,
            "partitioning": self.partitioning,
            "key": None if self.key is None else self.key.to_dict(),
            "records": float(self.records),
            "bytes": float(self.bytes),
        }


class ExecutionGraph:
    """The chained, parallel plan of a job (see the module docstring).

    Subtasks have global ids ``0 .. n_subtasks-1``, chain by chain; ``subtask_chain`` and
    ``subtask_index`` map them back. Channels are parallel arrays (one row per channel):
    ``channel_exchange`` (index into ``exchanges``), ``channel_src`` / ``channel_dst`` (global
    subtask ids), ``channel_records`` and ``channel_bytes`` (estimates).
    """

    def __init__(self, job: JobGraph, *, chaining: bool = True) -> None:
        if not job.operators:
            raise ValueError("execution_graph: the job graph is empty")
        self.job = job
        self.chaining = chaining
        self.edge_partitioning: tuple[Partitioning, ...] = tuple(
            resolve_partitioning(job, e) for e in job.edges
        )
        self.chained: tuple[bool, ...] = tuple(
            is_chainable(job, e, chaining=chaining) for e in job.edges
        )
        self.runtime_mode = (
            "batch" if all(op.params.get("bounded", True) for op in job.sources()) else "streaming"
        )
        self._build_chains()
        self._estimate()
        self._build_channels()

    # -- construction ---------------------------------------------------------------------

    def _build_chains(self) -> None:
        job = self.job
        chain_of = list(range(len(job.operators)))
        # Edges are stored in target order and point from lower to higher ids, so when an edge
        # is read, its source's chain is already final.
        for i, e in enumerate(job.edges):
            if self.chained[i]:
                chain_of[e.target] = chain_of[e.source]
        # Head order is a topological order of chains: an exchange into a chain ends at its
        # head (other members have their one input inside the chain), and that head's id is
        # above the upstream operator's, itself at or above the upstream chain's head.
        heads = sorted(set(chain_of))
        number = {head: n for n, head in enumerate(heads)}
        self.chain_of: tuple[int, ...] = tuple(number[h] for h in chain_of)
        chains: list[Chain] = []
        first = 0
        for n, head in enumerate(heads):
            ops = tuple(op.id for op in job.operators if chain_of[op.id] == head)
            resources: dict[str, float] = {}
            for op_id in ops:
                for name, amount in job.operator(op_id).resources.items():
                    resources[name] = resources.get(name, 0.0) + amount
            p = job.operator(head).parallelism
            name = " -> ".join(job.operator(o).name for o in ops)
            chains.append(Chain(n, ops, p, name, resources, first))
            first += p
        self.chains: tuple[Chain, ...] = tuple(chains)
        self.n_subtasks = first
        self.subtask_chain = np.repeat(
            np.arange(len(chains), dtype=np.int32), [c.parallelism for c in chains]
        )
        self.subtask_index = np.concatenate(
            [np.arange(c.parallelism, dtype=np.int32) for c in chains]
        )

    def _estimate(self) -> None:
        job = self.job
        n = len(job.operators)
        records_in = np.zeros(n)
        records_out = np.zeros(n)
        row_bytes = np.zeros(n)
        for op in job.operators:  # id order is topological
            for e in job.inputs(op.id):
                fan = op.parallelism if e.partitioning == "broadcast" else 1
                records_in[op.id] += records_out[e.source] * fan
            if op.kind == "source":
                records_out[op.id] = _sources.estimated_records(
                    op.params, DEFAULT_SOURCE_RECORDS, DEFAULT_BYTES_PER_RECORD
                )
            else:
                selectivity = op.selectivity
                if selectivity is None:
                    selectivity = DEFAULT_SELECTIVITY[op.kind]
                records_out[op.id] = records_in[op.id] * selectivity
            row_bytes[op.id] = (
                op.bytes_per_record
                if op.bytes_per_record is not None
                else op.schema.row_bytes or DEFAULT_BYTES_PER_RECORD
            )
        self.records_in: npt.NDArray[np.float64] = records_in
        self.records_out: npt.NDArray[np.float64] = records_out
        self.bytes_per_record: npt.NDArray[np.float64] = row_bytes

    def _build_channels(self) -> None:
        job = self.job
        exchanges: list[Exchange] = []
        cols: list[list[Any]] = [[], [], [], [], []]
        for i, e in enumerate(job.edges):
            if self.chained[i]:
                continue
            kind = self.edge_partitioning[i]
            src_chain = self.chains[self.chain_of[e.source]]
            dst_chain = self.chains[self.chain_of[e.target]]
            p, q = src_chain.parallelism, dst_chain.parallelism
            per_subtask = self.records_out[e.source] / p
            pairs: list[tuple[int, int, float]] = []
            for s in range(p):
                if kind == "forward":
                    pairs.append((s, s, per_subtask))
                elif kind == "rescale":
                    targets = rescale_targets(s, p, q)
                    pairs.extend((s, t, per_subtask / len(targets)) for t in targets)
                elif kind == "broadcast":
                    pairs.extend((s, t, per_subtask) for t in range(q))
                else:  # hash, rebalance, custom: all-to-all, assumed even
                    pairs.extend((s, t, per_subtask / q) for t in range(q))
            number = len(exchanges)
            bpr = float(self.bytes_per_record[e.source])
            for s, t, r in pairs:
                cols[0].append(number)
                cols[1].append(src_chain.first_subtask + s)
                cols[2].append(dst_chain.first_subtask + t)
                cols[3].append(r)
                cols[4].append(r * bpr)
            total = float(sum(r for _, _, r in pairs))
            exchanges.append(
                Exchange(
                    i,
                    e.source,
                    e.target,
                    src_chain.id,
                    dst_chain.id,
                    kind,
                    e.key,
                    total,
                    total * bpr,
                )
            )
        self.exchanges: tuple[Exchange, ...] = tuple(exchanges)
        self.channel_exchange = np.asarray(cols[0], dtype=np.int32)
        self.channel_src = np.asarray(cols[1], dtype=np.int32)
        self.channel_dst = np.asarray(cols[2], dtype=np.int32)
        self.channel_records = np.asarray(cols[3], dtype=np.float64)
        self.channel_bytes = np.asarray(cols[4], dtype=np.float64)

    # -- queries --------------------------------------------------------------------------

    @property
    def n_slots(self) -> int:
        """Slots the job needs with slot sharing: its largest parallelism."""
        return max(c.parallelism for c in self.chains)

    def subtask(self, chain: int, index: int) -> int:
        """The global id of subtask ``index`` of chain ``chain``."""
        c = self.chains[chain]
        if not 0 <= index < c.parallelism:
            raise IndexError(f"chain {chain} has {c.parallelism} subtasks, not index {index}")
        return c.first_subtask + index

    def channels(self, exchange: int) -> list[tuple[int, int]]:
        """(upstream index, downstream index) pairs of an exchange, in channel order."""
        x = self.exchanges[exchange]
        rows = np.flatnonzero(self.channel_exchange == exchange)
        first_src = self.chains[x.source_chain].first_subtask
        first_dst = self.chains[x.target_chain].first_subtask
        return [
            (int(self.channel_src[r]) - first_src, int(self.channel_dst[r]) - first_dst)
            for r in rows
        ]

    def work(self) -> npt.NDArray[np.float64]:
        """Estimated compute seconds of each subtask (its chain's input records, evenly)."""
        per_chain = np.zeros(len(self.chains))
        for op in self.job.operators:
            path = "columnar" if op.schema.columnar else "record"
            records = self.records_out[op.id] if op.kind == "source" else self.records_in[op.id]
            per_chain[self.chain_of[op.id]] += records * DEFAULT_WORK_PER_RECORD[path]
        parallelism = np.array([c.parallelism for c in self.chains], dtype=np.float64)
        work: npt.NDArray[np.float64] = (per_chain / parallelism)[self.subtask_chain]
        return work

    # -- output ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A stable, JSON-able description of the plan."""
        operators = []
        for op in self.job.operators:
            entry = op.to_dict()
            entry["chain"] = self.chain_of[op.id]
            entry["records_out"] = float(self.records_out[op.id])
            entry["bytes_per_record"] = float(self.bytes_per_record[op.id])
            operators.append(entry)
        return {
            "runtime_mode": self.runtime_mode,
            "chaining": self.chaining,
            "subtasks": self.n_subtasks,
            "slots": self.n_slots,
            "chains": [c.to_dict() for c in self.chains],
            "operators": operators,
            "exchanges": [
                {**x.to_dict(), "channels": len(self.channels(n))}
                for n, x in enumerate(self.exchanges)
            ],
        }

    def describe(self, placement: _Described | None = None) -> str:
        """The chained plan, one chain a line with its outgoing exchanges below it; with a
        ``placement`` (a ``pydispatch.solver.Placement`` of this plan) a last line with its
        cost, proven lower bound and gap."""
        lines = [
            f"Plan: {len(self.chains)} chains, {self.n_subtasks} subtasks, "
            f"{self.n_slots} slots, {self.runtime_mode} mode"
        ]
        for c in self.chains:
            res = ", ".join(f"{k}={v:g}" for k, v in sorted(c.resources.items()))
            lines.append(
                f"[{c.id}] {c.name}  (parallelism {c.parallelism}{', ' + res if res else ''})"
            )
            for n, x in enumerate(self.exchanges):
                if x.source_chain != c.id:
                    continue
                key = "" if x.key is None else f" {x.key.describe()}"
                lines.append(
                    f"      --{x.partitioning}{key}--> [{x.target_chain}]  "
                    f"{len(self.channels(n))} channels, ~{x.records:.4g} records, "
                    f"~{x.bytes:.4g} bytes"
                )
        if placement is not None:
            lines.append(f"Placement: {placement.describe()}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return (
            f"ExecutionGraph(chains={len(self.chains)}, subtasks={self.n_subtasks}, "
            f"exchanges={len(self.exchanges)})"
        )


def execution_graph(job: JobGraph, *, chaining: bool = True) -> ExecutionGraph:
    """Plan ``job``: resolve partitionings, chain, expand into subtasks and channels."""
    if not isinstance(job, JobGraph):
        raise TypeError(f"execution_graph takes a JobGraph, not {type(job).__name__}")
    return ExecutionGraph(job, chaining=chaining)
