"""``pydispatch drain`` and ``cancel --tasks-of``: an administrator's requests (private).

Both need an admin key when the dispatcher has keys (``--keys DIR --identity admin``); a
client or worker key is refused and the command says so in one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .jobs import CommandError
from .keys import add_key_options, apply_key_options

__all__ = ["add_drain_command", "cancel_tasks_of"]

Command = Callable[[str, str, str], argparse.ArgumentParser]


def add_drain_command(command: Command, address_type: Callable[[str], str]) -> None:
    drain = command(
        "drain",
        "drain a worker (an admin's request)",
        "Nothing new is placed on it, and once its slots are idle it exits, as on SIGTERM.\n"
        "Exits 1 if no registered worker has that name.",
    )
    drain.add_argument(
        "address",
        type=address_type,
        help="the dispatcher (or a leader and its standbys, comma-separated)",
    )
    drain.add_argument("worker", help="the worker's name (see pydispatch status)")
    drain.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the dispatcher"
    )
    add_key_options(drain)
    drain.set_defaults(run=_drain)


def _drain(args: argparse.Namespace) -> int:
    apply_key_options(args)
    from ..runtime.client import admin_request
    from ..wire import protocol as p

    print(admin_request(args.address, p.DrainWorker(args.worker), args.timeout).detail)
    return 0


def cancel_tasks_of(args: argparse.Namespace) -> int:
    """``pydispatch cancel ADDRESS --tasks-of NAME [--task ID ...] [--force]``."""
    if args.job is not None:
        raise CommandError("give a job or --tasks-of, not both")
    from ..runtime.client import admin_request
    from ..wire import protocol as p

    request = p.CancelTasksOf(args.tasks_of, list(args.task or ()), args.force)
    print(admin_request(args.address, request, args.timeout).detail)
    return 0
