"""Fixtures shared by the security tests: a module's keyed cluster (a module needing another
shape defines its own ``secure``) and a throwaway ZeroMQ context for raw peers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from _support.secure_cluster import SecureCluster


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    with SecureCluster(tmp_path_factory.mktemp("secure")) as cluster:
        yield cluster


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)
