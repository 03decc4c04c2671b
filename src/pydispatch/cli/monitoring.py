"""The command line's monitoring parts (issue 16): the dispatcher's HTTP options, the log
format, and ``pydispatch alerts``.

Kept out of :mod:`.main` so that the parser there only calls in here: one line per place.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from ..monitor.alerts import Thresholds, alert_rules
from ..monitor.http import DEFAULT_HTTP, parse_http_address
from ..monitor.logs import LOG_FORMATS

__all__ = [
    "add_alerts_command",
    "add_http_options",
    "add_log_format",
    "add_progress_option",
    "http_arguments",
    "parse_http",
]


def parse_http(text: str) -> str:
    try:
        parse_http_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_http_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--http",
        type=parse_http,
        default=None,
        metavar="HOST:PORT",
        help="where to serve /metrics (Prometheus), the JSON API (/api/...) and the dashboard "
        "(/); beyond loopback only with --http-insecure (port 0: any free one; default "
        f"{DEFAULT_HTTP}, or a free port if another process has that one)",
    )
    parser.add_argument("--no-http", action="store_true", help="serve no metrics, API or dashboard")
    parser.add_argument(
        "--http-insecure",
        action="store_true",
        help="allow --http on an address beyond loopback although nothing protects it (there "
        "is no admin credential to ask for yet): only on a network you trust",
    )
    parser.add_argument(
        "--no-metrics",
        dest="metrics",
        action="store_false",
        help="count nothing on the dispatcher's hot path (the API and dashboard still show "
        "workers, task and job counts)",
    )


def http_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``run_dispatcher``'s keyword arguments for the options above."""
    return {
        "http": None if args.no_http else (args.http or DEFAULT_HTTP),
        "http_insecure": args.http_insecure,
        "http_fallback": args.http is None,
        "metrics": args.metrics,
    }


def add_log_format(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default,
        help="log lines as text, or as JSON objects with task_id, job_id, worker fields "
        "where a line is about one" + ("" if default == argparse.SUPPRESS else " (default: text)"),
    )


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="while waiting: live per-operator records on stderr, as bars on a terminal, "
        "else a line every SECONDS (0: none)",
    )


def add_alerts_command(
    commands: Any, make: Any
) -> None:  # (the subparsers action and main's command factory)
    alerts: argparse.ArgumentParser = make(
        "alerts",
        "print Prometheus alerting rules",
        "Rules for a worker lost, the queue growing, back-pressure, a job restarting\n"
        "repeatedly, tasks failing, a job's checkpoints aborting and the dispatcher down, over\n"
        "the dispatcher's /metrics.\n"
        "Save them to a file named in prometheus.yml's rule_files.",
    )
    alerts.add_argument(
        "--scrape-job",
        default="pydispatch",
        help="the job_name your Prometheus scrapes the dispatcher under",
    )
    for f in fields(Thresholds):
        option = "--" + f.name.replace("_", "-")
        alerts.add_argument(
            option, type=type(f.default), default=f.default, help=_THRESHOLD_HELP[f.name]
        )
    alerts.set_defaults(run=_alerts)


_THRESHOLD_HELP = {
    "worker_lost_window": "alert on a worker lost (heartbeat timeout) within this window",
    "queue_growing_for": "alert when the queue has grown for this long",
    "queue_min": "... and holds more than this many tasks",
    "backpressure_ratio": "alert when a chain's subtasks are back-pressured more than this "
    "share of their time",
    "backpressure_for": "... for this long",
    "restarts": "alert when a job restarts this many times",
    "restart_window": "... within this window",
    "failure_ratio": "alert when more than this share of the tasks ending fail",
    "failure_window": "... over this window, for as long",
    "failure_min_rate": "... and at least this many tasks end per second",
    "down_for": "alert when the dispatcher has not been scraped for this long",
    "checkpoint_failures": "alert when at least this many of a job's checkpoints aborted ...",
    "checkpoint_failure_window": "... within this window",
}


def _alerts(args: argparse.Namespace) -> int:
    thresholds = Thresholds(**{f.name: getattr(args, f.name) for f in fields(Thresholds)})
    print(alert_rules(thresholds, job=args.scrape_job), end="")
    return 0
