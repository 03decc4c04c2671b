"""``--log-format json``: every line a JSON object, with the worker's name as a field on the
lines about a worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _support.process_guard import eventually

CLI = [sys.executable, "-m", "pydispatch.cli"]


def test_dispatcher_logs_json_lines_with_worker_fields(tmp_path: Path) -> None:
    address = f"ipc://{tmp_path}/dispatcher"
    log = tmp_path / "dispatcher.log"
    with log.open("w") as stderr:
        dispatcher = subprocess.Popen(
            [*CLI, "--log-format", "json", "dispatcher", "--bind", address, "--no-http",
             "--log-level", "INFO", "--no-job-masters"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        worker = subprocess.Popen(
            [*CLI, "worker", address, "--name", "json-worker"], stderr=subprocess.DEVNULL
        )
        try:
            eventually(lambda: "registered" in log.read_text(), "the worker registered")
            worker.terminate()  # drains: the dispatcher logs its removal
            worker.wait(timeout=60)
            eventually(lambda: "removed" in log.read_text(), "the worker was removed")
        finally:
            for process in (worker, dispatcher):
                process.kill()
                process.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    about_worker = [line for line in lines if line.get("worker") == "json-worker"]
    messages = [line["message"] for line in about_worker]
    assert any("registered" in m for m in messages)
    assert any("removed" in m for m in messages)
