"""Logging from the command line: ``--log-level`` on either side of the subcommand, and a job
whose name holds ``%`` logged by its master like any other (the name is in every line's
prefix, which is a format string)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from _support.process_guard import eventually
from pydispatch.cli.main import build_parser, effective_log_level

# A job its master refuses to plan (forward across parallelism 2 -> 3): the master logs why
# at ERROR, with the job's id, which holds its name, in the line's prefix.
UNPLANNABLE_JOB = """
def build(env):
    env.set_parallelism(2)
    env.from_collection([1, 2]).forward().map(lambda x: x).set_parallelism(3).for_each(print)
"""


def test_log_level_is_parsed_before_and_after_the_subcommand() -> None:
    parser = build_parser()

    def level(*argv: str) -> str:
        return effective_log_level(parser.parse_args(argv))

    assert level("jobs") == "WARNING"
    assert level("--log-level", "debug", "jobs") == "DEBUG"
    assert level("jobs", "--log-level", "info") == "INFO"
    assert level("worker", "tcp://h:1", "--log-level", "error", "--slots", "2") == "ERROR"
    # The services say by default what happens to them; one-shot commands stay quiet.
    assert level("worker", "tcp://h:1") == "INFO"
    assert level("dispatcher") == "INFO"
    assert level("status", "tcp://h:1") == "WARNING"


def test_a_worker_logs_registering_losing_and_regaining_its_dispatcher(tmp_path: Path) -> None:
    """At the default level: registered (slots, resources, labels), the loss once, the return."""
    address = f"ipc://{tmp_path}/dispatcher"
    cli = [sys.executable, "-m", "pydispatch.cli"]
    worker_log = tmp_path / "worker.log"

    def start_dispatcher() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*cli, "dispatcher", "--bind", address, "--log-level", "ERROR"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def logged(text: str) -> int:
        return worker_log.read_text().count(text)

    dispatcher = start_dispatcher()
    with worker_log.open("w") as stderr:
        worker = subprocess.Popen(
            [*cli, "worker", address, "--slots", "2", "--resources", "gpu=1", "--label", "zone=a"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        eventually(lambda: logged("registered with the dispatcher") == 1, "registered")
        (line,) = [
            line for line in worker_log.read_text().splitlines() if "registered with" in line
        ]
        assert " INFO " in line
        assert "2 slots" in line
        assert "'gpu': 1.0" in line
        assert "'zone': 'a'" in line
        dispatcher.send_signal(signal.SIGKILL)
        dispatcher.wait(timeout=30)
        eventually(lambda: logged("lost the connection to the dispatcher") == 1, "the loss")
        dispatcher = start_dispatcher()
        eventually(lambda: logged("registered again with the dispatcher") == 1, "the return")
        # Once per loss, not once per reconnection attempt or heartbeat.
        assert logged("lost the connection to the dispatcher") == 1
        assert "Traceback" not in worker_log.read_text()
    finally:
        worker.send_signal(signal.SIGINT)  # stops at once (SIGTERM would drain)
        dispatcher.terminate()
        worker.wait(timeout=30)
        dispatcher.wait(timeout=30)


def test_a_percent_in_a_job_name_keeps_its_masters_logging(tmp_path: Path) -> None:
    address = f"ipc://{tmp_path}/dispatcher"
    log = tmp_path / "dispatcher.log"
    cli = [sys.executable, "-m", "pydispatch.cli"]
    with log.open("w") as stderr:
        # --log-level after the subcommand: the dispatcher, its launcher and the job's master
        # log at INFO.
        dispatcher = subprocess.Popen(
            [*cli, "dispatcher", "--bind", address, "--log-level", "INFO"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        eventually(lambda: "job launcher" in log.read_text(), "the dispatcher logs at INFO")
        job = tmp_path / "job.py"
        job.write_text(UNPLANNABLE_JOB)
        name = "50%zz %(message)s %d"
        submitted = subprocess.run(
            [*cli, "submit", address, str(job), "--name", name],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert submitted.returncode == 1
        assert "forward partitioning does not allow" in submitted.stderr

        def logged() -> bool:
            return "could not be planned" in log.read_text()

        eventually(logged, "the job's master logged its refusal")
    finally:
        dispatcher.terminate()
        dispatcher.wait(timeout=30)
    text = log.read_text()
    assert "Logging error" not in text
    assert "Traceback" not in text
    (line,) = [line for line in text.splitlines() if "could not be planned" in line]
    assert f" job {name}-" in line
    assert " ERROR job " in line
