"""Logging from the command line: ``--log-level`` on either side of the subcommand, and a job
whose name holds ``%`` logged by its master like any other (the name is in every line's
prefix, which is a format string)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _support.process_guard import eventually
from pydispatch.cli.main import build_parser

# A job its master refuses to plan (forward across parallelism 2 -> 3): the master logs why
# at ERROR, with the job's id, which holds its name, in the line's prefix.
UNPLANNABLE_JOB = """
def build(env):
    env.set_parallelism(2)
    env.from_collection([1, 2]).forward().map(lambda x: x).set_parallelism(3).for_each(print)
"""


def test_log_level_is_parsed_before_and_after_the_subcommand() -> None:
    parser = build_parser()
    assert parser.parse_args(["jobs"]).log_level == "WARNING"
    assert parser.parse_args(["--log-level", "debug", "jobs"]).log_level == "DEBUG"
    assert parser.parse_args(["jobs", "--log-level", "info"]).log_level == "INFO"
    worker = ["worker", "tcp://h:1", "--log-level", "error", "--slots", "2"]
    assert parser.parse_args(worker).log_level == "ERROR"


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
