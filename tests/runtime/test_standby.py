"""Standby dispatchers at addresses of their own, on this host, with CurveZMQ keys and a real
PostgreSQL server: the standby answers a known key with the leader's address and a stranger
with nothing; a worker given the standby's address first, and clients given the standby's
address alone or both, reach the leader; the leader killed (SIGKILL), they follow the standby
that takes the lead. (Across hosts: tests/multihost/test_standby_hosts.py.)"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from _support.postgres import throwaway_postgres
from _support.process_guard import eventually
from _support.secure_cluster import raw_socket
from pydispatch.cli.main import parse_dispatchers
from pydispatch.runtime.client import Client, fetch_status
from pydispatch.wire import protocol as p
from pydispatch.wire.security import Keys, add_key, create_keys, load_keys
from pydispatch.wire.transport import find_leader, parse, recv_parts, send, split_addresses
from pydispatch.wire.transport import split_envelope as envelope

TIMING = ["--heartbeat-interval", "0.2", "--heartbeat-timeout", "2"]


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ask(address: str, keys: Keys) -> p.Message | None:
    """A status request to ``address`` alone, as ``keys`` (None: no answer within 2 s)."""
    context: zmq.Context[Any] = zmq.Context()
    sock = raw_socket(context, address, keys)
    try:
        send(sock, p.StatusRequest())
        if not sock.poll(2000):
            return None
        return parse(envelope(recv_parts(sock), routed=False)[1])[0]
    finally:
        sock.close(linger=0)
        context.term()


def test_addresses_are_split_and_checked() -> None:
    assert split_addresses(" tcp://a:1 ,tcp://b:2,") == ["tcp://a:1", "tcp://b:2"]
    with pytest.raises(ValueError, match="names no dispatcher"):
        split_addresses(" , ")
    assert parse_dispatchers("tcp://h1:5555,tcp://h2:5555") == "tcp://h1:5555,tcp://h2:5555"
    with pytest.raises(argparse.ArgumentTypeError, match="'h2:5555' is not an address"):
        parse_dispatchers("tcp://h1:5555,h2:5555")
    with pytest.raises(TimeoutError, match="no dispatcher among"):
        find_leader([f"tcp://127.0.0.1:{_free_port()}"], timeout=0.5)


@pytest.mark.slow
def test_clients_and_a_worker_find_the_leader_through_a_standby_and_follow_a_takeover(
    dsn: str, tmp_path: Path
) -> None:
    keys = str(tmp_path / "keys")
    create_keys(keys)
    add_key(keys, "worker", "worker")
    add_key(keys, "alice", "client")
    alice = load_keys(keys, "alice")
    public, secret = zmq.curve_keypair()
    stranger = Keys("stranger", "client", public.decode(), secret.decode(), alice.server)
    first, second = (f"tcp://127.0.0.1:{_free_port()}" for _ in range(2))
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "pydispatch.cli", *args, "--keys", keys]
        process = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
        started.append(process)
        return process

    try:
        leader = start("dispatcher", "--bind", first, "--ha", dsn, "--no-http", *TIMING)
        eventually(lambda: isinstance(_ask(first, alice), p.StatusReply), "the first leads", 60)
        start("dispatcher", "--bind", second, "--ha", dsn, "--no-http", *TIMING)
        eventually(lambda: _ask(second, alice) is not None, "the standby answers", 60)
        assert _ask(second, alice) == p.Error(p.NOT_LEADER, first)
        assert _ask(second, stranger) is None  # an unknown key gets nothing, not even that

        start("worker", f"{second},{first}", "--slots", "2", "--identity", "worker")
        with Client(second, keys=alice, reconnect_timeout=60) as alone:  # the standby only
            eventually(lambda: len(alone.status().workers) == 1, "the worker at the leader", 60)
            assert alone.submit(pow, 3, 4).result(timeout=60) == 81
        assert len(fetch_status(second, keys=alice).workers) == 1  # a look-up follows too

        with Client(f"{first},{second}", keys=alice, reconnect_timeout=60) as client:
            futures = [client.submit(time.sleep, 0.05) for _ in range(40)]
            futures[0].result(timeout=60)
            os.kill(leader.pid, signal.SIGKILL)
            assert all(f.result(timeout=120) is None for f in futures)
            assert client._io.address == second
            eventually(lambda: len(client.status().workers) == 1, "the worker followed", 60)
            assert client.submit(pow, 2, 10).result(timeout=60) == 1024
        assert _ask(first, alice) is None  # nobody there now

        start("dispatcher", "--bind", first, "--ha", dsn, "--no-http", *TIMING)
        eventually(lambda: _ask(first, alice) == p.Error(p.NOT_LEADER, second), "it stands by")
    finally:
        for process in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
