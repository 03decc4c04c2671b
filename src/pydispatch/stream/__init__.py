"""Dataflow jobs: describe a job as parallel operators over streams of records.

The user's API only, as PyFlink's ``pyflink.datastream`` is (see
:mod:`pydispatch.stream._environment` for the whole story of a job): a
:class:`StreamEnvironment` and the streams it makes. Running a job is the business of
:mod:`pydispatch.dataflow`; what it returns (:class:`JobResult`, :class:`JobHandle`) and the
restart strategies are re-exported here because this is where users meet them.

``pydispatch.stream.functions`` holds PyFlink's user-function classes (``MapFunction``...,
``KeyedProcessFunction``), ``pydispatch.stream.state`` the keyed state they use, and
``StreamExecutionEnvironment`` is PyFlink's name for the environment, so a PyFlink job ports by
changing its imports. Private modules: ``_environment`` (the environment, execution modes),
``_datastream`` (streams and their operators), ``_checks`` (argument checks and schema rules,
raised at build time).
"""

from __future__ import annotations

from .._exports import publish
from ..dataflow.file_sink import TransactionalSink
from ..dataflow.handle import JobHandle
from ..dataflow.lifecycle import ExponentialDelay, FailureRate, FixedDelay, NoRestart
from ..dataflow.positions import SplitSource
from ..dataflow.result import JobResult
from ..errors import JobFailedError
from ..plan._job_graph import Edge, JobGraph, KeySpec, Operator
from . import functions, state
from ._datastream import DataStream, DataStreamSink, KeyedStream, WindowedStream
from ._environment import StreamEnvironment, StreamExecutionEnvironment

__all__ = [
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

publish(__name__, globals(), __all__)
