"""``pydispatch`` command line: ``dispatcher``, ``worker``, ``status``, ``submit``, ``jobs``,
``cancel``, ``result`` and ``demo`` subcommands."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from ..runtime.dispatcher import DEFAULT_PREFETCH
from ..scheduling.placer import amount_text
from ..wire.transport import DEFAULT_MAX_MESSAGE_SIZE

__all__ = [
    "build_parser",
    "format_status",
    "main",
    "parse_amount",
    "parse_label",
    "parse_resources",
]

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
    from ..runtime.dispatcher import run_dispatcher

    run_dispatcher(
        args.bind,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout,
        max_message_size=args.max_message_size,
        prefetch=args.prefetch,
        exit_with_parent=args.exit_with_parent,
        job_masters=args.job_masters,
        client_timeout=args.client_timeout,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    if args.nprocs > 1:
        return _worker_group(args)
    from ..runtime.worker import WorkerOptions, run_worker

    options = WorkerOptions(
        slots=args.slots,
        resources=args.resources,
        labels=dict(args.label),
        name=args.name,
        node=args.node,
        drain_grace=args.drain_grace,
        max_message_size=args.max_message_size,
        data_bind=args.data_bind,
        direct=not args.no_direct,
        exit_with_parent=args.exit_with_parent,
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
    from ..runtime.client import fetch_status

    try:
        status = fetch_status(args.address, timeout=args.timeout)
    except TimeoutError as error:
        print(error, file=sys.stderr)
        return 2
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
    from .jobs import submit_command

    return submit_command(
        args.address, args.job, args.name, args.parallelism, args.detach, args.retention
    )


def _jobs(args: argparse.Namespace) -> int:
    from .jobs import jobs_command

    return jobs_command(args.address, args.json, args.timeout)


def _cancel(args: argparse.Namespace) -> int:
    from .jobs import cancel_command

    return cancel_command(args.address, args.job, args.timeout)


def _result(args: argparse.Namespace) -> int:
    from .jobs import result_command

    return result_command(args.address, args.job, args.timeout)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run, run_cluster

    run_cluster(items=args.items)
    run(rows=args.rows, parts=args.parts)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pydispatch", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    commands = parser.add_subparsers(dest="command", required=True)

    dispatcher = commands.add_parser("dispatcher", help="run the dispatcher")
    dispatcher.add_argument("--bind", default="tcp://127.0.0.1:5555", help="endpoint to bind")
    dispatcher.add_argument("--heartbeat-interval", type=float, default=1.0)
    dispatcher.add_argument("--heartbeat-timeout", type=float, default=10.0)
    dispatcher.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE)
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
        "are failed (it says hello every quarter of this; default 30)",
    )
    dispatcher.add_argument(
        "--no-job-masters",
        dest="job_masters",
        action="store_false",
        help="host no dataflow job masters (submitted jobs are refused; saves the launcher "
        "process an embedded cluster whose jobs run their master in the application)",
    )
    dispatcher.add_argument("--exit-with-parent", type=int, default=0, help=argparse.SUPPRESS)
    dispatcher.set_defaults(run=_dispatcher)

    worker = commands.add_parser("worker", help="run worker process(es)")
    worker.add_argument("address", help="the dispatcher, e.g. tcp://HOST:5555")
    worker.add_argument("--slots", type=int, default=1, help="tasks run at once per process")
    worker.add_argument("--nprocs", type=int, default=1, help="worker processes to start")
    worker.add_argument("--resources", type=parse_resources, default={}, help="cpu=4,gpu=1")
    worker.add_argument("--label", type=parse_label, action="append", default=[])
    worker.add_argument("--name", default="", help="worker name (default: host-pid)")
    worker.add_argument("--node", default="", help="node name (default: the host name)")
    worker.add_argument("--drain-grace", type=float, default=30.0, help="seconds, on SIGTERM")
    worker.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE)
    worker.add_argument(
        "--data-bind",
        default="tcp://127.0.0.1:*",
        help="where the data socket for worker-to-worker traffic binds ('' to disable)",
    )
    worker.add_argument(
        "--no-direct",
        action="store_true",
        help="no direct endpoints on the slots: every task goes through the dispatcher",
    )
    worker.add_argument("--exit-with-parent", type=int, default=0, help=argparse.SUPPRESS)
    worker.set_defaults(run=_worker)

    status = commands.add_parser("status", help="show workers and task counts")
    status.add_argument("address", nargs="?", default="tcp://127.0.0.1:5555")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--timeout", type=float, default=5.0)
    status.set_defaults(run=_status)

    submit = commands.add_parser("submit", help="run a dataflow job file: its build(env)")
    submit.add_argument("address", help="the dispatcher, e.g. tcp://HOST:5555")
    submit.add_argument("job", help="a Python file defining build(env)")
    submit.add_argument("--name", default=None, help="job name (default: the file's path)")
    submit.add_argument("--parallelism", type=int, default=1, help="default parallelism")
    submit.add_argument(
        "--detach",
        action="store_true",
        help="print the job's id and exit at once; the job runs on (see `result`)",
    )
    submit.add_argument(
        "--retention",
        type=float,
        default=None,
        help="seconds the finished job's result is kept if nobody fetches it (default 600)",
    )
    submit.set_defaults(run=_submit)

    jobs = commands.add_parser("jobs", help="list the dataflow jobs")
    jobs.add_argument("address", nargs="?", default="tcp://127.0.0.1:5555")
    jobs.add_argument("--json", action="store_true", help="machine-readable output")
    jobs.add_argument("--timeout", type=float, default=5.0)
    jobs.set_defaults(run=_jobs)

    cancel = commands.add_parser("cancel", help="cancel a dataflow job")
    cancel.add_argument("address", help="the dispatcher, e.g. tcp://HOST:5555")
    cancel.add_argument("job", help="job id (or a unique prefix of it, or its name)")
    cancel.add_argument("--timeout", type=float, default=10.0)
    cancel.set_defaults(run=_cancel)

    result = commands.add_parser("result", help="wait for a dataflow job; print its records")
    result.add_argument("address", help="the dispatcher, e.g. tcp://HOST:5555")
    result.add_argument("job", help="job id (or a unique prefix of it, or its name)")
    result.add_argument("--timeout", type=float, default=None, help="seconds (default: wait)")
    result.set_defaults(run=_result)

    demo = commands.add_parser("demo", help="run the main demo on generated data")
    demo.add_argument("--items", type=int, default=1_000_000, help="items to map on the cluster")
    demo.add_argument("--rows", type=int, default=5_000_000, help="records to partition")
    demo.add_argument("--parts", type=int, default=16, help="parallel subtasks")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        result: int = args.run(args)
    except BrokenPipeError:
        # The reader went away (`pydispatch demo | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result
