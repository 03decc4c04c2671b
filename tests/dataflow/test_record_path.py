"""The record path: its native kernels (``_core.RecordFold``, ``_core.RecordChain``) against
the Python they replace, fused chains on a real cluster against the reference executor, and
large collections reaching the slices through shared memory."""

from __future__ import annotations

import operator
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _support.process_guard import eventually
from pydispatch import _core
from pydispatch.dataflow import handle as handle_module
from pydispatch.dataflow.local import run_local
from pydispatch.dataflow.operators import transform
from pydispatch.dataflow.subtask import SubtaskRunner
from pydispatch.plan._sources import SpilledElements
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import DataStream, JobHandle, StreamEnvironment
from pydispatch.wire.shm_files import shared_dir, spill_prefix

cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}

_CODES = {"sum": _core.FOLD_SUM, "min": _core.FOLD_MIN, "max": _core.FOLD_MAX}
_COMBINE: dict[str, Callable[[Any, Any], Any]] = {"sum": operator.add, "min": min, "max": max}


def python_fold(
    records: list[Any], agg: str, key_of: Callable[[Any], Any], value_of: Callable[[Any], Any]
) -> list[tuple[Any, Any, int]]:
    """The record combiner's former Python loop: the reference."""
    state: dict[Any, list[Any]] = {}
    for record in records:
        key = key_of(record)
        if key not in state:
            state[key] = [1 if agg == "count" else value_of(record), 1]
        else:
            entry = state[key]
            entry[0] = entry[0] + 1 if agg == "count" else _COMBINE[agg](entry[0], value_of(record))
            entry[1] += 1
    return [(key, acc, n) for key, (acc, n) in state.items()]


def native_fold(
    records: list[Any],
    agg: str,
    key_of: Callable[[Any], Any],
    value_of: Callable[[Any], Any],
    indices: tuple[int, int] = (-1, -1),
) -> list[tuple[Any, Any, int]]:
    code = _core.FOLD_COUNT if agg == "count" else _CODES[agg]
    fold = _core.RecordFold(code, key_of, value_of, *indices)
    half = len(records) // 2
    fold.push(records[:half])
    fold.push(records[half:])
    assert len(fold) == len({key_of(r) for r in records})
    out = fold.partial()
    assert len(fold) == 0
    assert fold.partial() == []
    return out


numbers = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.fractions())
records = st.lists(
    st.tuples(st.sampled_from(["a", "b", "é", 3, 3.0, (1, 2), None]), numbers), max_size=300
)


@given(records=records, agg=st.sampled_from(["sum", "min", "max", "count"]))
@settings(max_examples=150, deadline=None)
def test_fold_equals_the_python_loop(records: list[Any], agg: str) -> None:
    """Keys in first-seen order (3 and 3.0 are one key, as in a dict), big ints, floats and
    fractions: the same partials, by the tuple fast path and by the getters."""
    key_of, value_of = operator.itemgetter(0), operator.itemgetter(1)
    expected = python_fold(records, agg, key_of, value_of)
    fast = native_fold(records, agg, key_of, value_of, (0, 1))
    slow = native_fold(records, agg, key_of, value_of)
    assert fast == expected
    assert slow == expected
    # Same objects, not only equal ones: min/max keep the first of equal values.
    assert [type(acc) for _, acc, _ in fast] == [type(acc) for _, acc, _ in expected]


def test_fold_reads_lists_dicts_negative_indices_and_functions() -> None:
    rows = [["x", 2], ["y", 5], ["x", 4]]
    assert native_fold(rows, "sum", operator.itemgetter(0), operator.itemgetter(1), (0, 1)) == [
        ("x", 6, 2),
        ("y", 5, 1),
    ]
    by_name = [{"k": "p", "v": 1}, {"k": "p", "v": -3}]
    got = native_fold(by_name, "min", operator.itemgetter("k"), operator.itemgetter("v"))
    assert got == [("p", -3, 2)]
    # A negative index and a short record go through the getter: its meaning, its error.
    assert native_fold([(1, 2, 3)], "max", operator.itemgetter(-1), lambda r: r, (-1, -1)) == [
        (3, (1, 2, 3), 1)
    ]
    with pytest.raises(IndexError):
        native_fold([("only",)], "sum", operator.itemgetter(0), operator.itemgetter(1), (0, 1))
    with pytest.raises(TypeError, match="unhashable"):
        native_fold([([1], 1)], "sum", operator.itemgetter(0), operator.itemgetter(1), (0, 1))
    with pytest.raises(TypeError):  # "a" + 1, raised as the Python loop raises it
        native_fold([("k", "a"), ("k", 1)], "sum", operator.itemgetter(0), operator.itemgetter(1))
    with pytest.raises(ValueError, match="unknown aggregation code 9"):
        _core.RecordFold(9, operator.itemgetter(0), operator.itemgetter(1))


def test_fold_grows_past_its_first_allocation() -> None:
    rows = [(i % 5000, i) for i in range(20_000)]
    got = native_fold(rows, "sum", operator.itemgetter(0), operator.itemgetter(1), (0, 1))
    assert got == python_fold(rows, "sum", operator.itemgetter(0), operator.itemgetter(1))


class _Op:
    """Enough of an Operator for ``operators.transform``."""

    def __init__(self, kind: str, function: Callable[[Any], Any]) -> None:
        self.kind, self.function = kind, function


_STAGES: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
    "map": [("map", lambda x: x * 3 - 1), ("map", lambda x: x // 2)],
    "flat_map": [("flat_map", lambda x: range(x % 4)), ("flat_map", lambda x: [x, -x])],
    "filter": [("filter", lambda x: x % 3), ("filter", lambda x: x > 0)],
}
_KIND = {"map": _core.STAGE_MAP, "flat_map": _core.STAGE_FLAT_MAP, "filter": _core.STAGE_FILTER}


@given(
    data=st.lists(st.integers(-50, 50), max_size=200),
    picks=st.lists(
        st.tuples(st.sampled_from(list(_STAGES)), st.integers(0, 1)), min_size=1, max_size=5
    ),
)
@settings(max_examples=150, deadline=None)
def test_chain_equals_one_transform_per_operator(data: list[int], picks: list[Any]) -> None:
    stages = [_STAGES[kind][i] for kind, i in picks]
    expected, emitted = list(data), []
    for kind, f in stages:
        expected = transform(_Op(kind, f), expected)  # type: ignore[arg-type]
        emitted.append(len(expected))
    chain = _core.RecordChain([_KIND[k] for k, _ in stages], tuple(f for _, f in stages))
    assert chain.run(list(data)) == expected
    assert chain.counts == emitted
    assert chain.run([]) == []
    assert chain.counts == emitted


def test_chain_folds_into_a_combiner_and_raises_the_users_errors() -> None:
    lines = ["a b a", "", "c a", "b"]
    chain = _core.RecordChain(
        [_core.STAGE_FLAT_MAP, _core.STAGE_FILTER, _core.STAGE_MAP],
        (str.split, lambda w: w != "c", lambda w: (w, 1)),
    )
    fold = _core.RecordFold(_core.FOLD_SUM, operator.itemgetter(0), operator.itemgetter(1), 0, 1)
    assert chain.run(lines, fold) == []
    assert fold.partial() == [("a", 3, 3), ("b", 2, 2)]
    assert chain.counts == [6, 5, 5]

    def boom(word: str) -> str:
        raise KeyError(f"no {word}")

    failing = _core.RecordChain([_core.STAGE_FLAT_MAP, _core.STAGE_MAP], (str.split, boom))
    with pytest.raises(KeyError, match="no a"):
        failing.run(lines)
    with pytest.raises(ValueError, match="one kind per function"):
        _core.RecordChain([_core.STAGE_MAP], ())
    with pytest.raises(ValueError, match="unknown stage kind 7"):
        _core.RecordChain([7], (str,))


def test_which_operators_fuse() -> None:
    """A run of stateless record operators fuses when it has two or more or ends in a
    record combiner; a branch (two consumers) ends a run; map_batches never fuses."""
    env = StreamEnvironment(parallelism=2)
    words = env.from_collection(["a b"]).flat_map(str.split).map(lambda w: (w, 1))
    words.key_by(0).sum(1)._sink("Collect", {"sink": "collect", "columnar": False})
    branch = env.from_collection([1, 2]).map(lambda x: x + 1)
    branch.map(str)._sink("Collect", {"sink": "collect", "columnar": False})
    branch.filter(bool)._sink("Collect", {"sink": "collect", "columnar": False})
    env.from_collection([3]).map_batches(lambda b: b).map(str)._sink(
        "Collect", {"sink": "collect", "columnar": False}
    )
    plan = env.execution_graph()
    runs: dict[tuple[str, ...], bool] = {}
    for chain in plan.chains:
        runner = SubtaskRunner(plan, chain.id, 0, lambda *_: None)
        for run in runner.fused.values():
            runs[tuple(plan.job.operator(o).kind for o in run.ops)] = run.combiner is not None
    assert runs == {("flat_map", "map"): True, ("map",): True}


def _run_both(build: Callable[[StreamEnvironment], DataStream], cluster: LocalCluster) -> Any:
    local_env = StreamEnvironment(parallelism=2)
    local_sink = build(local_env)._sink("Collect", {"sink": "collect", "columnar": False}).id
    reference = run_local(local_env.job_graph, name="ref")
    env = StreamEnvironment(cluster, parallelism=2)
    sink = build(env)._sink("Collect", {"sink": "collect", "columnar": False}).id
    handle = env.execute("fused")
    assert isinstance(handle, JobHandle)
    handle.result(timeout=60)
    got = sorted(map(repr, handle.collected[sink]))
    assert got == sorted(map(repr, reference.collected[local_sink]))
    assert handle.records_in == reference.records_in
    assert handle.records_out == reference.records_out
    return handle


LINES = [" ".join(f"w{(i * 7 + j) % 23}" for j in range(i % 9)) for i in range(3_000)]


@pytest.mark.parametrize("agg", ["sum", "min", "max", "count"])
def test_a_fused_word_count_equals_the_reference(cluster: LocalCluster, agg: str) -> None:
    """flat_map -> filter -> map folded straight into the record combiner: the reference
    executor's results and records in and out per operator (it runs one operator at a time)."""

    def build(env: StreamEnvironment) -> DataStream:
        pairs = (
            env.from_collection(LINES)
            .flat_map(str.split)
            .filter(lambda w: w != "w3")
            .map(lambda w: (w, len(w) * (-1) ** len(w)))
            .key_by(0)
        )
        return pairs.count() if agg == "count" else getattr(pairs, agg)(1)

    handle = _run_both(build, cluster)
    assert handle.metrics()["bytes_shuffled"] < 2 * 23 * 60


def test_a_fused_chain_feeding_a_plain_exchange_equals_the_reference(
    cluster: LocalCluster,
) -> None:
    """The fused run's records forwarded as usual: a rebalance, then a keyed reduce (which
    does not combine)."""

    def build(env: StreamEnvironment) -> DataStream:
        return (
            env.from_collection(list(range(5_000)))
            .flat_map(lambda x: [x] * (x % 3))
            .map(lambda x: (x % 11, x))
            .rebalance()
            .key_by(0)
            .reduce(lambda a, b: (a[0], a[1] + b[1]))
        )

    _run_both(build, cluster)


def test_a_large_collection_reaches_the_slices_through_shared_memory(
    cluster: LocalCluster,
) -> None:
    """from_collection above SPILL_ELEMENTS: the client pickles each split once to a file; the
    job that travels holds paths; each slice reads its own file; the results and counts equal
    the reference; the job's master removes the files when it ends."""
    lines = LINES * 4
    assert len(lines) >= handle_module.SPILL_ELEMENTS

    def build(env: StreamEnvironment) -> DataStream:
        return env.from_collection(lines).flat_map(str.split).map(lambda w: (w, 1)).key_by(0).sum(1)

    handle = _run_both(build, cluster)
    job = handle._job
    assert job is not None
    (source,) = job.sources()
    spilled = source.params["elements"]
    assert isinstance(spilled, SpilledElements)
    assert len(spilled) == len(lines)
    assert len(spilled.paths) == 2
    assert len(pickle.dumps(spilled)) < 1_000
    eventually(lambda: not any(os.path.exists(p) for p in spilled.paths), "files removed", 60)


def test_spilled_elements_split_as_the_collection_does(tmp_path: Any) -> None:
    elements = list(range(10_001))
    job_env = StreamEnvironment(parallelism=3)
    job_env.from_collection(elements)._sink("Collect", {"sink": "collect", "columnar": False})
    job, directory = handle_module.spill_elements(job_env.job_graph)
    assert directory is not None
    try:
        (source,) = job.sources()
        spilled = source.params["elements"]
        assert isinstance(spilled, SpilledElements)
        assert spilled.read() == elements
        parts = [spilled.part(i) for i in range(3)]
        assert [len(p) for p in parts] == [3333, 3334, 3334]
        assert [x for p in parts for x in p] == elements
    finally:
        handle_module.shutil.rmtree(directory)
    # Small collections and elements pickle cannot take travel with the job.
    small_env = StreamEnvironment(parallelism=2)
    small_env.from_collection([1, 2])._sink("Collect", {"sink": "collect", "columnar": False})
    functions = [(lambda: None)] * 10_000
    small_env.from_collection(functions)._sink("Collect", {"sink": "collect", "columnar": False})
    job, directory = handle_module.spill_elements(small_env.job_graph)
    assert directory is None
    assert job is small_env.job_graph


def test_a_closing_local_cluster_removes_what_its_jobs_spilled(tmp_path: Any) -> None:
    """Its processes end by SIGKILL, so a job's master cannot remove its spilled sources: the
    cluster removes the directories named after its address, and no one else's."""
    other = tempfile.mkdtemp(prefix=spill_prefix("ipc:///elsewhere"), dir=shared_dir())
    try:
        with LocalCluster(workers=1, slots=1) as small:
            env = StreamEnvironment(small, parallelism=1)
            stream = env.from_collection(list(range(20_000))).map(str)
            stream._sink("Collect", {"sink": "collect", "columnar": False})
            handle = env.execute("left running")
            job = handle._job
            assert job is not None
            (source,) = job.sources()
            (path,) = source.params["elements"].paths
            assert os.path.basename(os.path.dirname(path)).startswith(spill_prefix(small.address))
            # Finished, its result not fetched: its master keeps it, and the files, for the
            # result's retention (minutes), until the cluster ends it.
            eventually(lambda: handle.status() == "FINISHED", "the job finished", 60)
            assert os.path.exists(path)
        assert not os.path.exists(os.path.dirname(path))
        assert os.path.isdir(other)
    finally:
        handle_module.shutil.rmtree(other, ignore_errors=True)
