"""PyFlink's names beside pydispatch's own: StreamExecutionEnvironment, execute_and_collect,
and map_batches (a stateless operator called once per micro-batch)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import StreamEnvironment, StreamExecutionEnvironment


def test_get_execution_environment_names_the_cluster_in_pydispatch_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYDISPATCH_ADDRESS", "tcp://127.0.0.1:1")
    env = StreamExecutionEnvironment.get_execution_environment()
    assert isinstance(env, StreamExecutionEnvironment)
    assert env.target == "tcp://127.0.0.1:1"
    monkeypatch.delenv("PYDISPATCH_ADDRESS")
    with StreamExecutionEnvironment.get_execution_environment() as local:
        assert isinstance(local.target, LocalCluster)
        doubled = local.from_collection([1, 2, 3], type_info=None).map(lambda x: 2 * x)
        assert doubled.execute_and_collect() == [2, 4, 6]
    assert "PYDISPATCH_ADDRESS" not in os.environ


def test_map_batches_sees_whole_batches_of_records_and_of_columns() -> None:
    env = StreamEnvironment(parallelism=2)
    sizes = env.from_collection(range(100)).map_batches(lambda batch: [len(batch), sum(batch)])
    got = sizes.collect()
    assert isinstance(got, list)
    assert sum(got[1::2]) == sum(range(100))  # every record once, in some batch
    assert sum(got[0::2]) == 100

    def describe(batch: Any) -> list[tuple[str, int]]:
        assert isinstance(batch, dict)  # the columnar path hands the columns themselves
        return [(name, int(column.sum())) for name, column in batch.items()]

    columns = env.from_arrays({"a": np.arange(10), "b": np.ones(10, dtype=np.int64)})
    sums: dict[str, int] = {}
    for name, total in columns.map_batches(describe).collect():
        sums[name] = sums.get(name, 0) + total
    assert sums == {"a": 45, "b": 10}
    with pytest.raises(TypeError, match="map_batches: expected a function"):
        env.from_collection([1]).map_batches(42)  # type: ignore[arg-type]
