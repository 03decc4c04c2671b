"""Shared test configuration: hypothesis settings, no process left behind by any module, and
the module's shared cluster.

A test module that needs a running cluster asks for the ``cluster`` fixture (or ``client``);
its shape comes from the module's ``CLUSTER`` dict (``make_cluster``'s arguments), so each
module states what it needs in one line and the cluster is started once per module.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from _support.clusters import make_cluster
from _support.process_guard import ENV, eventually, tagged_processes
from pydispatch.runtime.client import Client
from pydispatch.runtime.cluster import SLOTS_DIR_ENV, LocalCluster

# One scratch directory for the session, removed at its end (every process the tests start
# has ended by then): dispatchers started from the command line keep their dataflow jobs under
# $XDG_STATE_HOME (runtime.job_store), never the user's; workers started from the command
# line make their slots' directories under $PYDISPATCH_SLOTS_DIR (one killed by SIGKILL
# cannot remove its own).
_SCRATCH = tempfile.mkdtemp(prefix="pydispatch-test-")
atexit.register(shutil.rmtree, _SCRATCH, True)
for _name, _variable in (("state", "XDG_STATE_HOME"), ("slots", SLOTS_DIR_ENV)):
    os.environ[_variable] = os.path.join(_SCRATCH, _name)
    os.makedirs(os.environ[_variable])

# A profile for 2 shared cores: enough examples to find a bug, no deadline flakiness.
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``, pyproject's addopts) a test that uses a
    fixture broader than a test (a module's cluster, bed or server; also ``tmp_path``, whose
    factory is the session's, so most modules stay whole) runs on the same worker as the rest
    of its module, so that the fixture starts once; other tests go wherever a worker is free.
    A module's own ``xdist_group`` mark (the network-namespace beds share one) wins."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        fixture_info = getattr(item, "_fixtureinfo", None)
        if fixture_info is None:
            continue
        shared = [
            name
            for name, definitions in fixture_info.name2fixturedefs.items()
            if name != "no_process_left_behind" and definitions[-1].scope != "function"
        ]
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.fixture(scope="module", autouse=True)
def no_process_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tag every process this module's tests start; fail the module if one outlives it.

    The tag is set when the module's tests begin, not when it is imported: pytest imports every
    test module before running any, so an import-time tag would mark every process with the
    last module's tag."""
    tag = f"pydispatch-test-{request.module.__name__}-{uuid.uuid4().hex}"
    previous = os.environ.get(ENV)
    os.environ[ENV] = tag
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        try:
            eventually(lambda: not tagged_processes(tag), "every process ended", timeout=5)
        except AssertionError:
            left = tagged_processes(tag)
            for pid in left:  # do not leak them into the next module or session either
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"{request.module.__name__} left processes behind: pids {left}")


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """The module's cluster, started once: ``make_cluster(**module.CLUSTER)``."""
    shape: dict[str, object] = getattr(request.module, "CLUSTER", {})
    with make_cluster(**shape) as running:  # type: ignore[arg-type]
        yield running


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    """A client of the module's ``cluster`` fixture, shut down without waiting afterwards."""
    c = cluster.client()
    try:
        yield c
    finally:
        c.shutdown(wait=False, cancel_futures=True)
