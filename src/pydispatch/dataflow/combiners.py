"""Combiners: what a producer subtask pre-aggregates before a shuffle (private).

Flink's local-global aggregation. A keyed aggregation whose producers combine receives
*partials* instead of raw records: at most one row per key per flush of each producer, each
carrying how many input records it stands for, so that the consumer's records-in are still
input records and its results those of the raw records (the reference executor, which does not
combine, checks that). Which exchanges combine is a rule of the plan, the same in producers and
consumers (:func:`combines`):

- columnar keyed ``sum``/``min``/``max``/``count`` (:class:`ColumnCombiner`): a native hash
  aggregation per exchange; a partial batch holds the key, the value and the row counts
  (``operators.weights_column``);
- record keyed ``sum``/``min``/``max``/``count`` in batch mode (:class:`RecordCombiner`): a
  dict per exchange; a partial record is ``(key, value, records)``. Streaming mode emits an
  update per input record, which partials would change, so it never combines; nor does
  ``reduce`` (a user's function need not be associative).

A combiner flushes when it holds ``FLUSH_KEYS`` keys (memory stays bounded) and at end of input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _core
from ..plan import ExecutionGraph
from ..plan._job_graph import Operator
from .aggregation import KeyedAggregator
from .operators import (
    COMBINABLE,
    Columns,
    _field_getter,
    aggregator,
    getter,
    value_column,
    weights_column,
)

__all__ = ["FLUSH_KEYS", "ColumnCombiner", "RecordCombiner", "combines", "partial_records"]

#: Keys a combiner holds before it sends what it has.
FLUSH_KEYS = 1 << 18


def combines(plan: ExecutionGraph, op: Operator) -> bool:
    """Whether the producers feeding ``op`` combine, so that its input is partials: a keyed
    aggregation in :data:`~pydispatch.dataflow.operators.COMBINABLE` fed by hash exchanges
    only, columnar, or on records in batch mode."""
    if op.kind != "aggregate" or op.params["agg"] not in COMBINABLE:
        return False
    if not op.schema.columnar and plan.runtime_mode == "streaming":
        return False
    edges = [e for e in plan.job.edges if e.target == op.id]
    return bool(edges) and all(e.partitioning == "hash" for e in edges)


def partial_records(batch: list[Any]) -> int:
    """The input records a batch of partial records stands for."""
    return sum(p[2] for p in batch)


class ColumnCombiner:
    """A columnar exchange's combiner (see the module docstring)."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        self.key = str(op.params["key"].selector)
        self.value = value_column(op)
        self.weights = weights_column(op)
        self.state: KeyedAggregator | None = None

    def push(self, columns: Columns) -> Columns | None:
        """Fold a batch in; a partial batch to send when the table is full."""
        if self.state is None:
            self.state = aggregator(self.op, columns)
        values = None if self.op.params["agg"] == "count" else columns[self.value]
        self.state.update(columns[self.key], values)
        return self.flush() if len(self.state) >= FLUSH_KEYS else None

    def flush(self) -> Columns | None:
        if self.state is None or not len(self.state):
            return None
        keys, values, counts = self.state.partial()
        self.state = None
        return {self.key: keys, self.value: values, self.weights: counts}


class RecordCombiner:
    """A record exchange's combiner (see the module docstring), on the native
    ``_core.RecordFold``: its Python loop was a third of a word count's producer time."""

    def __init__(self, op: Operator) -> None:
        agg = op.params["agg"]
        key = op.params["key"]
        field = op.params["field"]
        value_of: Callable[[Any], Any] = (lambda _: 1) if agg == "count" else _field_getter(field)
        self.fold = _core.RecordFold(
            _FOLD[agg],
            getter(key),
            value_of,
            _plain_index(key.selector) if key.kind == "index" else -1,
            _plain_index(field) if agg != "count" else -1,
        )

    def push(self, records: list[Any]) -> list[Any] | None:
        """Fold records in; partial records to send when the fold is full."""
        self.fold.push(records)
        return self.flush() if len(self.fold) >= FLUSH_KEYS else None

    def push_through(self, chain: _core.RecordChain, records: list[Any]) -> list[Any] | None:
        """Run ``records`` through fused stateless stages straight into the fold
        (``dataflow.fusion``); partial records to send when the fold is full."""
        chain.run(records, self.fold)
        return self.flush() if len(self.fold) >= FLUSH_KEYS else None

    def flush(self) -> list[Any] | None:
        return self.fold.partial() or None


_FOLD = {
    "sum": _core.FOLD_SUM,
    "min": _core.FOLD_MIN,
    "max": _core.FOLD_MAX,
    "count": _core.FOLD_COUNT,
}


def _plain_index(selector: object) -> int:
    """``selector`` when it is a non-negative int index (tuple and list records are then read
    without the getter), else -1."""
    if type(selector) is int and selector >= 0:
        return selector
    return -1
