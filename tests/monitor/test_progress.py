"""Progress bars: ``pydispatch.progress`` over futures and over a dataflow job,
``Client.map(progress=True)``, and ``pydispatch submit``'s live per-operator progress (bars
on a terminal, plain lines otherwise)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import pydispatch
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import JobHandle, StreamEnvironment

cloudpickle.register_pickle_by_value(sys.modules[__name__])

# A generous heartbeat timeout: a 2-core machine under load must not lose workers here.
CLUSTER: dict[str, Any] = {"workers": 2, "slots": 2, "heartbeat_timeout": 10.0}

JOB_FILE = """
import time

def slow(x):
    if x % 500 == 0:
        time.sleep(0.05)
    return x

def build(env):
    env.from_collection(list(range(20_000))).name("numbers").map(slow).name("slowly") \\
        .for_each(lambda x: None).name("nowhere")
"""


def square(x: int) -> int:
    return x * x


def test_progress_over_futures(cluster: LocalCluster) -> None:
    client = cluster.client()
    futures = [client.submit(square, i) for i in range(40)]
    out = io.StringIO()
    pydispatch.progress(futures, file=out)
    assert all(f.done() for f in futures)
    assert "40/40" in out.getvalue()
    client.shutdown()


def test_map_with_progress_counts_the_results(
    cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    client = cluster.client()
    assert list(client.map(square, range(300), chunksize=10, progress=True)) == [
        i * i for i in range(300)
    ]
    assert "300/300" in capsys.readouterr().err
    client.shutdown()


def slowly(x: int) -> int:
    if x % 500 == 0:
        time.sleep(0.05)
    return x


def test_progress_over_a_job_draws_a_bar_per_operator(cluster: LocalCluster) -> None:
    env = StreamEnvironment(cluster, parallelism=2)
    env.from_collection(list(range(20_000))).name("numbers").map(slowly).name("slowly").for_each(
        lambda x: None
    ).name("nowhere")
    handle = env.execute("progress-job")
    assert isinstance(handle, JobHandle)
    out = io.StringIO()
    pydispatch.progress(handle, file=out, interval=0.2, timeout=120)
    handle.result(timeout=60)  # raises the job's failure, if any
    assert handle.status() == "FINISHED"
    text = out.getvalue()
    for name in ("numbers", "slowly", "nowhere"):
        assert name in text
    assert "20000" in text  # the final counts (the sink's records in)


def _submit(cluster: LocalCluster, job: Path, **popen: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pydispatch.cli", "submit", cluster.address, str(job),
         "--progress-every", "0.2"],
        stdout=subprocess.PIPE, **popen,
    )  # fmt: skip


def test_submit_prints_plain_progress_lines_off_a_terminal(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    job = tmp_path / "job.py"
    job.write_text(JOB_FILE)
    submit = _submit(cluster, job, stderr=subprocess.PIPE)
    _, err = submit.communicate(timeout=120)
    assert submit.returncode == 0, err.decode()
    lines = [line for line in err.decode().splitlines() if "records out:" in line]
    assert lines, err.decode()
    assert "\r" not in err.decode()
    assert re.search(r"FINISHED after \d+ s: records out: numbers 20000, slowly 20000", lines[-1])


def test_submit_draws_bars_on_a_terminal(cluster: LocalCluster, tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text(JOB_FILE)
    leader, follower = pty.openpty()
    # A terminal of 120 columns (a new pty has 0, into which tqdm fits no bar).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        submit = _submit(cluster, job, stderr=follower)
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other side closed: the command ended
                break
            if not chunk:
                break
            seen += chunk
        assert submit.wait(timeout=120) == 0
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    text = seen.decode(errors="replace")
    assert "\r" in text or "\x1b[" in text  # redrawn in place: a bar, not lines
    for name in ("numbers", "slowly", "nowhere"):
        assert name in text
    assert "rec" in text
