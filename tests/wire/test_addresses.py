"""Which address a process advertises (``wire.addresses``); the bed of several hosts in
``tests/multihost`` runs the same rules across real network namespaces."""

from __future__ import annotations

import socket

import pytest

from pydispatch.wire.addresses import (
    LOOPBACK,
    advertised,
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
