"""Building jobs: what each call puts in the job graph, and the errors of bad use."""

from __future__ import annotations

from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from pydispatch.dataflow.local import run_local
from pydispatch.stream import JobGraph, KeyedStream, StreamEnvironment


def double(x: int) -> int:
    return 2 * x


def test_each_call_appends_to_a_new_graph() -> None:
    env = StreamEnvironment(parallelism=2)
    empty = env.job_graph
    source = env.from_collection([1, 2, 3])
    after_source = env.job_graph
    mapped = source.map(double).name("double").set_parallelism(3).set_resources(cpu=0.5)
    assert empty == JobGraph()
    assert len(after_source.operators) == 1
    assert after_source.operators[0].parallelism == 2  # the old graph is untouched
    graph = env.job_graph
    op = graph.operator(1)
    assert (op.name, op.kind, op.parallelism, dict(op.resources)) == (
        "double",
        "map",
        3,
        {"cpu": 0.5},
    )
    assert op.function is double  # stored as given, for cloudpickle
    assert graph.edges[0].source == 0
    assert graph.edges[0].target == 1
    assert graph.edges[0].partitioning == "forward"
    assert mapped.operator is op


def test_key_by_union_and_partitionings_become_edges() -> None:
    env = StreamEnvironment()
    a = env.from_elements([("x", 1)])
    b = env.from_elements([("y", 2)])
    keyed = a.union(b).key_by(0)
    assert isinstance(keyed, KeyedStream)
    keyed.sum(1)
    edges = env.job_graph.inputs(2)
    assert [(e.source, e.partitioning) for e in edges] == [(0, "hash"), (1, "hash")]
    assert edges[0].key is not None
    assert (edges[0].key.kind, edges[0].key.selector) == ("index", 0)
    assert keyed.key.kind == "index"
    for kind in ("rebalance", "rescale", "broadcast", "forward"):
        getattr(a, kind)().map(double)
        assert env.job_graph.edges[-1].partitioning == kind
    a.partition_custom(lambda k, n: 0, 0).map(double)
    assert env.job_graph.edges[-1].partitioning == "custom"
    assert env.job_graph.edges[-1].partitioner is not None


def test_sources_and_their_flags(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    env = StreamEnvironment(parallelism=4)
    assert env.from_elements([1]).operator.parallelism == 1  # non-parallel, like Flink's
    assert env.from_collection([1]).operator.parallelism == 4
    cols = env.from_arrays({"k": np.zeros(3, np.int32), "v": np.zeros(3)})
    assert cols.schema.columnar
    assert cols.schema.fields == ("k", "v")
    assert cols.schema.row_bytes == 12
    assert env.read_csv(tmp_path / "t.csv", header=True).schema.fields == ("a", "b")
    unbounded = env.from_source(lambda: iter([]), bounded=False)
    assert unbounded.operator.params["bounded"] is False
    assert unbounded.operator.parallelism == 1
    assert env.from_source(lambda i, n: [], parallel=True).operator.parallelism == 4
    assert all(op.chaining == "head" for op in env.job_graph.sources())


def test_job_graph_survives_cloudpickle() -> None:
    env = StreamEnvironment(parallelism=2)
    offset = 10
    env.from_collection(range(20)).map(lambda x: x + offset).key_by(lambda x: x % 3).sum()
    graph = env.job_graph
    clone = cloudpickle.loads(cloudpickle.dumps(graph))
    assert isinstance(clone, JobGraph)
    assert clone.to_dict() == graph.to_dict()
    function = clone.operator(1).function
    assert function is not None
    assert function(1) == 11  # the closure came along


def test_run_of_a_pickled_graph_equals_the_original() -> None:
    env = StreamEnvironment(parallelism=2)
    env.from_collection(["a b", "b c"]).flat_map(str.split).key_by(lambda w: w).count().collect()
    graph = env.job_graph
    clone = cloudpickle.loads(cloudpickle.dumps(graph))
    assert run_local(clone).collected == run_local(graph).collected


# -- bad use --------------------------------------------------------------------------------


def test_functions_must_be_callable() -> None:
    stream = StreamEnvironment().from_elements([1])
    for method in ("map", "flat_map", "filter", "for_each"):
        with pytest.raises(TypeError, match="expected a function"):
            getattr(stream, method)(3)
    with pytest.raises(TypeError, match="expected a function"):
        stream.key_by(lambda x: x).reduce("sum")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a function"):
        stream.partition_custom(None, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a function"):
        StreamEnvironment().from_source([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-3, ValueError), ("2", TypeError), (True, TypeError), (1.5, TypeError)],
)
def test_parallelism_must_be_a_positive_int(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="parallelism"):
        StreamEnvironment(parallelism=value)  # type: ignore[arg-type]
    with pytest.raises(error, match="parallelism"):
        StreamEnvironment().from_collection([1]).set_parallelism(value)  # type: ignore[arg-type]


def test_non_parallel_source_stays_at_one() -> None:
    with pytest.raises(ValueError, match="not parallel"):
        StreamEnvironment().from_elements([1]).set_parallelism(2)


def test_keys_and_fields_are_checked_against_known_columns() -> None:
    stream = StreamEnvironment().from_arrays({"k": np.arange(3), "v": np.arange(3)})
    with pytest.raises(ValueError, match="no field 'nope'"):
        stream.key_by("nope")
    with pytest.raises(TypeError, match="column name"):
        stream.key_by(0)
    with pytest.raises(ValueError, match="no field 'w'"):
        stream.key_by("k").sum("w")
    with pytest.raises(ValueError, match="name it"):
        stream.key_by("k").sum()
    with pytest.raises(ValueError, match="is the key column"):
        stream.key_by("k").sum("k")
    records = StreamEnvironment().from_elements([(1, 2)])
    with pytest.raises(TypeError, match="not float"):
        records.key_by(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not bool"):
        records.key_by(True)
    with pytest.raises(ValueError, match=">= 0"):
        records.key_by(-1)
    with pytest.raises(ValueError, match="key scheme"):
        records.key_by(0, scheme="md5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="field must be"):
        records.key_by(0).sum(1.0)  # type: ignore[arg-type]


def test_keyed_aggregations_need_key_by() -> None:
    stream = StreamEnvironment().from_elements([1, 2])
    for call in (
        lambda: stream.sum(),
        lambda: stream.min(0),
        lambda: stream.max(0),
        lambda: stream.count(),
        lambda: stream.reduce(lambda a, b: a),
        lambda: stream.count_window(2),
        lambda: stream.time_window(1.0, timestamp=0),
    ):
        with pytest.raises(TypeError, match="key_by"):
            call()
    # a partitioning call after key_by leaves a plain stream again
    with pytest.raises(TypeError, match="key_by"):
        stream.key_by(lambda x: x).rebalance().sum()


def test_window_sizes() -> None:
    keyed = StreamEnvironment().from_elements([1]).key_by(lambda x: x)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="count_window"):
            keyed.count_window(bad)  # type: ignore[arg-type]
    for bad_size in (0, -2.0, float("nan"), "1"):
        with pytest.raises(ValueError, match="time_window"):
            keyed.time_window(bad_size, timestamp=0)  # type: ignore[arg-type]


def test_union_rules() -> None:
    env = StreamEnvironment()
    other = StreamEnvironment()
    a = env.from_elements([1])
    with pytest.raises(ValueError, match="different environments"):
        a.union(other.from_elements([2]))
    with pytest.raises(TypeError, match="takes streams"):
        a.union([2])  # type: ignore[arg-type]
    cols = env.from_arrays({"k": np.arange(2)})
    with pytest.raises(TypeError, match="columnar stream and a record stream"):
        a.union(cols)
    with pytest.raises(ValueError, match="different columns"):
        cols.union(env.from_arrays({"j": np.arange(2)}))
    assert cols.union(env.from_arrays({"k": np.arange(5)})).schema.columnar


def test_operator_settings_need_an_operator() -> None:
    stream = StreamEnvironment().from_elements([1, 2])
    for view in (stream.key_by(lambda x: x), stream.rebalance(), stream.union(stream)):
        with pytest.raises(TypeError, match="applies to an operator"):
            view.set_parallelism(2)
        with pytest.raises(TypeError, match="applies to an operator"):
            view.name("x")


def test_settings_values() -> None:
    stream = StreamEnvironment().from_collection([1]).map(double)
    with pytest.raises(ValueError, match="finite and >= 0"):
        stream.set_resources(cpu=-1)
    with pytest.raises(ValueError, match="counted by the planner"):
        stream.set_resources(slots=2)
    with pytest.raises(TypeError, match="must be a number"):
        stream.set_resources(cpu="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty str"):
        stream.name("")
    with pytest.raises(ValueError, match="hint"):
        stream.hint(selectivity=-0.5)
    with pytest.raises(ValueError, match=r"must be in \[parallelism \(4\)"):
        stream.set_parallelism(4).set_max_parallelism(2)
    with pytest.raises(ValueError, match="exceeds max parallelism"):
        stream.set_max_parallelism(8).set_parallelism(9)


def test_bad_sources(tmp_path: Path) -> None:
    env = StreamEnvironment()
    with pytest.raises(TypeError, match="one iterable"):
        env.from_elements("abc")
    with pytest.raises(TypeError, match="one iterable"):
        env.from_elements(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sized collection"):
        env.from_collection(iter([1]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dict of numpy arrays"):
        env.from_arrays({})
    with pytest.raises(TypeError, match="numpy array"):
        env.from_arrays({"a": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="rows"):
        env.from_arrays({"a": np.arange(2), "b": np.arange(3)})
    with pytest.raises(ValueError, match="1-D"):
        env.from_arrays({"a": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"missing\.txt'?: no such file"):
        env.read_text(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="a directory, not a file"):
        env.read_text(tmp_path)
    with pytest.raises(TypeError, match="paths"):
        env.read_text([])
    (tmp_path / "d.csv").write_text("a,a\n")
    with pytest.raises(ValueError, match="duplicate"):
        env.read_csv(tmp_path / "d.csv", header=True)
    with pytest.raises(TypeError, match="not an iterable"):
        env.from_source(lambda: 5).collect()


def test_forward_across_parallelism_is_refused_when_planned() -> None:
    env = StreamEnvironment(parallelism=2)
    env.from_collection([1, 2]).forward().map(double).set_parallelism(3)
    with pytest.raises(ValueError, match="forward partitioning does not allow"):
        env.execution_graph()


def test_nothing_to_run_and_remote_targets() -> None:
    with pytest.raises(RuntimeError, match="no sinks"):
        StreamEnvironment().execute()
    env = StreamEnvironment(target="tcp://127.0.0.1:5555")
    assert env.target == "tcp://127.0.0.1:5555"
    odd = StreamEnvironment(target=object())
    with pytest.raises(TypeError, match="must be a Client, a LocalCluster or a dispatcher"):
        odd.from_elements([1]).collect()


def test_graph_dict_summarises_source_data_and_operators_are_read_only() -> None:
    env = StreamEnvironment()
    env.from_collection(list(range(10_000))).map(double)
    env.from_arrays({"k": np.arange(3, dtype=np.int16)})
    form = env.job_graph.to_dict()
    assert form["operators"][0]["params"]["elements"] == {"count": 10_000}
    assert form["operators"][2]["params"]["columns"] == {"k": "int16"}
    assert form["operators"][1]["function"] == "double"
    op = env.job_graph.operator(0)
    with pytest.raises(TypeError):
        op.params["source"] = "other"  # type: ignore[index]
