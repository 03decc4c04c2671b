"""Ordinary mistakes on the command line, made against a real cluster: each prints one line
on stderr and exits non-zero, never a Python traceback."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle

from _support.clusters import make_cluster
from pydispatch.cli.main import build_parser
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import StreamEnvironment

cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLUSTER: dict[str, Any] = {"workers": 1, "slots": 1}


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pydispatch.cli", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def _one_line_failure(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _finished_job(cluster: LocalCluster, name: str) -> str:
    env = StreamEnvironment(cluster)
    env.from_elements([1]).for_each(lambda x: None)
    handle = env.execute(name)
    handle.result(timeout=60)
    return handle.job_id


def test_an_unknown_job_id(cluster: LocalCluster) -> None:
    for command in ("cancel", "result"):
        line = _one_line_failure(_cli(command, cluster.address, "no-such-job"))
        assert line.startswith(f"pydispatch {command}: no job 'no-such-job' at {cluster.address}")


def test_an_ambiguous_prefix_is_refused_and_a_name_is_never_a_false_match(
    cluster: LocalCluster,
) -> None:
    first = _finished_job(cluster, "wx-first")
    second = _finished_job(cluster, "wx-second")
    line = _one_line_failure(_cli("result", cluster.address, "wx"))
    # No job is named "wx": the message says what did match, and lists the jobs.
    assert "'wx' is ambiguous" in line
    assert "id prefix of 2 jobs" in line
    assert first in line
    assert second in line
    assert "named" not in line
    # A job whose name is exactly "wx" is that job, whatever ids start with "wx".
    exact = _finished_job(cluster, "wx")
    done = _cli("cancel", cluster.address, "wx")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "wx had ended already"
    # A unique prefix still names its job.
    assert _cli("cancel", cluster.address, exact[:-2]).stderr.strip().endswith("ended already")


def test_no_dispatcher_at_the_address_says_where_and_how_long() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    for args in (
        ("status", address, "--timeout", "0.5"),
        ("jobs", address, "--timeout", "0.5"),
        ("cancel", address, "some-job", "--timeout", "0.5"),
    ):
        line = _one_line_failure(_cli(*args))
        assert line == f"pydispatch {args[0]}: no dispatcher answered at {address} within 0.5 s"


def test_an_address_without_a_scheme_is_an_argument_error() -> None:
    for args in (
        ("status", "127.0.0.1:5555"),
        ("worker", "localhost:5555"),
        ("dispatcher", "--bind", "127.0.0.1:5555"),
        ("submit", "tcp://127.0.0.1", "job.py"),  # no port
        ("jobs", "udp://127.0.0.1:5555"),
    ):
        line = _one_line_failure(_cli(*args), code=2)
        assert "is not an address: write tcp://HOST:PORT or ipc://PATH" in line


def test_a_port_in_use() -> None:
    # A dispatcher of its own on TCP (the module's cluster is on ipc://, where a second bind
    # takes the path over rather than fail).
    with make_cluster(0, address="tcp://127.0.0.1:*") as cluster:
        taken = cluster.address
        line = _one_line_failure(_cli("dispatcher", "--bind", taken))
        assert line == (
            f"pydispatch dispatcher: cannot listen on {taken}: address already in use "
            "(by another process)"
        )
    # On ipc:// a second bind would take the path over: refused as well, and the first
    # dispatcher keeps serving.
    with make_cluster(0) as cluster:
        taken = cluster.address
        assert taken.startswith("ipc://")
        line = _one_line_failure(_cli("dispatcher", "--bind", taken))
        assert line == (
            f"pydispatch dispatcher: cannot listen on {taken}: a dispatcher already listens there"
        )
        assert _cli("status", taken, "--json").returncode == 0


def test_a_missing_job_file_or_one_without_build(cluster: LocalCluster, tmp_path: Path) -> None:
    missing = tmp_path / "missing.py"
    line = _one_line_failure(_cli("submit", cluster.address, str(missing)))
    assert line == f"pydispatch submit: {missing}: no such job file"
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    line = _one_line_failure(_cli("submit", cluster.address, str(empty)))
    assert line == f"pydispatch submit: {empty} defines no build(env) function"
    idle = tmp_path / "idle.py"
    idle.write_text("def build(env):\n    env.from_elements([1])\n")
    line = _one_line_failure(_cli("submit", cluster.address, str(idle)))
    assert line == f"pydispatch submit: {idle}: build(env) added no sink and returned no stream"


def test_version() -> None:
    done = _cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == "pydispatch 0.1.0"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_of_every_subcommand_is_explained_with_its_default() -> None:
    for name, parser in _subcommands().items():
        text = parser.format_help()
        assert "``" not in text, name  # plain text, not reStructuredText
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.dest)
            worth_saying = action.default not in (None, False, argparse.SUPPRESS, [], {})
            if worth_saying and (action.option_strings or action.nargs == "?"):
                helped = parser._get_formatter()._get_help_string(action) or ""
                assert "default" in helped, (name, action.dest)
    dispatcher = _cli("dispatcher", "--help")
    assert dispatcher.returncode == 0
    flat = " ".join(dispatcher.stdout.split())
    assert "--heartbeat-timeout HEARTBEAT_TIMEOUT seconds without a heartbeat" in flat
    assert "(default: 10.0)" in flat
    worker = " ".join(_cli("worker", "--help").stdout.split())
    assert "--label KEY=VALUE a label tasks can require" in worker


def test_a_dispatcher_that_hosts_no_jobs_refuses_a_submit_in_one_line(tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text("def build(env):\n    return env.from_elements([1])\n")
    with make_cluster(0, job_masters=False) as cluster:
        line = _one_line_failure(_cli("submit", cluster.address, str(job)))
    assert line.startswith("refused: the dispatcher refused job")
    assert "hosts no job masters" in line


def test_counts_below_one_are_argument_errors() -> None:
    for args in (
        ("worker", "tcp://127.0.0.1:1", "--slots", "0"),
        ("submit", "tcp://127.0.0.1:1", "job.py", "--parallelism", "0"),
    ):
        line = _one_line_failure(_cli(*args), code=2)
        assert line.endswith(f"must be at least 1: 0 (see pydispatch {args[0]} --help)")
