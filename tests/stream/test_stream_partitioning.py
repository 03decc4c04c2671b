"""Which subtask gets which records, for every partitioning kind, in the in-process executor.

Each test builds ``source (p) --kind--> collect sink (q)`` and checks the sink's subtask inputs
against pydispatch.partition and Flink's rules, computed here independently of the executor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydispatch import partition as pt
from pydispatch.dataflow.local import run_local
from pydispatch.dataflow.routing import key_array
from pydispatch.stream import DataStream, StreamEnvironment


def _splits(records: list[Any], p: int) -> list[list[Any]]:
    """What each source subtask of from_collection reads: contiguous slices."""
    n = len(records)
    return [records[i * n // p : (i + 1) * n // p] for i in range(p)]


def _source(records: list[Any], p: int, q: int) -> DataStream:
    """A source of parallelism p in an environment whose default (the sink's) is q."""
    return StreamEnvironment(parallelism=q).from_collection(records).set_parallelism(p)


def _subtask_inputs(stream: DataStream) -> list[Any]:
    """What each subtask of a collect sink after ``stream`` receives, in index order."""
    stream.collect()  # the public path runs too
    env = stream.environment
    sink = env.job_graph.sinks()[-1]
    parts = run_local(env.job_graph).subtask_results[sink.id]
    assert len(parts) == sink.parallelism
    return parts


SIZES = st.tuples(st.integers(1, 5), st.integers(1, 5))
RECORDS = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c", "d", "é"]), st.integers()), max_size=30
)


def test_forward_keeps_subtask_i_to_i() -> None:
    env = StreamEnvironment(parallelism=3)
    records = list(range(10))
    stream = env.from_collection(records).forward()
    assert _subtask_inputs(stream) == _splits(records, 3)
    plan = env.execution_graph()
    assert plan.edge_partitioning[0] == "forward"


@given(records=RECORDS, sizes=SIZES)
@settings(max_examples=40)
def test_rebalance_is_round_robin_from_the_subtask_index(
    records: list[Any], sizes: tuple[int, int]
) -> None:
    p, q = sizes
    stream = _source(records, p, q)
    got = _subtask_inputs(stream.rebalance())
    expected: list[list[Any]] = [[] for _ in range(q)]
    for i, split in enumerate(_splits(records, p)):
        ids = pt.round_robin(len(split), q, start=i)
        for r, t in zip(split, ids.tolist(), strict=True):
            expected[t].append(r)
        # Flink's RebalancePartitioner: consecutive records go to consecutive channels
        assert all((ids[j + 1] - ids[j]) % q == 1 % q for j in range(len(ids) - 1))
    assert got == expected


def _flink_pointwise(p: int, q: int) -> set[tuple[int, int]]:
    """Flink's EdgeManagerBuildUtil.connectPointwise, written out independently."""
    pairs = set()
    if p == q:
        pairs = {(i, i) for i in range(p)}
    elif p > q:
        for t in range(q):
            pairs |= {(s, t) for s in range(t * p // q, (t + 1) * p // q)}
    else:
        for s in range(p):
            start, end = (s * q + p - 1) // p, ((s + 1) * q + p - 1) // p
            pairs |= {(s, t) for t in range(start, end)}
    return pairs


@given(records=RECORDS, sizes=SIZES)
@settings(max_examples=40)
def test_rescale_follows_flinks_pointwise_pattern(
    records: list[Any], sizes: tuple[int, int]
) -> None:
    p, q = sizes
    stream = _source(records, p, q)
    got = _subtask_inputs(stream.rescale())
    expected: list[list[Any]] = [[] for _ in range(q)]
    used: set[tuple[int, int]] = set()
    for i, split in enumerate(_splits(records, p)):
        targets = pt.rescale_targets(i, p, q)
        ids = pt.rescale(len(split), i, p, q).tolist()
        assert set(ids) <= set(targets)
        for r, t in zip(split, ids, strict=True):
            expected[t].append(r)
            used.add((i, t))
    assert got == expected
    assert used <= _flink_pointwise(p, q)
    plan = stream.environment.execution_graph()
    x = next(n for n, x in enumerate(plan.exchanges) if x.partitioning == "rescale")
    assert set(plan.channels(x)) == _flink_pointwise(p, q)


@given(records=RECORDS, sizes=SIZES)
@settings(max_examples=40)
def test_hash_sends_equal_keys_together(records: list[Any], sizes: tuple[int, int]) -> None:
    p, q = sizes
    stream = _source(records, p, q)
    got = _subtask_inputs(stream.key_by(0))
    expected: list[list[Any]] = [[] for _ in range(q)]
    mp = pt.default_max_parallelism(q)
    for split in _splits(records, p):
        # key group by pydispatch's hash, then Flink's owner of the key group
        groups = pt.partition(np.array([r[0] for r in split], dtype=object), mp)
        for r, g in zip(split, groups.tolist(), strict=True):
            owners = [t for t in range(q) if g in pt.key_group_range(t, q, mp)]
            assert owners == [g * q // mp]
            expected[owners[0]].append(r)
    assert got == expected
    owner = {r[0]: t for t, part in enumerate(got) for r in part}
    assert all(owner[r[0]] == t for t, part in enumerate(got) for r in part)


@given(records=RECORDS, sizes=SIZES)
@settings(max_examples=40)
def test_flink_scheme_routes_by_key_group(records: list[Any], sizes: tuple[int, int]) -> None:
    p, q = sizes
    stream = _source(records, p, q)
    got = _subtask_inputs(stream.key_by(0, scheme="flink"))
    mp = pt.default_max_parallelism(q)
    for t, part in enumerate(got):  # Flink's own routing agrees
        keys = np.array([r[0] for r in part], dtype=object)
        assert all(x == t for x in pt.partition(keys, q, "flink").tolist())
    for t, part in enumerate(got):
        if part:
            groups = pt.key_groups(np.array([r[0] for r in part], dtype=object), mp)
            owned = pt.key_group_range(t, q, mp)
            assert all(g in owned for g in groups.tolist())
    assert sorted(r for part in got for r in part) == sorted(records)


@pytest.mark.parametrize("scheme", ["hash", "flink"])
def test_keyed_state_by_key_group_with_a_set_max_parallelism(scheme: str) -> None:
    env = StreamEnvironment(parallelism=3)
    data = [(i % 17, 1) for i in range(200)]
    keyed = env.from_collection(data).key_by(0, scheme=scheme)  # type: ignore[arg-type]
    out = keyed.sum(1).set_max_parallelism(7)
    assert sorted(out.collect()) == sorted((k, data.count((k, 1))) for k in range(17))
    plan = env.execution_graph()
    assert plan.job.operator(1).max_parallelism == 7
    got = _subtask_inputs(out)
    for t, part in enumerate(got):  # each subtask holds the keys of its 7-key-group range
        keys = np.array([k for k, _ in part], dtype=np.int64)
        groups = pt.partition(keys, 7) if scheme == "hash" else pt.key_groups(keys, 7)
        assert all(g in pt.key_group_range(t, 3, 7) for g in groups.tolist())


def test_flink_scheme_takes_python_ints_as_java_longs() -> None:
    keys = key_array([1, 2, 3], "flink")
    assert keys.dtype == np.int64
    assert key_array(["a", 1], "hash").dtype == object
    composite = key_array([(1, "a"), (2, "b")], "hash")
    assert isinstance(composite, tuple)
    assert len(composite) == 2
    with pytest.raises(TypeError, match="flink"):
        key_array([(1, 2)], "flink")
    with pytest.raises(TypeError, match="one length"):
        key_array([(1, 2), (1,)], "hash")


@given(records=RECORDS, sizes=SIZES)
@settings(max_examples=30)
def test_broadcast_gives_every_subtask_everything(
    records: list[Any], sizes: tuple[int, int]
) -> None:
    p, q = sizes
    stream = _source(records, p, q)
    got = _subtask_inputs(stream.broadcast())
    assert got == [records] * q


@given(records=RECORDS, sizes=SIZES)
@settings(max_examples=30)
def test_custom_partitioner_decides(records: list[Any], sizes: tuple[int, int]) -> None:
    p, q = sizes

    def by_length(key: int, n: int) -> int:
        return abs(key) % n

    got = _subtask_inputs(_source(records, p, q).partition_custom(by_length, 1))
    expected: list[list[Any]] = [[] for _ in range(q)]
    for split in _splits(records, p):
        for r in split:
            expected[abs(r[1]) % q].append(r)
    assert got == expected


def test_custom_partitioner_out_of_range_is_an_error() -> None:
    env = StreamEnvironment(parallelism=2)
    stream = env.from_collection([1, 2, 3]).partition_custom(lambda k, n: n, lambda r: r)
    with pytest.raises(ValueError, match="partitioner returned 2"):
        stream.collect()


def test_columnar_hash_split_matches_partition_split() -> None:
    rng = np.random.default_rng(2)
    cols = {"k": rng.integers(0, 100, 1000), "v": rng.normal(size=1000)}
    p, q = 2, 3
    env = StreamEnvironment(parallelism=q)
    parts = _subtask_inputs(env.from_arrays(cols).set_parallelism(p).key_by("k"))
    splits = [
        {n: c[i * 1000 // p : (i + 1) * 1000 // p] for n, c in cols.items()} for i in range(p)
    ]
    by_source = [pt.split(split, pt.partition(split["k"], q), q) for split in splits]
    for t in range(q):
        assert isinstance(parts[t], dict)
        for name in cols:
            expected = np.concatenate([by_source[i][t][name] for i in range(p)])
            np.testing.assert_array_equal(parts[t][name], expected)


def test_columnar_broadcast_rebalance_and_rescale_keep_columns() -> None:
    cols = {"k": np.arange(10), "v": np.arange(10) * 0.5}
    for kind in ("broadcast", "rebalance", "rescale"):
        env = StreamEnvironment(parallelism=2)
        out = getattr(env.from_arrays(cols), kind)().collect()
        assert isinstance(out, dict)
        copies = 2 if kind == "broadcast" else 1
        assert sorted(out["k"].tolist()) == sorted(list(range(10)) * copies)


def test_record_and_columnar_paths_route_equal_keys_alike() -> None:
    keys = np.arange(-50, 50, dtype=np.int64)
    env = StreamEnvironment(parallelism=4)
    columnar = _subtask_inputs(env.from_arrays({"k": keys}).set_parallelism(1).key_by("k"))
    records = _subtask_inputs(_source(keys.tolist(), 1, 4).key_by(lambda x: x))
    for part_c, part_r in zip(columnar, records, strict=True):
        assert isinstance(part_c, dict)
        assert part_c["k"].tolist() == part_r


def test_operators_after_key_by_read_a_hash_partitioned_input() -> None:
    stream = _source([("a", 1), ("b", 2), ("a", 3)], 2, 3)
    keyed_map = stream.key_by(0).map(lambda r: r[1])
    edge = stream.environment.job_graph.inputs(keyed_map.operator.id)[0]
    assert edge.partitioning == "hash"
    assert sorted(keyed_map.collect()) == [1, 2, 3]
