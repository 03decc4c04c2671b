"""Heartbeat pacing (issue 21): past ``max_heartbeat_rate x heartbeat_interval``
workers, the dispatcher tells each a longer interval (never more than a third of the timeout),
so that a large cluster's heartbeats cost a bounded rate; workers registered earlier are told
again on their next heartbeat. The pure policy, then a real dispatcher and real worker
processes that follow it and stay registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from _support.process_guard import eventually
from pydispatch.runtime.client import Client, fetch_status
from pydispatch.runtime.dispatcher import Dispatcher
from pydispatch.runtime.heartbeat_pacing import HeartbeatPacing
from pydispatch.wire import protocol as p


def test_the_interval_grows_past_the_rate_up_to_a_third_of_the_timeout() -> None:
    pacing = HeartbeatPacing(interval=1.0, timeout=10.0, max_per_second=100.0)
    told = [pacing.registered(b"w%d" % i, "e").heartbeat_interval for i in range(1000)]
    assert told[:100] == [1.0] * 100  # up to 100 workers: the configured interval
    assert told[199] == pytest.approx(2.0)  # 200 workers at 100/s: every 2 s
    assert told[-1] == pytest.approx(10.0 / 3)  # at most a third of the timeout
    # Those told 1 s are told again on their next heartbeat; those close enough are not.
    again = pacing.retell(b"w0", "e")
    assert again is not None
    assert again.heartbeat_interval == pytest.approx(10.0 / 3)
    assert again.heartbeat_timeout == 10.0
    assert pacing.retell(b"w0", "e") is None
    assert pacing.retell(b"w999", "e") is None
    assert pacing.retell(b"stranger", "e") is None
    for i in range(1000):
        pacing.forget(b"w%d" % i)
    assert pacing.interval() == 1.0
    with pytest.raises(ValueError, match="max_heartbeat_rate"):
        HeartbeatPacing(1.0, 10.0, 0)


class _CountingDispatcher(Dispatcher):
    """A real dispatcher that counts the heartbeats it receives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.heartbeats = 0
        super().__init__(*args, **kwargs)

    def _on_heartbeat(self, peer: bytes, m: p.Heartbeat, frames: Any, now: float) -> None:
        self.heartbeats += 1
        super()._on_heartbeat(peer, m, frames, now)


_WORKER = """
import json, sys
from pydispatch.runtime.worker import WorkerOptions, run_worker
run_worker(sys.argv[1], WorkerOptions(**json.loads(sys.argv[2])))
"""


def test_real_workers_follow_the_paced_interval_and_stay_registered(tmp_path: Path) -> None:
    # 50 ms asked, 2 heartbeats a second for the whole cluster: 2 workers beat every second
    # (at most timeout / 3 = 1 s), where unpaced they would send 40 a second.
    dispatcher = _CountingDispatcher(
        f"ipc://{tmp_path}/d",
        heartbeat_interval=0.05,
        heartbeat_timeout=3.0,
        max_heartbeat_rate=2.0,
        job_masters=False,
        metrics=False,
    )
    serving = threading.Thread(target=dispatcher.serve_forever, daemon=True)
    serving.start()
    options = {"slots": 1, "exit_with_parent": os.getpid(), "direct": False}
    env = {**os.environ, "PYDISPATCH_SLOTS_DIR": str(tmp_path)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, dispatcher.endpoint, json.dumps(options)], env=env
        )
        for _ in range(2)
    ]
    try:
        eventually(lambda: len(fetch_status(dispatcher.endpoint).workers) == 2, "registered")
        # The first registered was told 50 ms, then 1 s on one of its heartbeats: wait until
        # the intervals have settled, then count over more than the timeout.
        eventually(lambda: dispatcher.heartbeats >= 4, "heartbeats arrive")
        before = dispatcher.heartbeats
        with Client(dispatcher.endpoint) as client:
            assert client.submit(abs, -3).result(timeout=60) == 3  # keeps the loop busy a bit
        threading.Event().wait(4.0)  # a window to count in, longer than the timeout
        counted = dispatcher.heartbeats - before
        # Paced: about 2 a second (8 in 4 s, a few more while the first settles); unpaced 160.
        assert counted <= 30, counted
        status = fetch_status(dispatcher.endpoint)
        assert len(status.workers) == 2  # none declared lost at the longer interval
        assert all(w.seconds_since_heartbeat < 3.0 for w in status.workers)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        dispatcher.stop()
        serving.join(timeout=10)
