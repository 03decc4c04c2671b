"""Planning: chaining exactly where Flink chains, subtasks and channels, traffic estimates,
readable and JSON forms, placement input arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydispatch import plan as pl
from pydispatch.plan._placement_input import worker_capacity
from pydispatch.stream import StreamEnvironment


def inc(x: int) -> int:
    return x + 1


def chains(env: StreamEnvironment) -> list[list[str]]:
    graph = env.execution_graph()
    return [[env.job_graph.operator(o).name for o in c.operators] for c in graph.chains]


# -- chaining ---------------------------------------------------------------------------------


def test_source_map_sink_of_equal_parallelism_form_one_chain() -> None:
    env = StreamEnvironment(parallelism=3)
    env.from_collection([1]).map(inc).filter(bool).for_each(print)
    assert chains(env) == [["Source: Collection", "Map", "Filter", "Sink: For Each"]]
    assert env.execution_graph().exchanges == ()


def test_parallelism_change_breaks_the_chain_and_becomes_rebalance() -> None:
    env = StreamEnvironment(parallelism=2)
    env.from_elements([1]).map(inc).for_each(print)  # from_elements is non-parallel
    assert chains(env) == [["Source: Elements"], ["Map", "Sink: For Each"]]
    graph = env.execution_graph()
    assert graph.edge_partitioning == ("rebalance", "forward")
    assert graph.chained == (False, True)
    assert [x.partitioning for x in graph.exchanges] == ["rebalance"]


def test_key_by_and_explicit_partitionings_break_chains() -> None:
    for kind in ("rebalance", "rescale", "broadcast"):
        env = StreamEnvironment(parallelism=2)
        getattr(env.from_collection([1]), kind)().map(inc)
        assert chains(env) == [["Source: Collection"], ["Map"]], kind
    env = StreamEnvironment(parallelism=2)
    env.from_collection([(1, 1)]).key_by(0).sum(1).for_each(print)
    assert chains(env) == [["Source: Collection"], ["Keyed Aggregation (sum)", "Sink: For Each"]]
    env = StreamEnvironment(parallelism=2)
    env.from_collection([1]).partition_custom(lambda k, n: 0, lambda x: x).map(inc)
    assert chains(env) == [["Source: Collection"], ["Map"]]


def test_explicit_forward_of_equal_parallelism_chains() -> None:
    env = StreamEnvironment(parallelism=2)
    env.from_collection([1]).forward().map(inc)
    assert chains(env) == [["Source: Collection", "Map"]]


def test_chaining_strategies() -> None:
    env = StreamEnvironment()
    env.from_elements([1]).map(inc).disable_chaining().map(inc).for_each(print)
    assert chains(env) == [["Source: Elements"], ["Map"], ["Map", "Sink: For Each"]]
    env = StreamEnvironment()
    env.from_elements([1]).map(inc).start_new_chain().map(inc).for_each(print)
    assert chains(env) == [["Source: Elements"], ["Map", "Map", "Sink: For Each"]]
    env = StreamEnvironment()
    env.from_elements([1]).map(inc).for_each(print).disable_chaining()
    assert chains(env) == [["Source: Elements", "Map"], ["Sink: For Each"]]
    env = StreamEnvironment()
    env.from_elements([1]).disable_chaining().map(inc)
    assert chains(env) == [["Source: Elements"], ["Map"]]


def test_an_operator_with_two_inputs_heads_its_own_chain() -> None:
    env = StreamEnvironment()
    a = env.from_elements([1])
    b = env.from_elements([2])
    a.union(b).map(inc).for_each(print)
    assert chains(env) == [["Source: Elements"], ["Source: Elements"], ["Map", "Sink: For Each"]]
    graph = env.execution_graph()
    assert [x.partitioning for x in graph.exchanges] == ["forward", "forward"]


def test_fan_out_chains_every_chainable_output() -> None:
    env = StreamEnvironment()
    source = env.from_elements([1])
    source.map(inc).for_each(print)
    source.filter(bool).for_each(print)
    assert chains(env) == [
        ["Source: Elements", "Map", "Sink: For Each", "Filter", "Sink: For Each"]
    ]


def test_chaining_disabled_for_the_job() -> None:
    env = StreamEnvironment().disable_operator_chaining()
    assert not env.chaining_enabled
    env.from_elements([1]).map(inc).for_each(print)
    assert chains(env) == [["Source: Elements"], ["Map"], ["Sink: For Each"]]
    assert [x.partitioning for x in env.execution_graph().exchanges] == ["forward", "forward"]
    unchained = StreamEnvironment().disable_operator_chaining()
    assert unchained.from_elements([3]).map(inc).collect() == [4]  # and it still runs


ops = st.sampled_from(["map", "rebalance", "key_by", "disable", "head", "par"])


@given(steps=st.lists(ops, min_size=1, max_size=8), p=st.integers(1, 3))
@settings(max_examples=60)
def test_chain_rule_on_random_pipelines(steps: list[str], p: int) -> None:
    """Every edge of a random pipeline is chained iff Flink's rule says so."""
    env = StreamEnvironment(parallelism=p)
    stream = env.from_collection(list(range(6)))
    for step in steps:
        if step == "rebalance":
            stream = stream.rebalance().map(inc)
        elif step == "key_by":
            stream = stream.key_by(lambda x: x % 2).reduce(max)
        else:
            stream = stream.map(inc)
            if step == "disable":
                stream.disable_chaining()
            elif step == "head":
                stream.start_new_chain()
            elif step == "par":
                stream.set_parallelism(p + 1)
    stream.collect()
    job = env.job_graph
    graph = env.execution_graph()
    for i, e in enumerate(job.edges):
        up, down = job.operator(e.source), job.operator(e.target)
        expected = (
            e.partitioning == "forward"
            and up.parallelism == down.parallelism
            and down.chaining == "always"
            and up.chaining != "never"
            and len(job.inputs(down.id)) == 1
        )
        assert graph.chained[i] == expected
        same_chain = graph.chain_of[e.source] == graph.chain_of[e.target]
        assert same_chain == expected
    # every operator is in exactly one chain, chains are in topological order
    assert sorted(o for c in graph.chains for o in c.operators) == list(range(len(job.operators)))
    for x in graph.exchanges:
        assert x.source_chain < x.target_chain


# -- subtasks and channels --------------------------------------------------------------------


def _flink_pointwise(p: int, q: int) -> set[tuple[int, int]]:
    if p == q:
        return {(i, i) for i in range(p)}
    if p > q:
        return {(s, t) for t in range(q) for s in range(t * p // q, (t + 1) * p // q)}
    return {
        (s, t) for s in range(p) for t in range((s * q + p - 1) // p, ((s + 1) * q + p - 1) // p)
    }


@given(p=st.integers(1, 9), q=st.integers(1, 9))
@settings(max_examples=80)
def test_channels_per_partitioning(p: int, q: int) -> None:
    env = StreamEnvironment(parallelism=q)
    source = env.from_collection(list(range(100))).set_parallelism(p)
    source.rescale().map(inc)
    source.rebalance().map(inc)
    source.broadcast().map(inc)
    source.key_by(lambda x: x).reduce(max)
    graph = env.execution_graph()
    by_kind = {x.partitioning: n for n, x in enumerate(graph.exchanges)}
    all_pairs = {(s, t) for s in range(p) for t in range(q)}
    assert set(graph.channels(by_kind["rescale"])) == _flink_pointwise(p, q)
    for kind in ("rebalance", "broadcast", "hash"):
        assert set(graph.channels(by_kind[kind])) == all_pairs
        assert len(graph.channels(by_kind[kind])) == p * q
    # subtask ids: chain by chain, index by index
    assert graph.n_subtasks == p + 4 * q
    assert graph.subtask(1, q - 1) == p + q - 1
    np.testing.assert_array_equal(graph.subtask_index[:p], np.arange(p))
    assert graph.n_slots == max(p, q)


def test_forward_channels_are_i_to_i() -> None:
    env = StreamEnvironment(parallelism=4).disable_operator_chaining()
    env.from_collection([1]).map(inc)
    graph = env.execution_graph()
    assert graph.channels(0) == [(i, i) for i in range(4)]
    with pytest.raises(IndexError):
        graph.subtask(0, 4)


# -- traffic estimates ------------------------------------------------------------------------


def test_traffic_estimates_follow_selectivities_and_fan_out() -> None:
    env = StreamEnvironment(parallelism=2)
    source = env.from_collection(list(range(1000)))
    kept = source.filter(bool)  # default selectivity 0.5, chained
    kept.key_by(lambda x: x).sum().set_parallelism(4)
    kept.broadcast().map(inc).set_parallelism(3).hint(bytes_per_record=10)
    source.map(inc).hint(selectivity=3.0, bytes_per_record=8).rebalance().for_each(print)
    graph = env.execution_graph()
    assert graph.records_out[1] == 500
    hash_x, broadcast_x, rebalance_x = graph.exchanges
    assert hash_x.partitioning == "hash"
    assert hash_x.records == 500
    assert hash_x.bytes == 500 * pl.DEFAULT_BYTES_PER_RECORD
    rows = graph.channel_exchange == 0
    np.testing.assert_allclose(graph.channel_records[rows], 500 / (2 * 4))
    assert broadcast_x.records == 500 * 3  # each of 3 consumers gets everything
    np.testing.assert_allclose(graph.channel_records[graph.channel_exchange == 1], 250)
    assert graph.records_in[3] == 1500
    assert rebalance_x.records == 3000
    assert rebalance_x.bytes == 3000 * 8
    assert graph.channel_bytes.sum() == pytest.approx(sum(x.bytes for x in graph.exchanges))


def test_columnar_traffic_uses_row_sizes_and_sources_estimate_their_size() -> None:
    env = StreamEnvironment(parallelism=2)
    cols = {"k": np.zeros(1000, np.int32), "v": np.zeros(1000, np.float64)}
    env.from_arrays(cols).key_by("k").sum("v").rescale().for_each(print)
    env.from_source(lambda: [], estimated_records=50).rebalance().for_each(print)
    env.from_source(lambda: []).rebalance().for_each(print)
    graph = env.execution_graph()
    first, second, third, fourth = graph.exchanges
    assert first.bytes == 1000 * 12
    assert second.partitioning == "rescale"
    assert second.bytes == 1000 * 16  # aggregated rows: key + 64-bit value
    assert third.records == 50
    assert fourth.records == pl.DEFAULT_SOURCE_RECORDS


def test_work_estimates() -> None:
    env = StreamEnvironment(parallelism=2)
    env.from_collection(list(range(100))).map(inc)
    work = env.execution_graph().work()
    # source and map each see 100 records, 50 per subtask
    np.testing.assert_allclose(work, 2 * 50 * pl.DEFAULT_WORK_PER_RECORD["record"])


# -- readable and JSON forms ------------------------------------------------------------------


def _job() -> StreamEnvironment:
    env = StreamEnvironment(parallelism=2)
    words = env.from_collection(["a b"]).flat_map(str.split).map(lambda w: (w, 1))
    words.key_by(0).sum(1).set_resources(cpu=0.5).for_each(print)
    return env


def test_describe_shows_chains_and_exchanges() -> None:
    graph = _job().execution_graph()
    text = str(graph)
    assert text == graph.describe()
    assert "[0] Source: Collection -> Flat Map -> Map  (parallelism 2)" in text
    assert "--hash key[0]--> [1]  4 channels" in text
    assert "[1] Keyed Aggregation (sum) -> Sink: For Each  (parallelism 2, cpu=0.5)" in text
    assert repr(graph) == "ExecutionGraph(chains=2, subtasks=4, exchanges=1)"


def test_dict_form_is_json_and_stable() -> None:
    first = _job().execution_graph().to_dict()
    second = _job().execution_graph().to_dict()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["chains"][1]["operators"] == [3, 4]
    assert first["operators"][2]["function"] == "_job.<locals>.<lambda>"
    assert first["exchanges"][0]["key"] == {"kind": "index", "selector": 0, "scheme": "hash"}
    assert first["runtime_mode"] == "batch"


def test_plan_of_an_empty_graph_or_not_a_graph() -> None:
    with pytest.raises(ValueError, match="empty"):
        StreamEnvironment().execution_graph()
    with pytest.raises(TypeError, match="JobGraph"):
        pl.execution_graph("job")  # type: ignore[arg-type]


# -- placement input --------------------------------------------------------------------------


def test_placement_input_with_slot_sharing() -> None:
    env = StreamEnvironment(parallelism=2)
    source = env.from_collection(list(range(100))).set_resources(memory=10)
    source.key_by(lambda x: x).sum().set_parallelism(3).set_resources(cpu=1.0, memory=5)
    graph = env.execution_graph()
    data = pl.placement_input(graph)
    assert data.resources == ("slots", "cpu", "memory")
    assert data.slot_sharing
    # slot i: subtask i of the source (i < 2) and of the aggregation
    np.testing.assert_array_equal(data.demand, [[1, 1, 15], [1, 1, 15], [1, 1, 5]])
    np.testing.assert_array_equal(data.unit_of_subtask, [0, 1, 0, 1, 2])
    np.testing.assert_array_equal(data.slot_group, [0, 1, 0, 1, 2])
    # channels within a slot are free; the others are summed per slot pair
    pairs = set(zip(data.traffic_src.tolist(), data.traffic_dst.tolist(), strict=True))
    assert pairs == {(0, 1), (0, 2), (1, 0), (1, 2)}
    per_channel = 50 / 3 * pl.DEFAULT_BYTES_PER_RECORD
    np.testing.assert_allclose(data.traffic_volume, per_channel)
    assert data.traffic_volume.sum() == pytest.approx(graph.channel_bytes.sum() - 2 * per_channel)
    np.testing.assert_array_equal(data.subtask_workers([5, 6, 7]), [5, 6, 5, 6, 7])
    with pytest.raises(ValueError, match="one worker per unit"):
        data.subtask_workers([0, 1])
    assert data.work.sum() == pytest.approx(graph.work().sum())


def test_placement_input_without_slot_sharing() -> None:
    env = StreamEnvironment(parallelism=2)
    env.from_collection(list(range(10))).rebalance().map(inc).set_resources(gpu=1)
    graph = env.execution_graph()
    data = pl.placement_input(graph, slot_sharing=False)
    assert data.n_units == graph.n_subtasks == 4
    np.testing.assert_array_equal(data.demand, [[1, 0], [1, 0], [1, 1], [1, 1]])
    np.testing.assert_array_equal(data.unit_of_subtask, np.arange(4))
    assert len(data.traffic_volume) == 4  # every channel crosses units
    np.testing.assert_allclose(data.traffic_volume, 2.5 * pl.DEFAULT_BYTES_PER_RECORD)


def test_worker_capacity_forms() -> None:
    resources = ("slots", "cpu")
    np.testing.assert_array_equal(
        worker_capacity([{"slots": 2, "cpu": 4}, {"slots": 1, "gpu": 1}], resources),
        [[2, 4], [1, 0]],
    )
    np.testing.assert_array_equal(worker_capacity([[2, 4]], resources), [[2, 4]])
    with pytest.raises(ValueError, match="workers x 2"):
        worker_capacity([[1, 2, 3]], resources)


def test_why_not_fit_gives_the_reason() -> None:
    env = StreamEnvironment(parallelism=2)
    env.from_collection([1]).map(inc).set_resources(cpu=3.0)
    data = pl.placement_input(env.execution_graph())  # 2 slots of cpu=3 each
    assert pl.why_not_fit(data, [{"slots": 2, "cpu": 6}]) is None
    assert pl.why_not_fit(data, [{"slots": 1, "cpu": 3}] * 2) is None
    assert pl.why_not_fit(data, [{"slots": 1, "cpu": 8}]) == (
        "the job needs 2 slots in all, the workers have 1"
    )
    assert pl.why_not_fit(data, [{"slots": 2, "cpu": 2}] * 4) == (
        "slot 0 needs slots=1, cpu=3: no single worker has that much"
    )
    env.from_collection([1]).rebalance().map(inc)  # two more chains of 2 subtasks
    apart = pl.placement_input(env.execution_graph(), slot_sharing=False)
    assert apart.n_units == 6
    assert pl.why_not_fit(apart, [{"slots": 6, "cpu": 6}]) is None
    assert pl.why_not_fit(apart, [{"slots": 5, "cpu": 6}]) == (
        "the job needs 6 slots in all, the workers have 5"
    )
