"""The HTTP endpoint (dashboard, JSON API, /metrics) of a dispatcher with keys asks for an
admin's bearer token (``pydispatch keys token``), as a real HTTP client sends it: a header
(scripts, Prometheus), or once in the address then a cookie (a browser). A real
``pydispatch dispatcher --keys`` process; urllib as the client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from _support.process_guard import eventually
from pydispatch import LocalCluster
from pydispatch.monitor.http import HttpEndpointError, check_http_address
from pydispatch.wire.security import add_key, admin_http_token, create_keys, load_keys


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pydispatch.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@dataclass
class Served:
    keys: Path
    url: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("http-token")
    keys = root / "keys"
    create_keys(str(keys))
    add_key(str(keys), "alice", "client")
    command = [sys.executable, "-m", "pydispatch.cli", "dispatcher", "--keys", str(keys)]
    command += ["--bind", "tcp://127.0.0.1:0", "--http", "127.0.0.1:0"]
    log = open(root / "dispatcher.log", "wb")  # noqa: SIM115 - the process holds it
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log, start_new_session=True, text=True
    )
    log.close()
    try:
        assert process.stdout is not None
        assert "listening on" in process.stdout.readline()
        line = process.stdout.readline()
        assert "dashboard and metrics at" in line, (root / "dispatcher.log").read_text()
        yield Served(keys, line.split()[-1])
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_no_dashboard(served: Served) -> None:
    for path in ("/", "/api/workers", "/api/jobs", "/metrics", "/static/app.js"):
        status, headers, body = get(served.url + path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert b"admin's bearer token is required" in body
        assert b"pydispatch" not in body.replace(b"pydispatch keys token", b"")


def test_only_an_admins_token_opens_it(served: Served) -> None:
    made = cli("keys", "token", str(served.keys), "admin")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) == 64
    status, _, body = get(served.url + "/api/workers", bearer(token))
    assert status == 200
    assert json.loads(body) == []
    status, _, body = get(served.url + "/metrics", bearer(token))
    assert status == 200
    assert b"# TYPE" in body
    # A token made the same way for a client key, a guess of the right length, a truncation.
    dispatcher = load_keys(str(served.keys), "dispatcher")
    alice = load_keys(str(served.keys), "alice")
    for wrong in (
        admin_http_token(dispatcher.secret, alice.public),
        "0" * 64,
        token[:-1],
        token + "0",
    ):
        assert get(served.url + "/api/workers", bearer(wrong))[0] == 401
    refused = cli("keys", "token", str(served.keys), "alice")
    assert refused.returncode == 1
    assert "'alice' is not an admin key" in refused.stderr


def test_a_browser_gets_a_cookie_from_the_address(served: Served) -> None:
    token = cli("keys", "token", str(served.keys), "admin").stdout.strip()
    status, headers, body = get(f"{served.url}/?token={token}")
    assert status == 200
    assert b"<html" in body.lower()
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    pair = cookie.split(";")[0]
    status, _, body = get(served.url + "/api/overview", {"Cookie": pair})
    assert status == 200
    assert json.loads(body)["workers"] == 0
    assert get(served.url + "/api/overview", {"Cookie": "pydispatch_token=" + "1" * 64})[0] == 401


def test_admin_keys_added_and_removed_count_without_a_restart(served: Served) -> None:
    ops = add_key(str(served.keys), "ops", "admin")
    token = admin_http_token(load_keys(str(served.keys), "dispatcher").secret, ops.public)
    url = served.url + "/api/tasks"
    eventually(lambda: get(url, bearer(token))[0] == 200, "the new admin's token works")
    for suffix in (".key", ".key_secret"):
        (served.keys / f"ops{suffix}").unlink()
    eventually(lambda: get(url, bearer(token))[0] == 401, "the removed admin's token fails")


def test_a_local_cluster_with_keys_hands_its_token_out() -> None:
    with LocalCluster(workers=1, keys=True, http=True) as cluster:
        url = cluster.http_url + "/api/workers"
        assert get(url)[0] == 401
        token = cluster.http_token
        eventually(lambda: len(json.loads(get(url, bearer(token))[2])) == 1, "its worker is listed")
    with LocalCluster(workers=1, http=True) as plain:  # no keys: loopback, no token
        assert plain.http_token == ""
        assert get(plain.http_url + "/api/workers")[0] == 200


def test_beyond_loopback_only_with_a_token_or_insecure() -> None:
    with pytest.raises(HttpEndpointError, match="--keys"):
        check_http_address("192.0.2.1", insecure=False)
    check_http_address("192.0.2.1", insecure=False, protected=True)
    refused = cli("dispatcher", "--bind", "ipc:///nonexistent/x", "--http", "192.0.2.1:0")
    assert refused.returncode == 1
    assert "run the dispatcher with --keys" in refused.stderr
