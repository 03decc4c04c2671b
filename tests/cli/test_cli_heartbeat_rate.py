"""``pydispatch dispatcher --max-heartbeat-rate`` (issue 21's pacing, on the command line): a
real dispatcher process tells registering workers the paced interval; a rate that is not a
positive number is refused with one line naming it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq

from pydispatch.runtime.heartbeat_pacing import HeartbeatPacing
from pydispatch.wire import protocol as p


def _dispatcher(*args: str) -> list[str]:
    return [sys.executable, "-m", "pydispatch.cli", "dispatcher", "--no-http", *args]


def _register(context: zmq.Context[Any], address: str, name: str) -> p.Message:
    """Register a worker made of one raw socket; the dispatcher's answer."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, name.encode())
    sock.connect(address)
    try:
        register = p.Register(
            p.PROTOCOL_VERSION, name, "node", 1, 1, slot_ids=[b"s-" + name.encode()]
        )
        sock.send_multipart([b"", p.encode(register)])
        assert sock.poll(20_000), "the dispatcher did not answer"
        return p.decode(sock.recv_multipart()[1])
    finally:
        sock.close()


def test_the_rate_given_paces_the_intervals_told_to_workers(tmp_path: Path) -> None:
    timing = ["--heartbeat-interval", "0.05", "--heartbeat-timeout", "3"]
    command = _dispatcher("--bind", f"ipc://{tmp_path}/d", "--state-dir", "", *timing)
    process = subprocess.Popen(
        [*command, "--max-heartbeat-rate", "2"], stdout=subprocess.PIPE, text=True
    )
    context: zmq.Context[Any] = zmq.Context()
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("pydispatch dispatcher listening on "), line
        address = line.split()[-1]
        # 2 heartbeats/s: one worker every 0.5 s, two every 1 s each (= timeout / 3, the cap),
        # where 0.05 s was asked.
        first = _register(context, address, "w1")
        assert isinstance(first, p.Registered)
        assert first.heartbeat_interval == pytest.approx(0.5)
        assert first.heartbeat_timeout == 3.0
        second = _register(context, address, "w2")
        assert isinstance(second, p.Registered)
        assert second.heartbeat_interval == pytest.approx(1.0)
    finally:
        context.term()
        process.send_signal(signal.SIGTERM)
        process.wait(30)


@pytest.mark.parametrize("rate", ["0", "-5", "nan", "often"])
def test_a_rate_that_is_not_a_positive_number_is_refused(rate: str, tmp_path: Path) -> None:
    done = subprocess.run(
        _dispatcher("--bind", f"ipc://{tmp_path}/d", "--max-heartbeat-rate", rate),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        "pydispatch dispatcher: error: argument --max-heartbeat-rate: "
    ), done.stderr
    assert rate in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert not Path(f"{tmp_path}/d").exists()  # nothing was started


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan")])
def test_the_pacing_run_dispatcher_passes_it_to_refuses_it_too(rate: float) -> None:
    # run_dispatcher hands the rate to Dispatcher, whose pacing checks it before any socket.
    with pytest.raises(ValueError, match=r"max_heartbeat_rate \(heartbeats per second\) must"):
        HeartbeatPacing(1.0, 10.0, rate)
