"""``pydispatch`` command line: ``dispatcher``, ``worker``, ``status``, ``submit``, ``jobs``,
``cancel``, ``result``, ``savepoint`` and ``demo`` subcommands."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any, Final, NoReturn

import msgspec
import zmq

from ..monitor.logs import configure_logging
from ..runtime.dispatcher import DEFAULT_PREFETCH
from ..runtime.heartbeat_pacing import DEFAULT_MAX_HEARTBEATS
from ..runtime.job_store import JobStoreError, default_state_dir
from ..scheduling.placer import amount_text
from ..wire.addresses import ADVERTISE_ENV, host_of, is_wildcard, resolve_host
from ..wire.transport import DEFAULT_MAX_MESSAGE_SIZE
from .admin import add_drain_command, cancel_tasks_of
from .jobs import CommandError
from .keys import add_key_options, add_keys_parser, apply_key_options, check_secure_bind
from .monitoring import (
    add_alerts_command,
    add_http_options,
    add_log_format,
    add_progress_option,
    http_arguments,
)

__all__ = [
    "build_parser",
    "effective_log_level",
    "format_status",
    "main",
    "parse_address",
    "parse_amount",
    "parse_dispatchers",
    "parse_label",
    "parse_log_level",
    "parse_resources",
]

_LOCAL = "tcp://127.0.0.1:5555"

_UNITS = {
    "": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
}  # fmt: skip


_AMOUNT = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]i?)?[bB]?\s*")


def parse_amount(text: str) -> float:
    """``4`` -> 4.0, ``8GiB`` -> 8 * 2**30, ``1.5k`` -> 1500.0."""
    match = _AMOUNT.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}")
    return float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def parse_resources(text: str) -> dict[str, float]:
    resources = {}
    for item in filter(None, text.split(",")):
        name, _, amount = item.partition("=")
        if not name or not amount:
            raise argparse.ArgumentTypeError(f"expected name=amount, got {item!r}")
        resources[name.strip()] = parse_amount(amount)
    return resources


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def _dispatcher(args: argparse.Namespace) -> int:
    from ..monitor.http import HttpEndpointError, check_http_address, parse_http_address
    from ..runtime.dispatcher import run_dispatcher
    from ..wire.security import DISPATCHER

    keys = apply_key_options(args, DISPATCHER)
    check_secure_bind(args.bind, keys, args.insecure)
    _refuse_a_taken_ipc_path(args.bind)
    _advertise_job_masters(args.bind, args.advertise_host)
    http = http_arguments(args)
    if http["http"]:  # refused before anything starts, not after the job launcher did
        try:
            host, _ = parse_http_address(http["http"])
            check_http_address(host, http["http_insecure"], protected=keys is not None)
        except (ValueError, HttpEndpointError) as error:
            raise CommandError(str(error)) from None
    try:
        _run_dispatcher(run_dispatcher, args, keys)
    except HttpEndpointError as error:  # refused beyond loopback, or its port is taken
        raise CommandError(str(error)) from None
    except JobStoreError as error:  # one line naming the file, not a traceback
        raise CommandError(str(error)) from None
    return 0


def _run_dispatcher(run_dispatcher: Any, args: argparse.Namespace, keys: Any) -> None:
    run_dispatcher(
        args.bind,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout,
        max_heartbeat_rate=args.max_heartbeat_rate,
        max_message_size=args.max_message_size,
        prefetch=args.prefetch,
        exit_with_parent=args.exit_with_parent,
        job_masters=args.job_masters,
        client_timeout=args.client_timeout,
        state_dir=args.state_dir,
        ha=args.ha,
        advertise_host=args.advertise_host,
        **http_arguments(args),
        keys=keys,
    )


def _refuse_a_taken_ipc_path(bind: str) -> None:
    """On ipc:// a second bind does not fail as a TCP port in use does: it takes the path
    over, silently cutting the dispatcher there off from new peers. Ask first; a path whose
    dispatcher is gone (a stale file) is taken over as before."""
    if not bind.startswith("ipc://") or not os.path.exists(bind[len("ipc://") :]):
        return
    from ..runtime.client import fetch_status

    try:
        fetch_status(bind, timeout=0.5)
    except TimeoutError:
        return
    raise CommandError(f"cannot listen on {bind}: a dispatcher already listens there")


def _worker(args: argparse.Namespace) -> int:
    if args.nprocs > 1:
        return _worker_group(args)
    from ..runtime.worker import WorkerOptions, run_worker

    keys = apply_key_options(args)
    options = WorkerOptions(
        slots=args.slots,
        resources=args.resources,
        labels=dict(args.label),
        name=args.name,
        node=args.node,
        drain_grace=args.drain_grace,
        max_message_size=args.max_message_size,
        data_bind=args.data_bind,
        advertise_host=args.advertise_host,
        direct=not args.no_direct,
        exit_with_parent=args.exit_with_parent,
        keys=keys,
    )
    run_worker(args.address, options)
    return 0


def _worker_group(args: argparse.Namespace) -> int:
    """``--nprocs K``: K worker processes, each told to drain/stop when this one is."""
    base: list[str] = args.argv
    children = []
    for index in range(args.nprocs):
        command = [sys.executable, "-m", "pydispatch.cli", *base, "--nprocs", "1"]
        command += ["--exit-with-parent", str(os.getpid())]
        if args.name:
            command += ["--name", f"{args.name}-{index}"]
        children.append(subprocess.Popen(command))

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(child.wait() for child in children)


def _status(args: argparse.Namespace) -> int:
    apply_key_options(args)
    from ..runtime.client import fetch_status

    status = fetch_status(args.address, timeout=args.timeout)
    # Headers are array-like on the wire; people and scripts want named fields.
    fields = {name: msgspec.to_builtins(getattr(status, name)) for name in status.__struct_fields__}
    if args.json:
        print(json.dumps(fields, indent=2, sort_keys=True))
        return 0
    print(format_status(fields))
    return 0


def format_status(status: dict[str, Any]) -> str:
    lines = [
        f"queued {status['queued']}  running {status['running']}  finished {status['finished']}"
        f"  failed {status['failed']}  cancelled {status['cancelled']}  retried {status['retried']}"
        f"  late results discarded {status['discarded_late_results']}",
        f"{len(status['workers'])} worker(s):",
        f"  {'name':<20} {'node':<16} {'slots':>7}  {'heartbeat':>9}"
        "  resources (free/total), labels",
    ]
    for w in status["workers"]:
        resources = " ".join(
            f"{k}={amount_text(w['free_resources'].get(k, 0))}/{amount_text(v)}"
            for k, v in w["resources"].items()
        )
        labels = ",".join(f"{k}={v}" for k, v in w["labels"].items())
        slots = f"{w['slots_used']}/{w['slots']}"
        beat = f"{w['seconds_since_heartbeat']:.1f}s ago"
        state = " draining" if w["draining"] else ""
        lines.append(
            f"  {w['name']:<20} {w['node']:<16} {slots:>7}  {beat:>9}  {resources} {labels}{state}"
        )
    return "\n".join(lines)


def _submit(args: argparse.Namespace) -> int:
    apply_key_options(args)
    from .jobs import submit_command

    return submit_command(
        args.address,
        args.job,
        args.name,
        args.parallelism,
        args.detach,
        args.retention,
        args.progress_every,
        args.from_savepoint,
    )


def _savepoint(args: argparse.Namespace) -> int:
    apply_key_options(args)
    from .jobs import savepoint_command

    return savepoint_command(args.address, args.job, args.path, args.stop, args.timeout)


def _jobs(args: argparse.Namespace) -> int:
    apply_key_options(args)
    from .jobs import jobs_command

    return jobs_command(args.address, args.json, args.timeout)


def _cancel(args: argparse.Namespace) -> int:
    apply_key_options(args)
    if args.tasks_of is not None:
        return cancel_tasks_of(args)
    if args.job is None:
        raise CommandError("name a job to cancel (or --tasks-of KEY)")
    from .jobs import cancel_command

    return cancel_command(args.address, args.job, args.timeout)


def _result(args: argparse.Namespace) -> int:
    apply_key_options(args)
    from .jobs import result_command

    return result_command(args.address, args.job, args.timeout)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run, run_cluster

    run_cluster(items=args.items)
    run(rows=args.rows, parts=args.parts)
    return 0


class _Parser(argparse.ArgumentParser):
    """Argument mistakes in one line, as every other mistake is (argparse prints the usage
    too: the help is one option away, and says more)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Each option's default in its help, unless the help says it already or there is none
    worth saying (a flag, an empty list); descriptions are printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or (isinstance(default, list | dict) and not default)
            or not (action.option_strings or action.nargs == "?")
        ):
            return text
        return f"{text} (default: %(default)s)"


_ADDRESS = re.compile(r"(tcp://[^\s:]+|tcp://\[[0-9a-fA-F:.]+\]):([0-9]+|\*)|ipc://\S+")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_address(text: str) -> str:
    """A dispatcher (or data socket) address: ``tcp://HOST:PORT`` or ``ipc://PATH``."""
    match = _ADDRESS.fullmatch(text)
    if match is None or (text.endswith(":*") and not text.startswith("tcp://")):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an address: write tcp://HOST:PORT or ipc://PATH"
        )
    return text


_DISPATCHERS = "the dispatcher, e.g. tcp://HOST:5555, or with standbys tcp://H1:5555,tcp://H2:5555"


def parse_dispatchers(text: str) -> str:
    """One dispatcher address, or several separated by commas (a leader and its standbys:
    whichever leads is used)."""
    return ",".join(parse_address(part.strip()) for part in text.split(","))


def _rate(text: str) -> float:
    """A number of events per second: above 0 (``inf`` allowed), not NaN."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:  # NaN included
        raise argparse.ArgumentTypeError(f"must be a number of heartbeats per second > 0: {text}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _advertise_job_masters(bind: str, advertise_host: str) -> None:
    """Where the job masters this dispatcher starts bind and are reached (they read it from
    the environment they inherit): --advertise-host, else the bound address if it is one
    (not every interface), else left to each job (the address its submitter reached us by)."""
    host = advertise_host or os.environ.get(ADVERTISE_ENV, "")
    if not host and not is_wildcard(host_of(bind)):
        host = resolve_host(host_of(bind)) if host_of(bind) else ""
    if host:
        os.environ[ADVERTISE_ENV] = host


def _data_address(text: str) -> str:
    return text if text == "" else parse_address(text)


def parse_log_level(text: str) -> str:
    level = text.upper()
    if level not in _LEVELS:
        raise argparse.ArgumentTypeError(f"not a log level: {text!r} (one of {', '.join(_LEVELS)})")
    return level


def _version() -> str:
    try:
        return metadata.version("pydispatch-cluster")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


_DESCRIPTION = """\
pydispatch: a ZeroMQ task dispatcher and dataflow runtime.

A cluster is one dispatcher and any number of workers:
  pydispatch dispatcher --bind tcp://0.0.0.0:5555
  pydispatch worker tcp://HOST:5555 --slots 4
Then run tasks from Python (pydispatch.Client), or dataflow jobs from here:
  pydispatch submit tcp://HOST:5555 job.py
"""


def build_parser() -> argparse.ArgumentParser:
    # Accepted after the subcommand too: its copy leaves the top-level value alone unless
    # given (a separate action, as parents share theirs and set_defaults would reach both).
    level_help = "how much to log on stderr: DEBUG, INFO, WARNING, ERROR or CRITICAL"
    common = _Parser(add_help=False)
    common.add_argument(
        "--log-level",
        type=parse_log_level,
        metavar="LEVEL",
        default=argparse.SUPPRESS,
        help=f"{level_help} (default: INFO for dispatcher and worker, WARNING for the other "
        "commands, or as given before the command)",
    )
    add_log_format(common, argparse.SUPPRESS)
    parser = _Parser(prog="pydispatch", description=_DESCRIPTION, formatter_class=_Help)
    parser.add_argument(
        "--log-level",
        type=parse_log_level,
        metavar="LEVEL",
        default=None,
        help=f"{level_help}; also accepted after the command (default: INFO for the services, "
        "dispatcher and worker, which log their registrations and lost peers; WARNING for the "
        "other commands)",
    )
    add_log_format(parser, "text")
    parser.add_argument("--version", action="version", version=f"pydispatch {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name,
            help=summary,
            description=f"{summary}.\n\n{description}",
            formatter_class=_Help,
            parents=[common],
        )
        return sub

    dispatcher = command(
        "dispatcher",
        "run the dispatcher",
        "Workers register with it, clients submit tasks and dataflow jobs to it; it places\n"
        "tasks on workers' slots and runs each dataflow job's master. Stops on SIGTERM/SIGINT.",
    )
    dispatcher.add_argument(
        "--bind",
        type=parse_address,
        default="tcp://127.0.0.1:5555",
        help="where to listen: tcp://HOST:PORT (tcp://0.0.0.0:5555 for every interface) or "
        "ipc://PATH",
    )
    dispatcher.add_argument(
        "--advertise-host",
        default="",
        help="the address workers and clients reach this host's job masters at (default: "
        "the --bind address, or with every interface the address each job's client used)",
    )
    dispatcher.add_argument(
        "--heartbeat-interval",
        type=float,
        default=1.0,
        help="seconds between the heartbeats the dispatcher and its workers exchange",
    )
    dispatcher.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=10.0,
        help="seconds without a heartbeat after which a worker is lost and its running "
        "tasks are run again elsewhere",
    )
    dispatcher.add_argument(
        "--max-heartbeat-rate",
        type=_rate,
        default=DEFAULT_MAX_HEARTBEATS,
        metavar="PER_SECOND",
        help="heartbeats per second all workers together send at most: past PER_SECOND x "
        "--heartbeat-interval workers, each is told a longer interval, up to a third of "
        "--heartbeat-timeout (which is unchanged); > 0, inf = never longer (default "
        f"{DEFAULT_MAX_HEARTBEATS:g})",
    )
    dispatcher.add_argument(
        "--max-message-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="bytes; a larger message from a peer is refused and its connection dropped",
    )
    dispatcher.add_argument(
        "--prefetch",
        type=int,
        default=DEFAULT_PREFETCH,
        help="tasks queued on each slot beyond the running one, at most (and about 2 ms of "
        "them once measured): more throughput for small tasks, less exact priorities/fair "
        f"share; 0 = exact (default {DEFAULT_PREFETCH})",
    )
    dispatcher.add_argument(
        "--client-timeout",
        type=float,
        default=30.0,
        help="seconds a client with tasks outstanding may stay silent before its queued tasks "
        "are dropped (it says hello every quarter of this; one only cut off sends them again "
        "when it is back; default 30)",
    )
    dispatcher.add_argument(
        "--no-job-masters",
        dest="job_masters",
        action="store_false",
        help="host no dataflow job masters (submitted jobs are refused; saves the launcher "
        "process an embedded cluster whose jobs run their master in the application)",
    )
    add_http_options(dispatcher)
    dispatcher.add_argument(
        "--insecure",
        action="store_true",
        help="listen in plain text on a network address without --keys (anyone who reaches "
        "it can run code on every worker: a trusted network only)",
    )
    dispatcher.add_argument(
        "--state-dir",
        default=default_state_dir(),
        help="where accepted dataflow jobs are kept (a SQLite file per --bind address): a "
        "dispatcher started again there restarts the unfinished ones; '' keeps none "
        "(default $XDG_STATE_HOME/pydispatch or ~/.local/state/pydispatch)",
    )
    dispatcher.add_argument(
        "--ha",
        default="",
        metavar="POSTGRESQL_URL",
        help="standby dispatchers: keep jobs in this PostgreSQL database (postgresql://...; "
        "needs the 'ha' extra, psycopg 3) instead of --state-dir, and serve only while "
        "leading (an advisory lock); a standby waits, and takes over when the leader's "
        "session ends (default: no standbys)",
    )
    dispatcher.add_argument("--exit-with-parent", type=int, default=0, help=argparse.SUPPRESS)
    dispatcher.set_defaults(run=_dispatcher)

    worker = command(
        "worker",
        "run worker process(es)",
        "Each worker process registers with the dispatcher and runs tasks in its slots (one\n"
        "subprocess each). Started before its dispatcher, it waits for it. SIGTERM drains it.",
    )
    worker.add_argument("address", type=parse_dispatchers, help=_DISPATCHERS)
    worker.add_argument(
        "--slots", type=_positive, default=1, help="tasks each worker process runs at once"
    )
    worker.add_argument(
        "--nprocs", type=_positive, default=1, help="worker processes to start, each with its slots"
    )
    worker.add_argument(
        "--resources",
        type=parse_resources,
        default={},
        help="what this worker offers tasks, name=amount,...: e.g. cpu=4,gpu=1,memory=8GiB "
        "(tasks asking for resources run only where there is enough; default: none)",
    )
    worker.add_argument(
        "--label",
        type=parse_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label tasks can require (labels={'zone': 'a'}); repeat for several (default: none)",
    )
    worker.add_argument("--name", default="", help="worker name (default: HOST-PID)")
    worker.add_argument(
        "--node",
        default="",
        help="node name: workers of one node share a machine (default: HOSTNAME@ADDRESS, the "
        "host name and the advertised address, unique per host; the host name alone when "
        "the dispatcher is reached over loopback)",
    )
    worker.add_argument(
        "--drain-grace",
        type=float,
        default=30.0,
        help="seconds running tasks get to finish after SIGTERM before they are re-queued "
        "elsewhere",
    )
    worker.add_argument(
        "--max-message-size",
        type=int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="bytes; a larger message is refused",
    )
    worker.add_argument(
        "--data-bind",
        type=_data_address,
        default=None,
        help="the tcp://HOST:* where its slots bind their direct endpoints for lease holders "
        "(when the dispatcher is not on ipc://; '' for none; default: the advertised host)",
    )
    worker.add_argument(
        "--advertise-host",
        default="",
        help="the address other hosts reach this worker's slots and dataflow slices at "
        "(default: the local address of its route to the dispatcher)",
    )
    worker.add_argument(
        "--no-direct",
        action="store_true",
        help="no direct endpoints on the slots: every task goes through the dispatcher",
    )
    worker.add_argument("--exit-with-parent", type=int, default=0, help=argparse.SUPPRESS)
    worker.set_defaults(run=_worker)

    status = command(
        "status", "show workers and task counts", "Asks the dispatcher once and prints its answer."
    )
    status.add_argument(
        "address", nargs="?", type=parse_dispatchers, default=_LOCAL, help="the dispatcher"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the dispatcher"
    )
    status.set_defaults(run=_status)

    submit = command(
        "submit",
        "run a dataflow job file: its build(env)",
        "The file defines build(env): it adds sinks to env, a StreamEnvironment on the\n"
        "dispatcher, or returns a stream, whose records are printed. Relative paths in it are\n"
        "resolved here. Waits for the job (Ctrl-C cancels it) unless --detach; exits 0 when it\n"
        "finished, 1 when it failed, was cancelled or was refused.",
    )
    submit.add_argument("address", type=parse_dispatchers, help=_DISPATCHERS)
    submit.add_argument("job", help="a Python file defining build(env)")
    submit.add_argument("--name", default=None, help="job name (default: the file's path)")
    submit.add_argument(
        "--parallelism", type=_positive, default=1, help="the job's default parallelism"
    )
    submit.add_argument(
        "--detach",
        action="store_true",
        help="print the job's id and exit at once; the job runs on (see: pydispatch result)",
    )
    submit.add_argument(
        "--retention",
        type=float,
        default=None,
        help="seconds the finished job's result is kept if nobody fetches it (default 600)",
    )
    submit.add_argument(
        "--from-savepoint",
        default="",
        metavar="PATH",
        help="start the job from this savepoint (its state redistributed to --parallelism)",
    )
    add_progress_option(submit)
    submit.set_defaults(run=_submit)

    jobs = command(
        "jobs", "list the dataflow jobs", "Every job the dispatcher knows of, with its state."
    )
    jobs.add_argument(
        "address", nargs="?", type=parse_dispatchers, default=_LOCAL, help="the dispatcher"
    )
    jobs.add_argument("--json", action="store_true", help="machine-readable output")
    jobs.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the dispatcher"
    )
    jobs.set_defaults(run=_jobs)

    job_help = "job id, or the job's name, or the start of its id (each must match one job)"
    cancel = command(
        "cancel",
        "cancel a dataflow job, or a key's tasks",
        "A job's running slices are killed. --tasks-of KEY (an admin's request) cancels\n"
        "the tasks of every client connected with that key (--task: only those ids).",
    )
    cancel.add_argument("address", type=parse_dispatchers, help=_DISPATCHERS)
    cancel.add_argument("job", nargs="?", default=None, help=job_help)
    cancel.add_argument("--tasks-of", metavar="KEY", default=None, help="a key's name")
    cancel.add_argument("--task", metavar="ID", type=int, action="append", help="a task id")
    cancel.add_argument("--force", action="store_true", help="kill running tasks too")
    cancel.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the dispatcher"
    )
    cancel.set_defaults(run=_cancel)

    savepoint = command(
        "savepoint",
        "take a savepoint of a running dataflow job",
        "The job must checkpoint (env.enable_checkpointing). Prints the savepoint's directory:\n"
        "start a job from it with: pydispatch submit ADDRESS job.py --from-savepoint PATH.",
    )
    savepoint.add_argument(
        "address", type=parse_address, help="the dispatcher, e.g. tcp://HOST:5555"
    )
    savepoint.add_argument("job", help=job_help)
    savepoint.add_argument(
        "--path", default="", help="the savepoint's directory (default: ./savepoint-JOB)"
    )
    savepoint.add_argument("--stop", action="store_true", help="then cancel the job")
    savepoint.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the savepoint"
    )
    savepoint.set_defaults(run=_savepoint)

    result = command(
        "result",
        "wait for a dataflow job; print its records",
        "Prints the records of the job's collect sinks, then a summary on stderr.",
    )
    result.add_argument("address", type=parse_dispatchers, help=_DISPATCHERS)
    result.add_argument("job", help=job_help)
    result.add_argument("--timeout", type=float, default=None, help="seconds (default: wait)")
    result.set_defaults(run=_result)

    keys = command(
        "keys",
        "make and list the cluster's keys",
        "CurveZMQ key pairs (pyzmq certificate files) in a directory: init makes the\n"
        "dispatcher's and an admin's; add makes one more (a client, worker or admin); list\n"
        "prints them; token prints an admin's bearer token for the HTTP endpoint. A host\n"
        "needs its own NAME.key_secret and dispatcher.key only.",
    )
    add_keys_parser(keys)
    for talking in (worker, status, submit, jobs, cancel, result, savepoint):
        add_key_options(talking)
    add_key_options(dispatcher, "dispatcher")
    add_drain_command(command, parse_dispatchers)

    demo = command(
        "demo",
        "run the main demo on generated data",
        "Starts an embedded cluster, runs tasks on it, then partitions records natively.",
    )
    demo.add_argument(
        "--items", type=_positive, default=1_000_000, help="items to map on the cluster"
    )
    demo.add_argument("--rows", type=_positive, default=5_000_000, help="records to partition")
    demo.add_argument("--parts", type=_positive, default=16, help="parallel subtasks")
    demo.set_defaults(run=_demo)
    add_alerts_command(commands, command)
    return parser


def _bind_failure(error: zmq.ZMQError, args: argparse.Namespace) -> str:
    found = re.search(r"addr='([^']*)'", str(error))
    where = found.group(1) if found else getattr(args, "bind", "")
    if error.errno == zmq.EADDRINUSE:
        return f"cannot listen on {where}: address already in use (by another process)"
    return f"{where or 'address'}: {error.strerror.split(' (addr=')[0]}"


# Long-running services say what happens to them (registered, lost and regained peers) at
# INFO, which their operators want to see by default; one-shot commands stay quiet.
_SERVICE_COMMANDS: Final = frozenset({"dispatcher", "worker"})


def effective_log_level(args: argparse.Namespace) -> str:
    """The level given on the command line, else the command's default."""
    given: str | None = args.log_level
    if given is not None:
        return given
    return "INFO" if args.command in _SERVICE_COMMANDS else "WARNING"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    args.log_level = effective_log_level(args)
    configure_logging(args.log_level, args.log_format)
    try:
        result: int = args.run(args)
    except BrokenPipeError:
        # The reader went away (`pydispatch demo | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CommandError, LookupError, TimeoutError, PermissionError) as error:
        print(f"pydispatch {args.command}: {error}", file=sys.stderr)
        return 1
    except zmq.ZMQError as error:  # an address no socket can bind or connect to
        print(f"pydispatch {args.command}: {_bind_failure(error, args)}", file=sys.stderr)
        return 1
    return result
