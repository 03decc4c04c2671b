"""Which address a process advertises (``wire.addresses``); the bed of several hosts in
``tests/multihost`` runs the same rules across real network namespaces."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from pydispatch.wire.addresses import (
    ADVERTISE_ENV,
    LOOPBACK,
    advertised,
    await_connections,
    connection_watch,
    default_node,
    host_of,
    is_loopback,
    is_wildcard,
    resolve_host,
    route_source,
    url_host,
)


def test_host_of_an_address() -> None:
    assert host_of("tcp://10.1.2.3:5555") == "10.1.2.3"
    assert host_of("tcp://[::1]:5555") == "::1"
    assert host_of("tcp://0.0.0.0:*") == "0.0.0.0"
    assert host_of("ipc:///tmp/x") == ""


def test_wildcards_and_loopback() -> None:
    assert is_wildcard("0.0.0.0")
    assert is_wildcard("*")
    assert is_wildcard("::")
    assert not is_wildcard("10.0.0.1")
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.3.4.5")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("example.org")


def test_the_route_to_a_loopback_dispatcher_leaves_from_loopback() -> None:
    assert route_source("tcp://127.0.0.1:5555") == LOOPBACK
    assert route_source("ipc:///tmp/dispatcher") == LOOPBACK
    assert route_source("tcp://0.0.0.0:5555") == LOOPBACK  # not a destination


def test_no_route_falls_back_to_loopback() -> None:
    # A name that cannot resolve: no route, no exception.
    assert route_source("tcp://no-such-host.invalid:5555") == LOOPBACK


def test_a_wildcard_endpoint_is_advertised_at_the_host() -> None:
    assert advertised("tcp://0.0.0.0:4242", "10.9.8.7") == "tcp://10.9.8.7:4242"
    assert advertised("tcp://[::]:4242", "fd00::7") == "tcp://[fd00::7]:4242"
    assert advertised("tcp://10.1.1.1:4242", "10.9.8.7") == "tcp://10.1.1.1:4242"
    assert advertised("ipc:///tmp/slot", "10.9.8.7") == "ipc:///tmp/slot"
    assert url_host("10.0.0.1") == "10.0.0.1"


def test_names_resolve_to_addresses() -> None:
    assert resolve_host("127.0.0.1") == "127.0.0.1"
    assert resolve_host("no-such-host.invalid") == ""


@pytest.mark.parametrize(("host", "suffix"), [("127.0.0.1", ""), ("10.2.0.5", "@10.2.0.5")])
def test_a_default_node_carries_the_address_unless_loopback(host: str, suffix: str) -> None:
    assert default_node(host) == socket.gethostname() + suffix


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    made: zmq.Context[Any] = zmq.Context()
    yield made
    made.destroy(linger=0)


def _free_port() -> int:
    with socket.socket() as probe:  # bound, then closed: nobody listens there
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def test_connections_made_are_awaited_and_one_nobody_accepts_is_an_error_naming_it(
    context: zmq.Context[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ADVERTISE_ENV, "10.9.8.7")  # this worker's host, as a slot has it
    listener = context.socket(zmq.ROUTER)
    port = listener.bind_to_random_port(f"tcp://{LOOPBACK}")
    reachable, nowhere = f"tcp://{LOOPBACK}:{port}", f"tcp://{LOOPBACK}:{_free_port()}"
    watches, sockets = {}, []  # (the sockets kept: a collected one would close unconnected)
    for address in (reachable, nowhere):
        sock = context.socket(zmq.DEALER)
        sockets.append(sock)
        watches[address] = connection_watch(sock)
        sock.connect(address)
    with pytest.raises(ConnectionError) as raised:
        await_connections(watches, "the job master", within=1.0)
    # The address not reached, from where, and what it was; not the one that was reached.
    assert f"cannot reach the job master at {nowhere} from 10.9.8.7" in str(raised.value)
    assert reachable not in str(raised.value)
    again = context.socket(zmq.DEALER)
    watch = connection_watch(again)
    again.connect(reachable)
    await_connections({reachable: watch}, "the job master")  # returns: it was reached
