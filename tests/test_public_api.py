"""Pins the public API: a change here is a deliberate change of what users may import."""

from __future__ import annotations

import pydispatch
import pydispatch.partition
import pydispatch.plan
import pydispatch.stream
import pydispatch.stream.state


def test_package_exports() -> None:
    assert sorted(pydispatch.__all__) == sorted(
        [
            "Client",
            "LocalCluster",
            "RemoteError",
            "RemoteTraceback",
            "TaskFailedError",
            "TaskFuture",
            "__version__",
            "partition",
            "plan",
            "progress",
            "solver",
            "stream",
            "table",
        ]
    )
    for name in pydispatch.__all__:
        assert hasattr(pydispatch, name), name


def test_solver_exports() -> None:
    import pydispatch.solver

    assert sorted(pydispatch.solver.__all__) == sorted(
        [
            "BASELINES",
            "METHODS",
            "InfeasibleError",
            "Placement",
            "PlacementProblem",
            "SolveStep",
            "fair_share",
            "flink_slot_sharing",
            "lower_bound",
            "solve",
        ]
    )


def test_partition_exports() -> None:
    assert sorted(pydispatch.partition.__all__) == sorted(
        [
            "BROADCAST",
            "FLINK_MAX_PARALLELISM",
            "MAX_PARTITIONS",
            "TwoChoices",
            "broadcast",
            "default_max_parallelism",
            "hash_keys",
            "key_group_range",
            "key_groups",
            "partition",
            "range_boundaries",
            "range_partition",
            "rescale",
            "rescale_targets",
            "round_robin",
            "scatter",
            "split",
            "two_choices",
        ]
    )
    for name in pydispatch.partition.__all__:
        assert hasattr(pydispatch.partition, name), name


def test_stream_exports() -> None:
    assert sorted(pydispatch.stream.__all__) == sorted(
        [
            "DataStream",
            "DataStreamSink",
            "Edge",
            "ExponentialDelay",
            "FailureRate",
            "FixedDelay",
            "JobFailedError",
            "JobGraph",
            "JobHandle",
            "JobResult",
            "KeySpec",
            "KeyedStream",
            "NoRestart",
            "Operator",
            "SplitSource",
            "StreamEnvironment",
            "StreamExecutionEnvironment",
            "TransactionalSink",
            "WindowedStream",
            "functions",
            "state",
        ]
    )
    for name in pydispatch.stream.__all__:
        assert hasattr(pydispatch.stream, name), name
    assert sorted(pydispatch.stream.functions.__all__) == sorted(
        [
            "AggregateFunction",
            "FilterFunction",
            "FlatMapFunction",
            "Function",
            "KeySelector",
            "KeyedProcessFunction",
            "MapFunction",
            "ReduceFunction",
            "RuntimeContext",
            "TimeDomain",
            "TimerService",
        ]
    )
    assert sorted(pydispatch.stream.state.__all__) == sorted(
        [
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
    )
    for name in pydispatch.stream.state.__all__:
        assert getattr(pydispatch.stream.state, name).__module__ == "pydispatch.stream.state"
    functions = pydispatch.stream.functions
    assert functions.KeyedProcessFunction.Context.__module__ == "pydispatch.stream.functions"
    assert functions.KeyedProcessFunction.Context.__qualname__ == "KeyedProcessFunction.Context"
    assert functions.TimerService.__module__ == "pydispatch.stream.functions"


def test_table_exports() -> None:
    import pydispatch.table

    assert sorted(pydispatch.table.__all__) == sorted(
        [
            "CloseableIterator",
            "EnvironmentSettings",
            "GroupedTable",
            "SqlError",
            "StreamTableEnvironment",
            "Table",
            "TableEnvironment",
            "TableResult",
        ]
    )
    for name in pydispatch.table.__all__:
        assert hasattr(pydispatch.table, name), name


def test_plan_exports() -> None:
    assert sorted(pydispatch.plan.__all__) == sorted(
        [
            "DEFAULT_BYTES_PER_RECORD",
            "DEFAULT_SELECTIVITY",
            "DEFAULT_SOURCE_RECORDS",
            "DEFAULT_WORK_PER_RECORD",
            "Chain",
            "Edge",
            "Exchange",
            "ExecutionGraph",
            "JobGraph",
            "KeySpec",
            "Operator",
            "PlacementInput",
            "execution_graph",
            "is_chainable",
            "placement_input",
            "placement_problem",
            "resolve_partitioning",
            "why_not_fit",
        ]
    )
    for name in pydispatch.plan.__all__:
        assert hasattr(pydispatch.plan, name), name


def test_importing_the_package_stays_light() -> None:
    # Dispatcher, worker and slot processes import pydispatch: they must not pay for numpy.
    import subprocess
    import sys

    code = (
        "import sys, pydispatch; pydispatch.__version__; "
        "assert 'numpy' not in sys.modules, 'numpy imported'; "
        "pydispatch.Client; assert 'pydispatch.runtime.client' in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # Nor do the modules those processes run, until a solve or a dataflow batch needs numpy.
    code = (
        "import sys, pydispatch.runtime.dispatcher, pydispatch.runtime.worker, "
        "pydispatch.runtime.slot, pydispatch.runtime.client; "
        "assert 'numpy' not in sys.modules, 'numpy imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_public_names_carry_their_public_module() -> None:
    # As trio's fixup_module_metadata: reprs, tracebacks and pickles name what users import.
    import importlib

    import pydispatch.errors
    import pydispatch.solver
    import pydispatch.stream.functions
    import pydispatch.table

    public = ["pydispatch", "errors", "partition", "plan", "solver", "stream", "table"]
    public += ["stream.functions", "stream.state"]
    for short in public:
        module = (
            pydispatch if short == "pydispatch" else importlib.import_module(f"pydispatch.{short}")
        )
        for name in module.__all__:
            obj = getattr(module, name)
            label = getattr(obj, "__module__", None)
            if not isinstance(label, str) or not callable(obj):
                continue  # constants and submodules
            assert label in {f"pydispatch.{p}" for p in public[1:]} | {"pydispatch"}, (name, label)
            home = importlib.import_module(label)
            assert getattr(home, obj.__qualname__.split(".")[0]) is obj, (name, label)
    assert repr(pydispatch.errors.JobFailedError) == "<class 'pydispatch.errors.JobFailedError'>"
    assert pydispatch.stream.JobFailedError is pydispatch.errors.JobFailedError
    assert pydispatch.Client.__module__ == "pydispatch"
    assert pydispatch.stream.JobHandle.__module__ == "pydispatch.stream"
    assert pydispatch.stream.JobHandle.result.__module__ == "pydispatch.stream"
    assert pydispatch.solver.Placement.__module__ == "pydispatch.solver"
    assert pydispatch.partition.partition.__module__ == "pydispatch.partition"
    assert pydispatch.table.Table.__module__ == "pydispatch.table"
    assert pydispatch.table.SqlError is pydispatch.errors.SqlError
    assert pydispatch.stream.StreamExecutionEnvironment.__module__ == "pydispatch.stream"
    assert pydispatch.stream.functions.MapFunction.__module__ == "pydispatch.stream.functions"


def test_every_module_declares_its_names() -> None:
    from pathlib import Path

    root = Path(pydispatch.__file__).parent
    missing = [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*.py"))
        if path.name != "__main__.py" and "__all__" not in path.read_text()
    ]
    assert missing == []
