"""Keyed state for process functions (PyFlink's ``pyflink.datastream.state``).

A ``KeyedProcessFunction`` (:mod:`pydispatch.stream.functions`) asks its ``RuntimeContext`` for
state by descriptor, usually in ``open``::

    self.count = runtime_context.get_state(ValueStateDescriptor("count", Types.LONG()))

and every call on the handle reads or writes the value of the key of the record (or timer)
being processed. State is kept in memory, per key, and snapshotted by key group, so a job
restored from a checkpoint or savepoint at another parallelism finds each key's state in the
subtask that now owns its key. Type informations are accepted for PyFlink source
compatibility and not used: values are Python objects (pickled in snapshots).

- :class:`ValueState`: ``value()`` / ``update(value)`` / ``clear()``;
- :class:`ListState`: ``get()`` / ``add(value)`` / ``add_all(values)`` / ``update(values)`` /
  ``clear()``;
- :class:`MapState`: ``get(key)`` / ``put`` / ``put_all`` / ``contains`` / ``remove`` /
  ``keys()`` / ``values()`` / ``items()`` / ``is_empty()`` / ``clear()``;
- :class:`ReducingState`: ``get()`` / ``add(value)`` (folded by the descriptor's reduce
  function) / ``clear()``;
- :class:`AggregatingState`: ``get()`` / ``add(value)`` / ``clear()``, through the
  descriptor's ``AggregateFunction`` (:mod:`pydispatch.stream.functions`).
"""

from __future__ import annotations

from .._exports import publish
from ..dataflow.keyed_state import (
    AggregatingState,
    AggregatingStateDescriptor,
    ListState,
    ListStateDescriptor,
    MapState,
    MapStateDescriptor,
    ReducingState,
    ReducingStateDescriptor,
    State,
    StateDescriptor,
    ValueState,
    ValueStateDescriptor,
)

__all__ = [
    "AggregatingState",
    "AggregatingStateDescriptor",
    "ListState",
    "ListStateDescriptor",
    "MapState",
    "MapStateDescriptor",
    "ReducingState",
    "ReducingStateDescriptor",
    "State",
    "StateDescriptor",
    "ValueState",
    "ValueStateDescriptor",
]

publish(__name__, globals(), __all__)
