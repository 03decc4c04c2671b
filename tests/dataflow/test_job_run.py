"""The job master's control socket against hostile or mismatched peers, on real processes.

Anyone who can connect to a job master's control ROUTER can send it anything: garbage, a
pickle that would run code when loaded, a slice of another protocol version. Each is dropped
(or refused with a clear error) and the job finishes with the right result.

The master here is a :class:`~pydispatch.dataflow.job_run.JobRun` in this process (the code a
dispatcher's job-master process runs), so that its log and its state can be inspected; the
slices run on a real cluster. ``test_master_process.py`` sends garbage to a hosted master."""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
import zmq

from _support.process_guard import eventually
from pydispatch.dataflow.job_run import JobOptions, JobRun
from pydispatch.dataflow.slice import _await_peers
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import StreamEnvironment
from pydispatch.wire import data_plane as dp
from pydispatch.wire import job_plane as jp
from pydispatch.wire import protocol as p
from pydispatch.wire import transport

# Functions defined here travel by value: slot processes cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TOTAL = 5000


CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2}


def _gated_source(path: Path) -> Callable[..., Iterator[int]]:
    """Records ``0..TOTAL``; holds the last one back until ``path/go`` exists, so the job is
    surely running while the test talks to its master."""

    def source(index: int = 0, parallelism: int = 1) -> Iterator[int]:
        (path / f"started-{index}").write_text("")
        for i in range(index, TOTAL, parallelism):
            if i + parallelism >= TOTAL:
                while not (path / "go").exists():
                    time.sleep(0.01)
            yield i

    return source


def _start(cluster: LocalCluster, tmp_path: Path) -> tuple[JobRun, str]:
    env = StreamEnvironment(parallelism=2)
    stream = env.from_source(_gated_source(tmp_path), parallel=True).rebalance()
    stream.map(lambda x: x * 2)._sink("Collect", {"sink": "collect", "columnar": False})
    run = JobRun(cluster.client(), env.job_graph, "wire", JobOptions())
    eventually(lambda: len(list(tmp_path.glob("started-*"))) == 2, "both sources started")
    return run, run.endpoint


def _finish(run: JobRun, tmp_path: Path) -> None:
    assert run.status() == "RUNNING"
    (tmp_path / "go").write_text("")
    result = run.result(timeout=60)
    ((_, got),) = result.collected.items()
    assert sorted(got) == [2 * x for x in range(TOTAL)]
    assert run.metrics()["restarts"] == 0
    run.close()


class _Exploit:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))  # unpickling it would create the file


def _dealer(context: zmq.Context[Any], endpoint: str) -> zmq.Socket[Any]:
    sock = transport.make_socket(context, zmq.DEALER)
    sock.connect(endpoint)
    return sock


def _answer(sock: zmq.Socket[Any]) -> jp.JobMessage:
    assert sock.poll(10_000), "the job master did not answer"
    _, body = transport.split_envelope(sock.recv_multipart(copy=False), routed=False)
    return transport.parse_job(body)


def test_garbage_on_the_control_socket_is_dropped(
    cluster: LocalCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="pydispatch.dataflow.job_run")
    run, endpoint = _start(cluster, tmp_path)
    pwned = tmp_path / "pwned"
    context: zmq.Context[Any] = zmq.Context()
    sock = _dealer(context, endpoint)
    try:
        for parts in (
            [b"no delimiter"],
            [b"", b"\xff\xfe\x00garbage"],
            [b"", pickle.dumps(_Exploit(pwned))],
            [b"", cloudpickle.dumps(("cancel",))],  # the old wire format
            [b"", p.encode(jp.JobCancel()), b"an extra frame"],
            [b"", p.encode(p.Cancel([1]))],  # a dispatcher message: not this plane's
            [b"", p.encode(jp.Peers({}))],  # the master's own message: ignored
            [b"", os.urandom(4096)],
            [b"", p.encode(jp.SliceMetrics(1, 99, {}))],  # no slice 99 in this job
            [b"", p.encode(jp.SliceFailed(1, -1, "forged"))],
        ):
            sock.send_multipart(parts)
        # The master is still serving its socket: a report of no attempt of this job is
        # answered, and changes nothing.
        transport.send(sock, jp.SliceMetrics(-1, 0, {}))
        assert isinstance(_answer(sock), jp.MasterAlive)
        logged = [r.getMessage() for r in caplog.records]
        # Seven malformed messages, logged once: once per key (without keys, once).
        assert sum("dropped a malformed control message" in m for m in logged) == 1
        assert sum("ignored a Peers" in m for m in logged) == 1
        assert sum("dropped a report of slice" in m for m in logged) == 2
    finally:
        sock.close()
        context.term()
    assert not pwned.exists()
    _finish(run, tmp_path)


def test_a_slice_of_another_protocol_version_is_refused(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    run, endpoint = _start(cluster, tmp_path)
    context: zmq.Context[Any] = zmq.Context()
    sock = _dealer(context, endpoint)
    try:
        ready = jp.SliceReady(p.PROTOCOL_VERSION + 1, 1, 0, {99: "tcp://127.0.0.1:1"}, 1)
        transport.send(sock, ready)
        refusal = _answer(sock)
        assert isinstance(refusal, p.Error)
        assert refusal.code == "version"
        assert f"protocol version {p.PROTOCOL_VERSION + 1}" in refusal.message
        assert f"speaks {p.PROTOCOL_VERSION}" in refusal.message
        # The slice side turns the refusal into a clear error (it ends the slice's task).
        transport.send(sock, ready)
        with pytest.raises(RuntimeError, match=r"refused this slice: .*protocol version"):
            _await_peers(sock, 10.0)
    finally:
        sock.close()
        context.term()
    _finish(run, tmp_path)


def test_garbage_on_a_subtask_data_socket_is_dropped(cluster: LocalCluster, tmp_path: Path) -> None:
    run, _ = _start(cluster, tmp_path)
    # The consumers' data endpoints, as their slices reported them to the master.
    ready = [r.ready for r in run._master._regions]
    endpoints = [e for slices in ready for by_gid in slices.values() for e in by_gid.values()]
    assert endpoints
    pwned = tmp_path / "pwned"
    lying = dp.BatchData(0, "columns", [dp.Column("x", "<f8", (1000,), 0, 8000)])
    context: zmq.Context[Any] = zmq.Context()
    socks = [_dealer(context, endpoint) for endpoint in endpoints]
    try:
        for sock in socks:
            for parts in (
                [b"no delimiter"],
                [b"", b"\xff\xfe\x00garbage"],
                [b"", pickle.dumps(_Exploit(pwned))],
                [b"", p.encode(lying), np.zeros(1).tobytes()],
                [b"", p.encode(dp.BatchData(99, "columns"))],  # no edge 99 in this job
                [b"", p.encode(jp.MasterAlive())],  # a control message: not this plane's
            ):
                sock.send_multipart(parts)
        time.sleep(0.5)  # let the subtasks read them before their input ends
    finally:
        for sock in socks:
            sock.close()
        context.term()
    assert not pwned.exists()
    _finish(run, tmp_path)


def test_a_malformed_data_message_is_dropped_by_the_subtask() -> None:
    # Unit level: the consumer side's parsing refuses a column that lies about its frame.
    frames = [zmq.Frame(np.zeros(2).tobytes())]
    header = dp.BatchData(0, "columns", [dp.Column("x", "<f8", (3,), 0, 24)])
    message, rest = transport.parse_data([zmq.Frame(p.encode(header)), *frames])
    assert isinstance(message, dp.BatchData)
    with pytest.raises(p.ProtocolError, match="16 bytes"):
        transport.batch_from(message, rest)
