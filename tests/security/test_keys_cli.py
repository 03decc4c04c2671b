"""``pydispatch keys`` and the secure default of ``pydispatch dispatcher``, as scripts use them."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pydispatch.cli.keys import loopback
from pydispatch.wire.security import KeysError, list_keys, load_keys


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pydispatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_init_add_list(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = cli("keys", "init", str(keys))
    assert made.returncode == 0, made.stderr
    assert [line.split()[:2] for line in made.stdout.splitlines()] == [
        ["dispatcher", "dispatcher"],
        ["admin", "admin"],
    ]
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(keys / "admin.key_secret").st_mode) == 0o600
    for name, role in (("alice", "client"), ("w1", "worker"), ("ops", "admin")):
        added = cli("keys", "add", str(keys), name, "--role", role)
        assert added.returncode == 0, added.stderr
    listed = cli("keys", "list", str(keys))
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert [(r[0], r[1]) for r in rows] == [
        ("admin", "admin"),
        ("alice", "client"),
        ("dispatcher", "dispatcher"),
        ("ops", "admin"),
        ("w1", "worker"),
    ]
    assert {r[2] for r in rows} == {i.public for i in list_keys(str(keys))}
    # The role is in the public certificate: a dispatcher's host needs public files only.
    assert "role = client" in (keys / "alice.key").read_text()
    assert "secret-key" not in (keys / "alice.key").read_text()


def test_a_remote_host_needs_two_files(tmp_path: Path) -> None:
    keys, remote = tmp_path / "keys", tmp_path / "remote"
    assert cli("keys", "init", str(keys)).returncode == 0
    assert cli("keys", "add", str(keys), "w1", "--role", "worker").returncode == 0
    remote.mkdir()
    for name in ("w1.key_secret", "dispatcher.key"):  # what the README says to copy
        (remote / name).write_bytes((keys / name).read_bytes())
    mine = load_keys(str(remote))  # the only secret key there: no --identity needed
    assert (mine.name, mine.role) == ("w1", "worker")
    assert mine.server == load_keys(str(keys), "dispatcher").public


@pytest.mark.slow
def test_mistakes_are_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert cli("keys", "add", str(keys), "x", "--role", "client").returncode == 1
    assert cli("keys", "init", str(keys)).returncode == 0
    again = cli("keys", "init", str(keys))
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0
    assert "already" in again.stderr
    bad = cli("keys", "add", str(keys), "../x", "--role", "client")
    assert bad.returncode == 1
    assert "is not a key name" in bad.stderr
    assert cli("keys", "add", str(keys), "x", "--role", "root").returncode == 2
    cli("keys", "add", str(keys), "a", "--role", "client")
    cli("keys", "add", str(keys), "b", "--role", "client")
    with pytest.raises(KeysError, match="which identity"):
        load_keys(str(keys))
    status = cli("status", "tcp://127.0.0.1:9", "--keys", str(keys), "--identity", "nobody")
    assert status.returncode == 1
    assert "no secret key" in status.stderr


def test_no_plain_text_on_a_network_address_unless_insecure(tmp_path: Path) -> None:
    refused = cli("dispatcher", "--bind", "tcp://0.0.0.0:0")
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert "pydispatch keys" in line
    assert "--insecure" in line
    assert loopback("tcp://127.0.0.1:5555")
    assert loopback("ipc:///tmp/x")
    assert loopback("tcp://[::1]:5555")
    assert not loopback("tcp://0.0.0.0:5555")
    assert not loopback("tcp://myhost:5555")
    assert not loopback("tcp://10.0.0.1:5555")


def test_insecure_serves_plain_text_on_a_network_address_when_asked() -> None:
    command = [sys.executable, "-m", "pydispatch.cli", "dispatcher"]
    command += ["--bind", "tcp://0.0.0.0:0", "--insecure", "--no-job-masters"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on tcp://0.0.0.0:" in line
        from pydispatch.runtime.client import fetch_status

        port = line.rsplit(":", 1)[1].strip()
        status = fetch_status(f"tcp://127.0.0.1:{port}", 10.0, keys="")
        assert status.workers == []
    finally:
        process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()
