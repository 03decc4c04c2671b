"""The job graph: what a user's dataflow program describes, before any planning.

Private: ``pydispatch.stream`` builds it and re-exports its classes; ``pydispatch.plan`` reads it.

Invariants (kept by :class:`JobGraph`, relied on by the planner and the executors):

- operator ids are ``0 .. n-1`` in creation order, and every edge goes from a lower id to a
  higher one, so id order is a topological order;
- the edges into an operator are kept in the order its inputs were given (``union`` order),
  which fixes the order in which the local executor reads them;
- a graph is never changed in place: every builder call returns a new graph sharing the
  unchanged operators (frozen dataclasses), so a graph handed to the planner stays valid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "PARTITIONINGS",
    "Chaining",
    "Edge",
    "JobGraph",
    "KeyScheme",
    "KeySpec",
    "Operator",
    "Partitioning",
    "Schema",
]

#: How records of an edge are distributed over the consumer's subtasks (Flink's partitioners).
Partitioning = Literal["forward", "rebalance", "rescale", "hash", "broadcast", "custom"]
PARTITIONINGS: tuple[str, ...] = ("forward", "rebalance", "rescale", "hash", "broadcast", "custom")
#: Flink's ChainingStrategy: ALWAYS chains to its input, HEAD only starts chains, NEVER neither.
Chaining = Literal["always", "head", "never"]
#: Key schemes of a keyed edge: pydispatch's own hash, or Flink's key groups (Java hashCode).
KeyScheme = Literal["hash", "flink"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class KeySpec:
    """How to get a record's key: a function, a tuple/list index, or a field/column name."""

    kind: Literal["function", "index", "column"]
    selector: Callable[[Any], Any] | int | str
    scheme: KeyScheme = "hash"

    def describe(self) -> str:
        if self.kind == "function":
            return f"key={getattr(self.selector, '__name__', 'function')}"
        return f"key[{self.selector!r}]"

    def to_dict(self) -> dict[str, Any]:
        selector = self.selector if self.kind != "function" else _callable_name(self.selector)
        return {"kind": self.kind, "selector": selector, "scheme": self.scheme}


@dataclass(frozen=True)
class Schema:
    """What is known of an operator's output records.

    ``columnar``: records travel as dicts of numpy columns (``from_arrays``); ``fields``: the
    record fields or column names when known (``None``: opaque records); ``row_bytes``: exact
    bytes per record on the columnar path (sum of the columns' item sizes), else ``None``.
    """

    columnar: bool = False
    fields: tuple[str, ...] | None = None
    row_bytes: float | None = None


@dataclass(frozen=True)
class Operator:
    """One node of the job graph. ``function`` is the user's function exactly as given (it is
    cloudpickled when the job is shipped to workers); ``params`` holds the kind's settings."""

    id: int
    name: str
    kind: Literal[
        "source",
        "map",
        "flat_map",
        "filter",
        "map_batches",
        "aggregate",
        "window",
        "process",
        "sink",
    ]
    function: Callable[..., Any] | None = None
    parallelism: int = 1
    max_parallelism: int | None = None
    resources: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    chaining: Chaining = "always"
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    schema: Schema = field(default_factory=Schema)
    #: False for a non-parallel operator (a non-parallel source): its parallelism stays 1.
    parallel: bool = True
    #: Output records per input record, for traffic estimates (None: the kind's default).
    selectivity: float | None = None
    #: Bytes per output record, for traffic estimates (None: schema's or the default).
    bytes_per_record: float | None = None

    def __post_init__(self) -> None:
        # Read-only views: a planned graph must not change under the planner's feet.
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "resources", MappingProxyType(dict(self.resources)))

    def to_dict(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, value in self.params.items():
            # Data a source carries is summarised, never copied out: the form must stay small.
            if name == "elements":
                params[name] = {"count": len(value)}
            elif isinstance(value, Mapping):
                params[name] = {
                    k: str(getattr(v, "dtype", type(v).__name__)) for k, v in value.items()
                }
            elif isinstance(value, KeySpec):
                params[name] = value.to_dict()
            elif callable(value):
                params[name] = _callable_name(value)
            elif isinstance(value, str | int | float | bool) or value is None:
                params[name] = value
            elif isinstance(value, tuple | list) and all(
                isinstance(v, str | int | float | bool) for v in value
            ):
                params[name] = list(value)
            else:
                params[name] = type(value).__name__
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "function": None if self.function is None else _callable_name(self.function),
            "parallelism": self.parallelism,
            "max_parallelism": self.max_parallelism,
            "resources": dict(sorted(self.resources.items())),
            "chaining": self.chaining,
            "params": params,
            "columnar": self.schema.columnar,
            "fields": None if self.schema.fields is None else list(self.schema.fields),
        }


@dataclass(frozen=True)
class Edge:
    """A data exchange between two operators.

    ``explicit`` tells a user's ``forward()`` from the default: Flink silently turns a default
    forward edge between operators of different parallelism into ``rebalance``, but rejects an
    explicit one (the planner does both, since parallelism may change after the edge is made).
    """

    source: int
    target: int
    partitioning: Partitioning = "forward"
    explicit: bool = False
    key: KeySpec | None = None
    partitioner: Callable[[Any, int], int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "partitioning": self.partitioning,
            "key": None if self.key is None else self.key.to_dict(),
            "partitioner": None if self.partitioner is None else _callable_name(self.partitioner),
        }


@dataclass(frozen=True)
class JobGraph:
    """Operators and edges of a job (see the module docstring for the invariants)."""

    operators: tuple[Operator, ...] = ()
    edges: tuple[Edge, ...] = ()

    def operator(self, op_id: int) -> Operator:
        if not 0 <= op_id < len(self.operators):
            raise KeyError(f"no operator {op_id} in this job graph")
        return self.operators[op_id]

    def inputs(self, op_id: int) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.target == op_id)

    def outputs(self, op_id: int) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.source == op_id)

    def sources(self) -> tuple[Operator, ...]:
        return tuple(op for op in self.operators if op.kind == "source")

    def sinks(self) -> tuple[Operator, ...]:
        return tuple(op for op in self.operators if op.kind == "sink")

    def with_operator(self, op: Operator, edges: tuple[Edge, ...] = ()) -> JobGraph:
        """A new graph with ``op`` (id = the next id) and its input edges appended."""
        if op.id != len(self.operators):
            raise ValueError(f"operator id {op.id} is not the next id {len(self.operators)}")
        for e in edges:
            if e.target != op.id or not 0 <= e.source < op.id:
                raise ValueError(f"edge {e.source} -> {e.target} does not end at new op {op.id}")
        return JobGraph((*self.operators, op), self.edges + edges)

    def replace(self, op_id: int, **changes: Any) -> JobGraph:
        """A new graph with operator ``op_id``'s fields changed (not its id)."""
        if "id" in changes:
            raise ValueError("an operator's id cannot change")
        ops = list(self.operators)
        ops[op_id] = dataclasses.replace(self.operator(op_id), **changes)
        return JobGraph(tuple(ops), self.edges)

    def ancestors(self, op_ids: set[int]) -> set[int]:
        """``op_ids`` and every operator upstream of them."""
        seen = set(op_ids)
        for e in sorted(self.edges, key=lambda e: -e.target):  # targets high -> low
            if e.target in seen:
                seen.add(e.source)
        return seen

    def subgraph(self, op_ids: set[int]) -> JobGraph:
        """The operators in ``op_ids`` (closed upstream) renumbered densely, order kept."""
        keep = sorted(op_ids)
        new_id = {old: new for new, old in enumerate(keep)}
        ops = tuple(dataclasses.replace(self.operators[old], id=new_id[old]) for old in keep)
        edges = tuple(
            dataclasses.replace(e, source=new_id[e.source], target=new_id[e.target])
            for e in self.edges
            if e.target in new_id
        )
        return JobGraph(ops, edges)

    def to_dict(self) -> dict[str, Any]:
        return {
            "operators": [op.to_dict() for op in self.operators],
            "edges": [e.to_dict() for e in self.edges],
        }


def _callable_name(function: object) -> str:
    return str(getattr(function, "__qualname__", None) or type(function).__name__)
