"""Keyed state: the heap backend, its snapshots by key group, and the user's state API.

Flink's model. Every keyed operator (an aggregation, a window, a ``KeyedProcessFunction``)
keeps state scoped to the current key, and every key belongs to one of the operator's
``max_parallelism`` key groups (:func:`~pydispatch.dataflow.routing.key_groups_of`, the very
function the keyed exchange routes by). Subtask ``i`` of ``p`` owns the contiguous key groups
:func:`~pydispatch.partition.key_group_range` gives it, so a snapshot is cut by key group:

- :class:`KeyedSnapshot`: ``{key group: that group's state and timers, serialized}`` of one
  operator subtask. Restoring keeps the groups of the new subtask's own range out of ALL the
  previous run's snapshots of that operator (:func:`owned_groups`): that is the whole of
  rescaling, whatever the old and new parallelism, as long as ``max_parallelism`` is kept
  (it fixes the key groups; a change is refused, as Flink does).
- The heap backend (:class:`HeapKeyedStateBackend`) holds, per state name, one dict from key
  to value: one dict lookup per access on the hot path. Key groups are computed when a
  snapshot is taken, batch-vectorised, and each group serialized on its own (pickle, or
  cloudpickle for the classes of a job's own file).
- Timers (:class:`TimerQueue`): one heap per time domain, at most one timer per key and time
  (Flink's rule), snapshotted with their key's group.

The state API (re-exported by :mod:`pydispatch.stream.state` under PyFlink's names):
descriptors name a state; ``RuntimeContext.get_state(descriptor)`` (and ``get_list_state``...)
returns a handle that reads and writes the current key's value.
"""

from __future__ import annotations

import heapq
import operator
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..partition import key_group_range
from .routing import key_array, key_groups_of

__all__ = [
    "AggregatingState",
    "AggregatingStateDescriptor",
    "HeapKeyedStateBackend",
    "KeyedSnapshot",
    "ListState",
    "ListStateDescriptor",
    "MapState",
    "MapStateDescriptor",
    "ReducingState",
    "ReducingStateDescriptor",
    "State",
    "StateDescriptor",
    "TimerQueue",
    "ValueState",
    "ValueStateDescriptor",
    "by_group",
    "decode",
    "encode",
    "groups_of_keys",
    "owned_groups",
    "pick",
    "split_snapshots",
]


@dataclass(frozen=True)
class KeyedSnapshot:
    """One keyed operator subtask's state: ``groups`` maps a key group to its serialized state
    and timers (groups without state are absent). Picklable, and cheap to build."""

    max_parallelism: int
    groups: dict[int, bytes]

    def __post_init__(self) -> None:
        if not 1 <= self.max_parallelism <= 1 << 15:
            raise ValueError(f"max_parallelism must be in [1, 32768], not {self.max_parallelism}")
        bad = [g for g in self.groups if not 0 <= g < self.max_parallelism]
        if bad:
            raise ValueError(f"key groups {bad[:5]} outside [0, {self.max_parallelism})")

    @property
    def size(self) -> int:
        """Bytes of serialized state."""
        return sum(len(b) for b in self.groups.values())


def encode(value: Any) -> bytes:
    """Serialize one key group's state: pickle, or cloudpickle when a value's class lives in
    a job's own file (pickle cannot import it by name on the worker)."""
    try:
        return pickle.dumps(value, protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle  # the wire's pickler; imported here: rarely needed

        return bytes(cloudpickle.dumps(value, protocol=5))


def decode(data: bytes) -> Any:
    """The state :func:`encode` serialized (from a snapshot this job's run wrote)."""
    return pickle.loads(data)


def groups_of_keys(keys: list[Any], scheme: str, max_parallelism: int) -> npt.NDArray[np.int32]:
    """The key group of each key value, exactly as the keyed exchange routes it."""
    if not keys:
        return np.empty(0, np.int32)
    return key_groups_of(key_array(keys, scheme), scheme, max_parallelism)


def by_group(groups: npt.NDArray[Any]) -> Iterator[tuple[int, npt.NDArray[np.intp]]]:
    """``(key group, positions of its items in input order)`` for each group present."""
    if groups.shape[0] == 0:
        return
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.shape[0]]
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        yield int(ordered[start]), order[start:end]


def pick(items: list[Any], positions: list[int]) -> tuple[Any, ...]:
    """``items`` at ``positions``, as a tuple picked in C (flat tuples of keys and of values
    also pickle ten times faster than as many (key, value) pairs, which pickle memoises)."""
    if len(positions) == 1:
        return (items[positions[0]],)
    picked: tuple[Any, ...] = operator.itemgetter(*positions)(items)
    return picked


def owned_groups(
    snapshots: Iterable[KeyedSnapshot], max_parallelism: int, index: int, parallelism: int
) -> dict[int, bytes]:
    """The key groups subtask ``index`` of ``parallelism`` owns, out of every snapshot of an
    operator's previous run (any parallelism), in key-group order."""
    owned = key_group_range(index, parallelism, max_parallelism)
    out: dict[int, bytes] = {}
    for snapshot in snapshots:
        if snapshot.max_parallelism != max_parallelism:
            raise ValueError(
                f"the snapshot has {snapshot.max_parallelism} key groups (max parallelism) and "
                f"the operator {max_parallelism}: keyed state moves only between runs with the "
                "same max parallelism (set_max_parallelism)"
            )
        for group, data in snapshot.groups.items():
            if group in owned:
                if group in out:
                    raise ValueError(f"key group {group} is in two snapshots of one operator")
                out[group] = data
    return dict(sorted(out.items()))


def split_snapshots(snapshots: Iterable[KeyedSnapshot], parallelism: int) -> list[KeyedSnapshot]:
    """An operator's snapshots (any old parallelism) recut for ``parallelism`` subtasks: item
    ``i`` holds the key groups subtask ``i`` owns (for savepoint tools)."""
    snapshots = list(snapshots)
    if not snapshots:
        return []
    mp = snapshots[0].max_parallelism
    if not 1 <= parallelism <= mp:
        raise ValueError(f"parallelism must be in [1, {mp}] (the max parallelism)")
    return [
        KeyedSnapshot(mp, owned_groups(snapshots, mp, i, parallelism)) for i in range(parallelism)
    ]


# -- the user's state API (PyFlink's pyflink.datastream.state) --------------------------------


class StateDescriptor:
    """Names a keyed state. ``type_info`` is accepted for PyFlink source compatibility and not
    used: values are Python objects, serialized with pickle in snapshots."""

    kind = ""

    def __init__(self, name: str, type_info: object = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("a state descriptor's name must be a non-empty str")
        self.name = name
        self.type_info = type_info

    def get_name(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ValueStateDescriptor(StateDescriptor):
    """A :class:`ValueState`: one value per key."""

    kind = "value"


class ListStateDescriptor(StateDescriptor):
    """A :class:`ListState`: a list per key."""

    kind = "list"


class MapStateDescriptor(StateDescriptor):
    """A :class:`MapState`: a dict per key. PyFlink's two type infos are accepted, unused."""

    kind = "map"

    def __init__(
        self, name: str, key_type_info: object = None, value_type_info: object = None
    ) -> None:
        super().__init__(name, (key_type_info, value_type_info))


class ReducingStateDescriptor(StateDescriptor):
    """A :class:`ReducingState`: the values added to a key, folded by ``reduce_function``
    (a two-argument function or a ``ReduceFunction``)."""

    kind = "reducing"

    def __init__(self, name: str, reduce_function: Any, type_info: object = None) -> None:
        super().__init__(name, type_info)
        function = getattr(reduce_function, "reduce", reduce_function)
        if not callable(function):
            raise TypeError("ReducingStateDescriptor: reduce_function must be callable")
        self.reduce_function: Callable[[Any, Any], Any] = function


class AggregatingStateDescriptor(StateDescriptor):
    """An :class:`AggregatingState`: the values added to a key, folded into an accumulator by
    ``agg_function`` (an ``AggregateFunction``: ``create_accumulator()``,
    ``add(value, accumulator)`` returning the accumulator, ``get_result(accumulator)``)."""

    kind = "aggregating"

    def __init__(self, name: str, agg_function: Any, state_type_info: object = None) -> None:
        super().__init__(name, state_type_info)
        for method in ("create_accumulator", "add", "get_result"):
            if not callable(getattr(agg_function, method, None)):
                raise TypeError(f"AggregatingStateDescriptor: agg_function has no {method}()")
        self.agg_function = agg_function


class State:
    """A keyed state handle: reads and writes the value of the backend's current key."""

    def __init__(self, backend: HeapKeyedStateBackend, table: dict[Any, Any]) -> None:
        self._backend = backend
        self._table = table

    def _key(self) -> Any:
        return self._backend.key

    def clear(self) -> None:
        """Drop the current key's value."""
        self._table.pop(self._key(), None)


class ValueState(State):
    def value(self) -> Any:
        """The current key's value, or None."""
        return self._table.get(self._backend.key)

    def update(self, value: Any) -> None:
        """Set the current key's value (None clears it, as in Flink)."""
        if value is None:
            self.clear()
        else:
            self._table[self._backend.key] = value


class ListState(State):
    def get(self) -> list[Any]:
        """The current key's list (empty when none); changing it changes the state."""
        values: list[Any] = self._table.get(self._key(), [])
        return values

    def add(self, value: Any) -> None:
        self._table.setdefault(self._key(), []).append(value)

    def add_all(self, values: Iterable[Any]) -> None:
        self._table.setdefault(self._key(), []).extend(values)

    def update(self, values: Iterable[Any]) -> None:
        """Replace the current key's list."""
        values = list(values)
        if values:
            self._table[self._key()] = values
        else:
            self.clear()


class MapState(State):
    def _map(self) -> dict[Any, Any]:
        return self._table.get(self._key(), {})  # type: ignore[no-any-return]

    def get(self, key: Any) -> Any:
        """The value at ``key`` of the current key's map, or None."""
        return self._map().get(key)

    def put(self, key: Any, value: Any) -> None:
        self._table.setdefault(self._key(), {})[key] = value

    def put_all(self, items: dict[Any, Any] | Iterable[tuple[Any, Any]]) -> None:
        self._table.setdefault(self._key(), {}).update(items)

    def contains(self, key: Any) -> bool:
        return key in self._map()

    def remove(self, key: Any) -> None:
        current = self._key()
        entries = self._table.get(current)
        if entries is not None:
            entries.pop(key, None)
            if not entries:  # an empty map is no state: nothing to snapshot
                del self._table[current]

    def keys(self) -> list[Any]:
        return list(self._map().keys())

    def values(self) -> list[Any]:
        return list(self._map().values())

    def items(self) -> list[tuple[Any, Any]]:
        return list(self._map().items())

    def is_empty(self) -> bool:
        return not self._map()


class ReducingState(State):
    def __init__(
        self,
        backend: HeapKeyedStateBackend,
        table: dict[Any, Any],
        reduce: Callable[[Any, Any], Any],
    ) -> None:
        super().__init__(backend, table)
        self._reduce = reduce

    def get(self) -> Any:
        """The current key's reduced value, or None."""
        return self._table.get(self._key())

    def add(self, value: Any) -> None:
        key = self._key()
        table = self._table
        table[key] = self._reduce(table[key], value) if key in table else value


class AggregatingState(State):
    def __init__(
        self, backend: HeapKeyedStateBackend, table: dict[Any, Any], function: Any
    ) -> None:
        super().__init__(backend, table)
        self._function = function

    def get(self) -> Any:
        """The result of the current key's accumulator, or None when nothing was added."""
        key = self._key()
        if key not in self._table:
            return None
        return self._function.get_result(self._table[key])

    def add(self, value: Any) -> None:
        key = self._key()
        table = self._table
        accumulator = table[key] if key in table else self._function.create_accumulator()
        table[key] = self._function.add(value, accumulator)


# -- timers ----------------------------------------------------------------------------------


class TimerQueue:
    """Timers of one time domain: at most one per ``(time, key)``, popped in time order
    (registration order among equal times). Deletion is lazy: a deleted timer stays in the
    heap until it reaches the top."""

    def __init__(self) -> None:
        self._heap: list[tuple[Any, int, Any]] = []
        self._live: set[tuple[Any, Any]] = set()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def register(self, time: Any, key: Any) -> None:
        if (time, key) in self._live:
            return
        self._live.add((time, key))
        self._seq += 1
        heapq.heappush(self._heap, (time, self._seq, key))

    def delete(self, time: Any, key: Any) -> None:
        self._live.discard((time, key))

    def peek(self) -> Any:
        """The earliest live timer's time, or None."""
        heap = self._heap
        while heap and (heap[0][0], heap[0][2]) not in self._live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_before(self, limit: Any, strict: bool) -> tuple[Any, Any] | None:
        """The earliest live timer at a time below ``limit`` (or at it, unless ``strict``),
        removed; None when there is none."""
        time = self.peek()
        if time is None or time > limit or (strict and time == limit):
            return None
        time, _, key = heapq.heappop(self._heap)
        self._live.discard((time, key))
        return time, key

    def timers(self) -> list[tuple[Any, Any]]:
        """Every live timer, ``(time, key)``, in firing order."""
        return [(t, k) for t, _, k in sorted(self._heap) if (t, k) in self._live]


# -- the backend -----------------------------------------------------------------------------


class HeapKeyedStateBackend:
    """A keyed operator subtask's state (see the module docstring): named tables from key to
    value, the current key, and event- and processing-time timers."""

    def __init__(self, scheme: str, max_parallelism: int) -> None:
        self.scheme = scheme
        self.max_parallelism = max_parallelism
        self.tables: dict[str, dict[Any, Any]] = {}
        self.descriptors: dict[str, StateDescriptor] = {}
        self.handles: dict[str, State] = {}
        self.event_timers = TimerQueue()
        self.processing_timers = TimerQueue()
        #: The key of the record or timer being processed (an attribute: handles read it on
        #: every access, a method call each would cost a third of a simple count's time).
        self.key: Any = None

    def current_key(self) -> Any:
        return self.key

    def set_current_key(self, key: Any) -> None:
        self.key = key

    def state(self, descriptor: StateDescriptor, kind: str) -> State:
        """The handle of ``descriptor``'s state (one per name; a name keeps its kind)."""
        if not isinstance(descriptor, StateDescriptor) or descriptor.kind != kind:
            raise TypeError(
                f"expected a {kind.capitalize()}StateDescriptor, got {type(descriptor).__name__}"
            )
        name = descriptor.name
        known = self.descriptors.get(name)
        if known is not None:
            if known.kind != kind:
                raise ValueError(f"state {name!r} is a {known.kind} state, not a {kind} state")
            return self.handles[name]
        self.descriptors[name] = descriptor
        table = self.tables.setdefault(name, {})
        handle: State
        if isinstance(descriptor, ReducingStateDescriptor):
            handle = ReducingState(self, table, descriptor.reduce_function)
        elif isinstance(descriptor, AggregatingStateDescriptor):
            handle = AggregatingState(self, table, descriptor.agg_function)
        else:
            handle = {"value": ValueState, "list": ListState, "map": MapState}[kind](self, table)
        self.handles[name] = handle
        return handle

    def snapshot_groups(self) -> dict[int, bytes]:
        """Each key group's tables and timers: ``{group: encode((tables, event, processing))}``
        with ``tables`` ``{name: (keys, values)}`` and the timers ``[(time, key)]``."""
        parts: dict[int, tuple[dict[str, Any], list[Any], list[Any]]] = {}

        def part(group: int) -> tuple[dict[str, Any], list[Any], list[Any]]:
            entry = parts.get(group)
            if entry is None:
                entry = parts[group] = ({}, [], [])
            return entry

        mp, scheme = self.max_parallelism, self.scheme
        for name, table in self.tables.items():
            keys, values = list(table), list(table.values())
            for group, positions in by_group(groups_of_keys(keys, scheme, mp)):
                at = positions.tolist()
                part(group)[0][name] = (pick(keys, at), pick(values, at))
        for event, queue in ((True, self.event_timers), (False, self.processing_timers)):
            timers = queue.timers()
            groups = groups_of_keys([k for _, k in timers], scheme, mp)
            for group, positions in by_group(groups):
                entry = part(group)
                (entry[1] if event else entry[2]).extend(timers[i] for i in positions.tolist())
        return {group: encode(parts[group]) for group in sorted(parts)}

    def restore_groups(self, groups: dict[int, bytes]) -> None:
        """Merge key groups' state and timers (a restore, before any record)."""
        event: list[tuple[Any, Any]] = []
        processing: list[tuple[Any, Any]] = []
        for data in groups.values():
            tables, event_timers, processing_timers = decode(data)
            for name, (keys, values) in tables.items():
                self.tables.setdefault(name, {}).update(zip(keys, values, strict=True))
            event.extend(event_timers)
            processing.extend(processing_timers)
        for queue, timers in ((self.event_timers, event), (self.processing_timers, processing)):
            for time, key in sorted(timers, key=lambda t: t[0]):
                queue.register(time, key)
