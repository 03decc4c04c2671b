"""Relations under construction: a stream of chunks and what is known of them (private).

The planner (``_planner``) turns a query into pydispatch operators through these few moves:

- :func:`then`: one more DuckDB query over each chunk, fused with the queries still pending
  (consecutive local queries become one nested DuckDB query, one ``map`` operator);
- :func:`shuffle`: a keyed exchange and what runs after it, the pydispatch way: each input's
  chunks are cut by the hash of their key columns (:class:`~._steps.Split`, a ``flat_map``
  chained to the operator before), sent over a keyed edge (``key_by``) to the subtask owning
  the key, gathered there by a keyed ``reduce`` (:class:`~._steps.Merge`), and finished by a
  DuckDB query over what the subtask gathered (:class:`~._steps.Finish`, a ``map``), all at
  the planner's parallelism, or 1 for a global aggregate or a sort;
- :func:`output`: the chunks ready for a sink.

Every step's output schema is learnt here by running its query over empty tables, so a
subtask that receives nothing from one side still has a typed empty table for it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..dataflow.routing import key_array, keyed_subtasks
from ..partition import default_max_parallelism
from ._engine import run
from ._steps import ArrowSource, Finish, LocalQuery, Merge, SchemaBytes, Split

if TYPE_CHECKING:
    import pyarrow as pa

    from ..stream import DataStream

__all__ = ["INPUT", "Relation", "output", "routes", "shuffle", "then"]

#: The placeholder generated SQL uses for its input table (the chunk, or the query before).
INPUT = "__INPUT__"


@dataclass(frozen=True)
class Relation:
    """``stream``'s chunks, through ``pending`` (a query over :data:`INPUT`, or None) give
    chunks of ``schema``; ``parallelism`` is the stream's; ``bounded`` whether it ends.

    ``deferred`` (instead of ``stream``): a source not built yet, ``deferred(query)`` builds
    it with the pending query (over ``input``) fused into its reads, so that DuckDB scans the
    file and filters and pre-aggregates in one pass (a Parquet file)."""

    stream: DataStream | None
    schema: pa.Schema
    parallelism: int
    bounded: bool = True
    pending: str | None = None
    pending_input: pa.Schema | None = None
    deferred: Callable[[str | None], DataStream] | None = None


def _compose(outer: str, inner: str | None) -> str:
    if inner is None:
        return outer
    return outer.replace(INPUT, f"({inner}) AS __in", 1)


def then(rel: Relation, sql: str) -> Relation:
    """``rel`` through one more query (``sql`` over :data:`INPUT`), fused with the pending one."""
    pending = _compose(sql, rel.pending)
    source = rel.pending_input if rel.pending is not None else rel.schema
    assert source is not None
    schema = run(pending.replace(INPUT, "input"), {"input": source.empty_table()}).schema
    return replace(rel, schema=schema, pending=pending, pending_input=source)


def _materialise(rel: Relation) -> DataStream:
    if rel.deferred is not None:
        return rel.deferred(None if rel.pending is None else rel.pending.replace(INPUT, "input"))
    assert rel.stream is not None
    if rel.pending is None:
        return rel.stream
    step = LocalQuery(rel.pending.replace(INPUT, "input"))
    return rel.stream.map(step).name("SQL: local query").set_parallelism(rel.parallelism)


def output(rel: Relation) -> DataStream:
    """The stream of ``rel``'s final chunks."""
    return _materialise(rel)


@functools.lru_cache(maxsize=64)
def routes(q: int, max_parallelism: int) -> tuple[int, ...]:
    """For each subtask ``t`` of ``q``, the least non-negative int a keyed edge of
    ``max_parallelism`` key groups sends to ``t`` (the executors' own routing, asked)."""
    candidates = 64 * q
    while True:
        owners = keyed_subtasks(
            key_array(list(range(candidates)), "hash"), "hash", q, max_parallelism
        ).tolist()
        first: dict[int, int] = {}
        for k, t in enumerate(owners):
            first.setdefault(t, k)
        if len(first) == q:
            return tuple(first[t] for t in range(q))
        candidates *= 4


def shuffle(
    inputs: list[tuple[Relation, tuple[str, ...]]],
    finish_sql: str,
    *,
    parallelism: int,
    drop_keys: bool,
    compact_sql: str | None = None,
    name: str,
    seed: pa.Table | None = None,
) -> Relation:
    """Each ``(relation, key columns)`` of ``inputs`` sent by the hash of its keys (no keys:
    all to one subtask) to ``parallelism`` subtasks that gather them per side (``side0``,
    ``side1``...) and run ``finish_sql`` over them at end of input.

    ``drop_keys``: the key columns were added for routing only and leave with the split.
    ``compact_sql``: a query over ``side0`` giving rows of its schema again, run on the
    gathered chunks as they grow (a re-aggregation of partials). ``seed``: a chunk for side 0
    from a source of its own, so that the subtask runs even when no input reaches it (a global
    aggregate has its one row over no rows too)."""
    q = parallelism
    mp = default_max_parallelism(q)
    to = routes(q, mp)
    sides = len(inputs)
    splits = []
    schemas: list[pa.Schema] = []
    for side, (rel, keys) in enumerate(inputs):
        stream = _materialise(rel)
        schema = rel.schema
        if drop_keys and keys:
            schema = schema.empty_table().drop_columns(list(keys)).schema
        schemas.append(schema)
        split = Split(
            side, sides, keys, to, mp, always=not keys or q == 1, drop=drop_keys and bool(keys)
        )
        splits.append(
            stream.flat_map(split).name(f"SQL: split for {name}").set_parallelism(rel.parallelism)
        )
    if seed is not None:
        env = splits[0].environment
        seeded = env.from_source(
            ArrowSource(seed), parallel=True, name=f"SQL: seed of {name}"
        ).set_parallelism(1)
        split = Split(0, sides, inputs[0][1], to, mp, always=True, drop=drop_keys)
        splits.append(seeded.flat_map(split).name(f"SQL: split for {name}").set_parallelism(1))
    merged = splits[0].union(*splits[1:]) if len(splits) > 1 else splits[0]
    gathered = (
        merged.key_by(0)
        .reduce(Merge(compact_sql, SchemaBytes.of(schemas[0]) if compact_sql else None))
        .name(f"SQL: gather for {name}")
        .set_parallelism(q)
        .set_max_parallelism(mp)
    )
    finish = Finish(finish_sql, tuple(SchemaBytes.of(s) for s in schemas))
    empties = {f"side{i}": s.empty_table() for i, s in enumerate(schemas)}
    schema = run(finish_sql, empties).schema
    stream = gathered.map(finish).name(f"SQL: {name}").set_parallelism(q)
    bounded = all(rel.bounded for rel, _ in inputs)
    return Relation(stream, schema, q, bounded)
