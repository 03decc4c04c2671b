"""The dispatcher's JSON API against the scheduler's own state (``pydispatch status --json``),
and the endpoint's rules: loopback only unless told otherwise, a clear refusal, 404s."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from _support.process_guard import eventually
from pydispatch.monitor.http import HttpEndpointError, check_http_address, parse_http_address
from pydispatch.runtime.cluster import LocalCluster

# No direct lane: a lone task's client would send its next ones straight to a slot, and the
# dispatcher would count them only once done (the running count below is the dispatcher's).
# No prefetch: each sleeping task below holds a slot of its own.
CLUSTER: dict[str, Any] = {
    "workers": 2,
    "slots": 2,
    "http": True,
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 10.0,
    "direct": False,
    "prefetch": 0,
}

_COUNTS = (
    "queued",
    "running",
    "finished",
    "failed",
    "cancelled",
    "retried",
    "discarded_late_results",
    "protocol_errors",
)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def status_json(address: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "pydispatch.cli", "status", address, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def fails(x: int) -> int:
    raise ValueError(x)


def test_api_counts_equal_pydispatch_status(cluster: LocalCluster) -> None:
    client = cluster.client()
    assert sum(client.map(abs, range(-300, 0), chunksize=7)) == sum(range(1, 301))
    with pytest.raises(ValueError, match="1"):
        client.submit(fails, 1).result()
    slow = [client.submit(time.sleep, 30) for _ in range(4)]  # the 4 slots are busy
    queued = client.submit(abs, -1)
    # At the dispatcher first (one cancelled before it left the client is dropped there,
    # and the dispatcher never counts it).
    eventually(lambda: get(cluster.http_url + "/api/tasks")["queued"] == 1, "1 queued")
    assert queued.cancel()

    def settled() -> bool:
        tasks = get(cluster.http_url + "/api/tasks")
        return bool(tasks["running"] == 4 and tasks["cancelled"] == 1)

    eventually(settled, "4 running, 1 cancelled")

    api = get(cluster.http_url + "/api/tasks")
    status = status_json(cluster.address)
    assert {k: api[k] for k in _COUNTS} == {k: status[k] for k in _COUNTS}
    assert api["finished"] >= 44  # 43 chunks and the task that raised
    assert api["cancelled"] >= 1
    assert api["running"] == 4
    assert api["submitted"] >= api["finished"] + api["running"]

    workers = get(cluster.http_url + "/api/workers")
    by_name = {w["name"]: w for w in status["workers"]}
    assert sorted(by_name) == sorted(w["name"] for w in workers) == ["worker-0", "worker-1"]
    for w in workers:
        assert w["slots"] == by_name[w["name"]]["slots"] == 2
        assert w["slots_used"] == by_name[w["name"]]["slots_used"] == 2
        assert w["rss_bytes"] >= 0
    busy = sum(w["slots_used"] for w in status["workers"])
    assert busy == 4
    overview = get(cluster.http_url + "/api/overview")
    assert (overview["workers"], overview["slots"], overview["slots_busy"]) == (2, 4, busy)
    assert get(cluster.http_url + "/api/jobs") == []
    for future in slow:
        client.cancel(future, force=True)
    client.shutdown(wait=False, cancel_futures=True)


def test_unknown_paths_are_404_with_a_reason(cluster: LocalCluster) -> None:
    for path in ("/api/nothing", "/api/jobs/no-such-job", "/static/../../etc/passwd", "/x"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(cluster.http_url + path, timeout=10)
        assert caught.value.code == 404
        assert "error" in json.load(caught.value)
    page = urllib.request.urlopen(cluster.http_url + "/", timeout=10).read().decode()
    assert "/static/app.js" in page


def test_beyond_loopback_needs_insecure() -> None:
    check_http_address("127.0.0.1", insecure=False)
    check_http_address("::1", insecure=False)
    check_http_address("localhost", insecure=False)
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(HttpEndpointError, match="--http-insecure"):
            check_http_address(host, insecure=False)
        check_http_address(host, insecure=True)
    assert parse_http_address("[::1]:8787") == ("::1", 8787)
    for bad in ("8787", "host:", "host:99999", ":80"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_http_address(bad)


def test_the_command_refuses_a_public_address_in_one_line(tmp_path: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pydispatch.cli", "dispatcher", "--bind",
         f"ipc://{tmp_path}/d", "--http", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("pydispatch dispatcher: refusing to serve")
    assert len(done.stderr.strip().splitlines()) == 1
