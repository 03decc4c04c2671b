"""Which address a process advertises for what it binds, so that peers on other hosts reach it
with no option.

A worker binds its slots' direct endpoints and its slices' inboxes on the local address its
route to the dispatcher leaves from (the kernel's choice, read from a connected UDP socket: no
packet is sent); a job master binds on the address the dispatcher was reached by. An explicit
host (``--advertise-host``, ``PYDISPATCH_ADVERTISE_HOST``) overrides either.

When an address cannot be reached all the same (a wrong override, a firewall), zmq would retry
in silence forever: :func:`await_connections` turns that into an error within seconds that
names the address and the host it was tried from.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, Final

import zmq

__all__ = [
    "ADVERTISE_ENV",
    "LOOPBACK",
    "REACH_WITHIN",
    "advertised",
    "await_connections",
    "connection_watch",
    "default_node",
    "host_of",
    "is_loopback",
    "is_wildcard",
    "resolve_host",
    "route_source",
    "url_host",
]

#: The host a process (and its children: slots, slices, job masters) binds and advertises.
ADVERTISE_ENV: Final = "PYDISPATCH_ADVERTISE_HOST"
LOOPBACK: Final = "127.0.0.1"
_WILDCARDS: Final = frozenset({"0.0.0.0", "*", "::", "[::]", ""})
#: Seconds a peer has to accept a connection before it is called unreachable (a connection
#: takes milliseconds; this leaves room for a loaded machine).
REACH_WITHIN: Final = 10.0


def host_of(address: str) -> str:
    """The host of a ``tcp://HOST:PORT`` address ("" for ipc:// and other transports)."""
    if not address.startswith("tcp://"):
        return ""
    host = address[len("tcp://") :].rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_wildcard(host: str) -> bool:
    return host in _WILDCARDS


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_host(host: str) -> str:
    """An IP address for ``host`` (a name resolved here; ZeroMQ binds addresses, not names),
    or "" when it does not resolve."""
    try:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0])
    except (OSError, IndexError):
        return ""


def route_source(address: str) -> str:
    """The local address this host uses to reach ``address`` (a tcp:// address); loopback for
    ipc://, for a loopback address, or when there is no route."""
    host = host_of(address)
    if not host or is_wildcard(host):
        return LOOPBACK
    port = int(address.rsplit(":", 1)[1]) if address.rsplit(":", 1)[1].isdigit() else 9
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, target = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(target)  # UDP: picks the route and source address, sends nothing
            return str(probe.getsockname()[0])
    except (OSError, IndexError):
        return LOOPBACK


def advertised(endpoint: str, host: str) -> str:
    """``endpoint`` (a bound tcp:// endpoint) as a peer should dial it: a wildcard host
    replaced by ``host``."""
    bound = host_of(endpoint)
    if endpoint.startswith("tcp://") and is_wildcard(bound) and host:
        port = endpoint.rsplit(":", 1)[1]
        return f"tcp://{url_host(host)}:{port}"
    return endpoint


def url_host(host: str) -> str:
    """``host`` as it goes into a tcp:// address (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def default_node(advertise_host: str) -> str:
    """A worker's node name when none is given: its host name, which two hosts may share (or
    every container keep), so with the address it is reached at unless that is loopback (then
    the dispatcher, and every worker so named, is on this one host)."""
    name = socket.gethostname()
    return name if is_loopback(advertise_host) else f"{name}@{advertise_host}"


def connection_watch(sock: zmq.Socket[Any]) -> zmq.Socket[Any]:
    """A monitor of ``sock``'s finished handshakes; made before ``sock`` connects, so that
    no connection is missed."""
    return sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)


def await_connections(
    watches: Mapping[str, zmq.Socket[Any]], what: str, within: float = REACH_WITHIN
) -> None:
    """Wait until each socket watched (by :func:`connection_watch`, keyed by the address it
    connects to) has made a connection; raise :class:`ConnectionError` naming ``what``, the
    addresses not reached and this host if some have not within ``within`` seconds."""
    waiting = dict(watches)
    poller = zmq.Poller()
    for watch in waiting.values():
        poller.register(watch, zmq.POLLIN)
    deadline = time.monotonic() + within
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            here = os.environ.get(ADVERTISE_ENV) or socket.gethostname()
            raise ConnectionError(
                f"cannot reach {what} at {', '.join(sorted(waiting))} from {here} "
                f"(no connection within {within:g} s)"
            )
        ready = dict(poller.poll(int(left * 1000) + 1))
        for address, watch in list(waiting.items()):
            if watch in ready and _handshake_seen(watch):
                poller.unregister(watch)
                del waiting[address]


def _handshake_seen(watch: zmq.Socket[Any]) -> bool:
    seen = False
    while watch.poll(0):
        event = watch.recv_multipart()[0]
        seen |= int.from_bytes(event[:2], "little") == zmq.EVENT_HANDSHAKE_SUCCEEDED
    return seen
