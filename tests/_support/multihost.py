"""The cluster the multihost tests run on a :class:`~_support.netns.TestBed`: a dispatcher,
three workers and a client host, started with the command line and the dispatcher's address
only; the client's code runs in a Python process on the client's host and prints JSON."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Final

from _support.netns import TestBed
from _support.process_guard import eventually
from pydispatch.wire.security import IDENTITY_ENV, KEYS_ENV

__all__ = [
    "PORT",
    "WORKERS",
    "address",
    "cli",
    "delay_proxy",
    "keys_env",
    "on_client",
    "range_server",
    "run",
    "start",
    "status",
]

WORKERS: Final = ("w1", "w2", "w3")
PORT: Final = 5555
_TESTS: Final = str(Path(__file__).resolve().parent.parent)  # where _support is found


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pydispatch.cli", *args]


def start(test_bed: TestBed, secure: list[str], *dispatcher_options: str) -> TestBed:
    test_bed.start()
    bind = f"tcp://0.0.0.0:{PORT}"
    test_bed.spawn(
        "dispatcher",
        cli("dispatcher", "--bind", bind, *secure, "--no-http", *dispatcher_options),
    )
    for worker in WORKERS:
        identity = ["--keys", test_bed.keys, "--identity", worker] if test_bed.keys else []
        test_bed.spawn(worker, cli("worker", address(test_bed), "--slots", "1", *identity))
    eventually(lambda: len(status(test_bed)["workers"]) == len(WORKERS), "3 workers", 60)
    return test_bed


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def keys_env(bed: TestBed, identity: str) -> dict[str, str]:
    """The environment naming ``identity``'s keys, when the bed runs with keys."""
    return {KEYS_ENV: bed.keys, IDENTITY_ENV: identity} if bed.keys else {}


def address(bed: TestBed) -> str:
    return f"tcp://{bed.hosts['dispatcher'].address}:{PORT}"


def status(bed: TestBed, host: str = "client", at: str = "") -> dict[str, Any]:
    """The dispatcher's status (the one at address ``at``, by default the bed's), asked from
    ``host`` (empty while it cannot be had)."""
    code = f"""
        import json, msgspec
        from pydispatch.runtime.client import fetch_status
        status = fetch_status({at or address(bed)!r}, timeout=5.0)
        fields = {{n: msgspec.to_builtins(getattr(status, n)) for n in status.__struct_fields__}}
        print(json.dumps(fields))
    """
    try:
        found = bed.python(host, textwrap.dedent(code), env=keys_env(bed, "admin"))
    except AssertionError:  # not up yet
        return {"workers": []}
    assert isinstance(found, dict)
    return found


def on_client(bed: TestBed, body: str) -> Any:
    """``body`` run on the client's host with ``client`` connected; it sets ``out``."""
    code = "import json\nfrom pydispatch.runtime.client import Client\n"
    code += f"with Client({address(bed)!r}) as client:\n"
    code += textwrap.indent(textwrap.dedent(body), "    ")
    code += "\nprint(json.dumps(out))\n"
    return bed.python("client", code, env=keys_env(bed, "me"))


def delay_proxy(bed: TestBed, port: int, delay_ms: float) -> str:
    """Start the delay proxy (``_support.delay_proxy``) on the client's host, listening on
    its loopback at ``port`` and forwarding to the dispatcher; its address, once listening."""
    code = "import sys\nfrom _support.delay_proxy import main\nmain(sys.argv[1:])\n"
    target = bed.hosts["dispatcher"].address
    argv = ["127.0.0.1", str(port), target, str(PORT), str(delay_ms)]
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), _TESTS]))
    proxy = bed.python_started("client", code, env={"PYTHONPATH": path}, args=argv)
    assert proxy.stdout is not None
    assert proxy.stdout.readline().strip() == "ready"
    return f"tcp://127.0.0.1:{port}"


def range_server(bed: TestBed, host: str, port: int, directory: str, log: str) -> None:
    """Serve ``directory`` over HTTP with byte ranges (``_support.range_server``) from
    ``host``, on every interface at ``port``, logging requests to ``log``; once listening."""
    code = "import sys\nfrom _support.range_server import main\nmain(sys.argv[1:])\n"
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), _TESTS]))
    argv = ["0.0.0.0", str(port), directory, log]
    server = bed.python_started(host, code, env={"PYTHONPATH": path}, args=argv)
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
