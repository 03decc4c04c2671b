"""``pydispatch keys init | add | list`` and the ``--keys`` / ``--identity`` options (private).

``keys init DIR`` makes the dispatcher's key pair and an ``admin`` key; ``keys add DIR NAME
--role client|worker|admin`` one more identity; ``keys list DIR`` prints names, roles and
public keys; ``keys token DIR NAME`` an admin's bearer token for the dispatcher's HTTP
endpoint. The files are pyzmq certificates (``wire.security``).

Every command that talks to a cluster takes ``--keys DIR --identity NAME``; they are put in
``PYDISPATCH_KEYS`` / ``PYDISPATCH_IDENTITY`` for the rest of the command (and the processes it
starts), which is where every socket it opens looks (``security.resolve_keys``).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re

from ..wire import security
from .jobs import CommandError

__all__ = [
    "add_key_options",
    "add_keys_parser",
    "apply_key_options",
    "check_secure_bind",
    "keys_command",
    "loopback",
]


def add_key_options(parser: argparse.ArgumentParser, identity_default: str = "") -> None:
    parser.add_argument(
        "--keys",
        metavar="DIR",
        default=None,
        help=f"a keys directory (pydispatch keys): talk CurveZMQ with this identity's key "
        f"(default: ${security.KEYS_ENV}; none: plain text)",
    )
    what = f"the {identity_default}'s" if identity_default else "the only one there, or"
    parser.add_argument(
        "--identity",
        metavar="NAME",
        default=None,
        help=f"whose key in --keys (default: ${security.IDENTITY_ENV}, else {what} secret key)",
    )


def apply_key_options(args: argparse.Namespace, identity_default: str = "") -> security.Keys | None:
    """Put --keys / --identity in the environment; the keys, checked now (one-line error)."""
    if args.keys is not None:
        os.environ[security.KEYS_ENV] = args.keys
    if args.identity is not None:
        os.environ[security.IDENTITY_ENV] = args.identity
    elif identity_default and os.environ.get(security.KEYS_ENV):
        os.environ.setdefault(security.IDENTITY_ENV, identity_default)
    try:
        return security.resolve_keys()
    except (security.KeysError, OSError) as error:
        raise CommandError(str(error)) from None


_HOST = re.compile(r"tcp://\[?([^\]]*?)\]?:[0-9*]+")


def loopback(address: str) -> bool:
    """Whether ``address`` is ipc:// or TCP on a loopback interface only."""
    if address.startswith("ipc://"):
        return True
    match = _HOST.fullmatch(address)
    if match is None:
        return False
    host = match.group(1)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or an interface: reachable from elsewhere


def check_secure_bind(bind: str, keys: security.Keys | None, insecure: bool) -> None:
    """Secure by default: no plain text on a network address unless asked for."""
    if keys is None and not insecure and not loopback(bind):
        raise CommandError(
            f"refusing to listen on {bind} without keys: anyone who reaches it could run code "
            f"on every worker. Make keys with `pydispatch keys init DIR` and pass --keys DIR, "
            f"or pass --insecure for a trusted network"
        )


def keys_command(args: argparse.Namespace) -> int:
    try:
        if args.action == "token":
            print(_admin_token(args.directory, args.name))
            return 0
        if args.action == "init":
            made = security.create_keys(args.directory)
        elif args.action == "add":
            made = [security.add_key(args.directory, args.name, args.role)]
        else:
            made = security.list_keys(args.directory)
    except (security.KeysError, OSError) as error:
        raise CommandError(str(error)) from None
    for identity in made:
        print(f"{identity.name:<20} {identity.role:<10} {identity.public}")
    return 0


def _admin_token(directory: str, name: str) -> str:
    """An admin's bearer token at the HTTP endpoint of the dispatcher whose secret key is in
    ``directory`` (``security.admin_http_token``)."""
    admin = {i.name: i for i in security.list_keys(directory)}.get(name)
    if admin is None or admin.role != "admin":
        raise CommandError(f"{name!r} is not an admin key in {directory}")
    dispatcher = security.load_keys(directory, security.DISPATCHER)
    return security.admin_http_token(dispatcher.secret, admin.public)


def add_keys_parser(command: argparse.ArgumentParser) -> None:
    actions = command.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="init, add, list or token"
    )
    init = actions.add_parser(
        "init", help="the dispatcher's key pair and an admin key, in a new directory"
    )
    init.add_argument("directory", metavar="DIR")
    add = actions.add_parser("add", help="one more identity: NAME.key and NAME.key_secret")
    add.add_argument("directory", metavar="DIR")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=security.ADDABLE_ROLES)
    listing = actions.add_parser("list", help="names, roles and public keys")
    listing.add_argument("directory", metavar="DIR")
    token = actions.add_parser(
        "token",
        help="an admin's bearer token for the dispatcher's HTTP endpoint (needs the "
        "dispatcher's secret key in DIR)",
    )
    token.add_argument("directory", metavar="DIR")
    token.add_argument("name", metavar="NAME")
    command.set_defaults(run=keys_command)
