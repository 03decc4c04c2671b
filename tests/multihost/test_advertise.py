"""The overrides of the advertised address, on one host (the bed in ``test_multihost`` runs
the defaults across hosts): a worker's ``advertise_host``, the dispatcher's
``--advertise-host`` for its job masters, and a job's own ``set_network(host=...)``."""

from __future__ import annotations

import os
import socket

import pytest

from _support.workers import close_unstarted
from pydispatch.cli.main import _advertise_job_masters
from pydispatch.dataflow.master_process import master_host
from pydispatch.runtime.worker import Worker, WorkerOptions
from pydispatch.wire.addresses import ADVERTISE_ENV


def _worker(address: str, **options: object) -> Worker:
    return Worker(address, WorkerOptions(**options))  # type: ignore[arg-type]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ADVERTISE_ENV, raising=False)


@pytest.mark.usefixtures("clean_environment")
def test_a_worker_binds_where_its_route_to_the_dispatcher_leaves_unless_told() -> None:
    worker = _worker("tcp://127.0.0.1:1")
    try:
        assert worker.advertise_host == "127.0.0.1"
        assert worker.node == socket.gethostname()
        assert worker._direct_bind("/unused") == "tcp://127.0.0.1:*"
        assert worker._slot_environment()[ADVERTISE_ENV] == "127.0.0.1"
    finally:
        close_unstarted(worker)
    worker = _worker("tcp://127.0.0.1:1", advertise_host="10.20.30.40")
    try:
        assert worker._direct_bind("/unused") == "tcp://10.20.30.40:*"
        assert worker._slot_environment()[ADVERTISE_ENV] == "10.20.30.40"
        assert worker.node == f"{socket.gethostname()}@10.20.30.40"
    finally:
        close_unstarted(worker)
    worker = _worker("tcp://127.0.0.1:1", data_bind="tcp://0.0.0.0:*", node="rack7")
    try:
        assert worker._direct_bind("/unused") == "tcp://0.0.0.0:*"  # an explicit bind stays
        assert worker.node == "rack7"
    finally:
        close_unstarted(worker)


@pytest.mark.usefixtures("clean_environment")
def test_job_masters_bind_where_the_dispatcher_says_else_where_it_was_reached() -> None:
    assert master_host("10.0.0.9") == "10.0.0.9"  # the submitter's way to the dispatcher
    assert master_host("127.0.0.1") == "127.0.0.1"
    assert master_host("") == "127.0.0.1"
    try:
        _advertise_job_masters("tcp://0.0.0.0:5555", "")  # every interface: left to each job
        assert ADVERTISE_ENV not in os.environ
        _advertise_job_masters("tcp://127.0.0.1:5555", "")  # a bound address
        assert master_host("10.0.0.9") == "127.0.0.1"
        _advertise_job_masters("tcp://0.0.0.0:5555", "10.5.5.5")  # the option
        assert master_host("10.0.0.9") == "10.5.5.5"
    finally:
        os.environ.pop(ADVERTISE_ENV, None)
