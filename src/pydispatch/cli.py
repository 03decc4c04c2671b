"""The ``pydispatch`` command: one subcommand per job, each a small function."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run

    run(rows=args.rows, parts=args.parts)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pydispatch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the main demo on generated data")
    demo.add_argument("--rows", type=int, default=5_000_000, help="records to partition")
    demo.add_argument("--parts", type=int, default=16, help="parallel subtasks")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = args.handler
    try:
        result: int = handler(args)
    except BrokenPipeError:
        # The reader went away (`pydispatch demo | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result


if __name__ == "__main__":
    raise SystemExit(main())
