"""Keys, roles and CurveZMQ on pydispatch's sockets (internal).

A cluster's keys live in one directory of pyzmq certificate files (``zmq.auth``):
``NAME.key`` (public) and ``NAME.key_secret`` (public and secret) per identity, each with a
``role`` in its metadata: ``dispatcher`` (the cluster's own key pair), ``admin``, ``client``
or ``worker``. ``pydispatch keys init|add|list`` (``cli.keys``) makes and lists them.

- :func:`load_keys` gives this process its :class:`Keys`: its own key pair (from
  ``NAME.key_secret``) and the dispatcher's public key (from ``dispatcher.key``). That is all
  a host other than the dispatcher's needs: those two files.
- :class:`PeerTable` is the dispatcher's table public key -> :class:`Identity` (name, role),
  read from every ``*.key`` file of the directory, read again (at most once a second) when an
  unknown key knocks, so that ``pydispatch keys add`` needs no restart. The dispatcher adds
  the per-job keys it issues to job masters (role ``job-master``) and removes them.
- :class:`Gate` runs a ZAP handler (``zmq.auth.thread.ThreadAuthenticator`` with a
  credentials callback) on a context: a CURVE server socket of that context accepts only the
  keys its predicate accepts, and libzmq stamps every message from an accepted peer with the
  ``User-Id`` property (the peer's public key, z85), read with :func:`peer_key` before
  anything of the message is decoded. Each refused key is logged once, not once per attempt.
- :func:`serve_curve` / :func:`connect_curve` set a socket's CURVE options (before it binds
  or connects).

- :func:`admin_http_token`: an admin key's bearer token at the dispatcher's HTTP endpoint
  (its dashboard, API and metrics), checked by :class:`AdminTokens`.

Keys are z85 text (40 characters) everywhere in Python; libzmq takes them as bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import zmq
from zmq.utils import z85

__all__ = [
    "ADDABLE_ROLES",
    "DISPATCHER",
    "IDENTITY_ENV",
    "KEYS_ENV",
    "ZAP_DOMAIN",
    "AdminTokens",
    "Gate",
    "Identity",
    "JobCredentials",
    "Keys",
    "KeysError",
    "PeerTable",
    "Role",
    "add_key",
    "admin_http_token",
    "connect_curve",
    "connect_with",
    "create_keys",
    "issue_job_credentials",
    "list_keys",
    "load_keys",
    "peer_key",
    "resolve_keys",
    "serve_curve",
]

log = logging.getLogger(__name__)

Role = Literal["dispatcher", "admin", "client", "worker", "job-master"]
ADDABLE_ROLES: Final = ("client", "worker", "admin")
DISPATCHER: Final = "dispatcher"  # the name of the cluster's own key pair in a keys directory
KEYS_ENV: Final = "PYDISPATCH_KEYS"
IDENTITY_ENV: Final = "PYDISPATCH_IDENTITY"
ZAP_DOMAIN: Final = "pydispatch"
_RELOAD_EVERY: Final = 1.0  # seconds between re-reads of a keys directory for unknown keys
_REMEMBERED: Final = 4096  # refused keys remembered (each logged once), at most
_NAME_OK: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class KeysError(ValueError):
    """A keys directory, an identity or a key file that cannot be used; the message says
    which file and what to do."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A known public key: whose it is and what it may do (``job``: the job of a job-master
    key)."""

    name: str
    role: Role
    public: str
    job: str = ""


@dataclass(frozen=True)
class Keys:
    """This process's credentials: its key pair and the dispatcher's public key."""

    name: str
    role: Role
    public: str
    secret: str = field(repr=False)
    server: str  # the dispatcher's public key
    directory: str = ""

    def for_job_plane(self) -> Keys:
        """The same key pair (a handle to a job's master uses its owner's key)."""
        return self


@dataclass(frozen=True)
class JobCredentials:
    """A job's own key pair, issued by the dispatcher: its master's key towards the
    dispatcher, and the key of the job plane (the master's control socket and the slices'
    inboxes serve with it; slices connect with it). ``owner`` and ``admins``: the public keys
    allowed to ask the job's master for its status, result or cancellation."""

    public: str
    secret: str = field(repr=False)
    server: str  # the dispatcher's public key
    owner: str = ""
    admins: tuple[str, ...] = ()

    def keys(self, job_id: str) -> Keys:
        return Keys(f"job:{job_id}", "job-master", self.public, self.secret, self.server)


def _check_name(name: str) -> None:
    if not name or not set(name) <= _NAME_OK or name.startswith("."):
        raise KeysError(f"{name!r} is not a key name: use letters, digits, '-', '_' and '.'")


def _metadata(path: str) -> dict[str, str]:
    """The ``metadata`` section of a certificate file (pyzmq's loader reads only the keys)."""
    found: dict[str, str] = {}
    section = ""
    with open(path, encoding="utf8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not line[0].isspace():
                section = line.strip()
                continue
            if section == "metadata" and "=" in line:
                key, _, value = line.partition("=")
                found[key.strip()] = value.strip().strip("\"'")
    return found


# zmq.auth is imported where keys are used (it imports asyncio: 20 ms more for every process
# of a cluster without keys otherwise).


def _load_certificate(path: str) -> tuple[bytes, bytes | None]:
    from zmq.auth.certs import load_certificate

    return load_certificate(path)


def _make(directory: str, name: str, role: Role) -> Identity:
    from zmq.auth.certs import _write_key_file, create_certificates

    _check_name(name)
    if os.path.exists(os.path.join(directory, f"{name}.key")):
        raise KeysError(f"{directory} already has a key named {name!r}")
    metadata = {"name": name, "role": role}
    public_file, secret_file = create_certificates(directory, name, metadata)
    os.chmod(secret_file, 0o600)
    public, _ = _load_certificate(public_file)
    # The public certificate carries the role too (create_certificates writes metadata into
    # the secret one only): the dispatcher's host needs only public files to know each role.
    banner = "#   ZeroMQ CURVE Public Certificate (pydispatch)\n\n"
    _write_key_file(public_file, banner, public, metadata=metadata)
    return Identity(name, role, public.decode("ascii"))


def create_keys(directory: str) -> list[Identity]:
    """``pydispatch keys init DIR``: the dispatcher's key pair and an ``admin`` key, in a new
    (or empty) directory readable by its owner only."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    if os.path.exists(os.path.join(directory, f"{DISPATCHER}.key")):
        raise KeysError(f"{directory} holds a cluster's keys already")
    return [_make(directory, DISPATCHER, "dispatcher"), _make(directory, "admin", "admin")]


def add_key(directory: str, name: str, role: str) -> Identity:
    """``pydispatch keys add DIR NAME --role ROLE``: one more identity."""
    if role not in ADDABLE_ROLES:
        raise KeysError(f"role must be one of {', '.join(ADDABLE_ROLES)}, not {role!r}")
    if not os.path.exists(os.path.join(directory, f"{DISPATCHER}.key")):
        raise KeysError(
            f"{directory} holds no cluster's keys: run pydispatch keys init {directory}"
        )
    return _make(directory, name, role)  # type: ignore[arg-type]


def _read_identity(path: str) -> Identity | None:
    try:
        public, _ = _load_certificate(path)
        role = _metadata(path).get("role", "")
    except (OSError, ValueError):
        log.warning("not a certificate file: %s", path)
        return None
    if role not in ("dispatcher", *ADDABLE_ROLES):
        log.warning("%s names no role pydispatch knows (%r): ignored", path, role)
        return None
    name = os.path.basename(path)[: -len(".key")]
    return Identity(name, role, public.decode("ascii"))  # type: ignore[arg-type]


def list_keys(directory: str) -> list[Identity]:
    """Every identity of a keys directory (from its public ``*.key`` files), by name."""
    if not os.path.isdir(directory):
        raise KeysError(f"no keys directory {directory} (pydispatch keys init {directory})")
    found = []
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(".key"):
            identity = _read_identity(os.path.join(directory, entry))
            if identity is not None:
                found.append(identity)
    return found


def load_keys(directory: str, identity: str | None = None) -> Keys:
    """This process's :class:`Keys`: ``DIR/IDENTITY.key_secret`` and ``DIR/dispatcher.key``.

    ``identity`` None: the directory's only secret key other than the dispatcher's (its
    dispatcher's own if that is all there is)."""
    if not os.path.isdir(directory):
        raise KeysError(f"no keys directory {directory} (see pydispatch keys --help)")
    if identity is None:
        secrets = sorted(
            e[: -len(".key_secret")] for e in os.listdir(directory) if e.endswith(".key_secret")
        )
        others = [name for name in secrets if name != DISPATCHER]
        if len(others) == 1:
            identity = others[0]
        elif not others and secrets:
            identity = DISPATCHER
        else:
            choices = ", ".join(others) or "none"
            raise KeysError(
                f"which identity of {directory}? give --identity NAME or {IDENTITY_ENV} "
                f"(secret keys there: {choices})"
            )
    _check_name(identity)
    secret_file = os.path.join(directory, f"{identity}.key_secret")
    server_file = os.path.join(directory, f"{DISPATCHER}.key")
    if not os.path.exists(secret_file):
        raise KeysError(f"no secret key {secret_file} (copy it from where pydispatch keys made it)")
    if not os.path.exists(server_file):
        raise KeysError(f"no dispatcher's public key {server_file} (copy it there)")
    public, secret = _load_certificate(secret_file)
    if secret is None:
        raise KeysError(f"{secret_file} holds no secret key")
    role = _metadata(secret_file).get("role", "client")
    server, _ = _load_certificate(server_file)
    return Keys(
        identity,
        role,  # type: ignore[arg-type]
        public.decode("ascii"),
        secret.decode("ascii"),
        server.decode("ascii"),
        os.path.abspath(directory),
    )


def resolve_keys(keys: str | Keys | None = None, identity: str | None = None) -> Keys | None:
    """The keys a process talks with: ``keys`` as given (a directory or :class:`Keys`), else
    those ``PYDISPATCH_KEYS`` and ``PYDISPATCH_IDENTITY`` name; None: no keys (plain text)."""
    if isinstance(keys, Keys):
        return keys
    directory = keys if keys is not None else os.environ.get(KEYS_ENV, "")
    if not directory:
        return None
    return load_keys(directory, identity or os.environ.get(IDENTITY_ENV) or None)


def issue_job_credentials(server: str, owner: str, admins: tuple[str, ...]) -> JobCredentials:
    """A fresh key pair for one job (made by the dispatcher, never written to disk)."""
    public, secret = zmq.curve_keypair()
    return JobCredentials(public.decode("ascii"), secret.decode("ascii"), server, owner, admins)


# ------------------------------------------------------------------------------- sockets


def serve_curve(sock: zmq.Socket[Any], public: str, secret: str) -> None:
    """Make ``sock`` a CURVE server (before it binds); its context's :class:`Gate` decides
    which client keys it accepts."""
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public.encode("ascii"))
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret.encode("ascii"))


def connect_curve(sock: zmq.Socket[Any], public: str, secret: str, server: str) -> None:
    """Make ``sock`` a CURVE client of the server whose public key is ``server`` (set before
    each connect: libzmq reads the server key then)."""
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public.encode("ascii"))
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret.encode("ascii"))
    sock.setsockopt(zmq.CURVE_SERVERKEY, server.encode("ascii"))


def connect_with(sock: zmq.Socket[Any], keys: Keys | None, address: str) -> None:
    """Connect ``sock`` to the dispatcher at ``address``, as a CURVE client with ``keys``."""
    if keys is not None:
        connect_curve(sock, keys.public, keys.secret, keys.server)
    sock.connect(address)


def peer_key(frame: zmq.Frame) -> str:
    """The public key (z85) of the peer a received frame came from: libzmq's ``User-Id``,
    which the ZAP handler set when it accepted the peer ("" on a socket without CURVE)."""
    try:
        return str(frame.get("User-Id") or "")
    except zmq.ZMQError:  # no such property: the socket is not a CURVE server
        return ""


class PeerTable:
    """Known public keys -> :class:`Identity`: a keys directory's, plus keys added here (the
    dispatcher's per-job keys). Safe to read from the ZAP thread while the owner writes."""

    def __init__(self, directory: str = "") -> None:
        self._directory = directory
        self._from_files: dict[str, Identity] = {}
        self._added: dict[str, Identity] = {}
        self._loaded_at = -_RELOAD_EVERY
        self._lock = threading.Lock()
        if directory:
            self._reload()

    def _reload(self) -> None:
        self._loaded_at = time.monotonic()
        try:
            table = {i.public: i for i in list_keys(self._directory)}
        except KeysError as error:
            log.error("cannot read the keys: %s", error)
            return
        self._from_files = table  # one assignment: readers see the old table or the new

    def get(self, public: str) -> Identity | None:
        found = self._added.get(public) or self._from_files.get(public)
        if found is None and self._directory:
            with self._lock:  # an unknown key: a key added since? (at most once a second)
                if time.monotonic() - self._loaded_at >= _RELOAD_EVERY:
                    self._reload()
            found = self._from_files.get(public)
        return found

    def add(self, identity: Identity) -> None:
        self._added[identity.public] = identity

    def remove(self, public: str) -> None:
        self._added.pop(public, None)

    def admins(self) -> tuple[str, ...]:
        roles = ("admin", "dispatcher")
        return tuple(i.public for i in self._from_files.values() if i.role in roles)


class _Provider:
    """zmq.auth's credentials callback: the gate's predicate, and one log line per key."""

    def __init__(self, accept: Callable[[str], bool], what: str) -> None:
        self._accept = accept
        self._what = what
        self._refused: dict[str, None] = {}

    def callback(self, domain: str, key: bytes) -> bool:
        public = key.decode("ascii")
        if self._accept(public):
            return True
        if public not in self._refused:
            if len(self._refused) >= _REMEMBERED:
                self._refused.clear()
            self._refused[public] = None
            log.warning("%s refused a connection from key %s (logged once)", self._what, public)
        return False


class Gate:
    """A ZAP handler on ``context``: CURVE servers of that context accept a client only if
    ``accept(its public key)``. ``what`` names the server in the log. :meth:`stop` before the
    context is terminated."""

    def __init__(self, context: zmq.Context[Any], accept: Callable[[str], bool], what: str) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self._auth = ThreadAuthenticator(context, log=logging.getLogger("pydispatch.zap"))
        self._auth.start()
        self._auth.configure_curve_callback(ZAP_DOMAIN, _Provider(accept, what))

    def stop(self) -> None:
        self._auth.stop()


_HTTP_TOKEN_CONTEXT: Final = b"pydispatch http admin token\0"


def admin_http_token(dispatcher_secret: str, admin_public: str) -> str:
    """An admin key's bearer token at the dispatcher's HTTP endpoint: HMAC-SHA256 of the
    admin's public key under the dispatcher's secret key (hex). Only who holds the
    dispatcher's secret key makes one (``pydispatch keys token``); it stops working when the
    admin's key leaves the directory. Nothing new to store, nothing sent in the clear that a
    ZeroMQ peer could use."""
    key = z85.decode(dispatcher_secret.encode("ascii"))
    message = _HTTP_TOKEN_CONTEXT + admin_public.encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class AdminTokens:
    """Checks bearer tokens against the ``admin`` keys of the dispatcher's keys directory
    (read again at most once a second, so an admin key added or removed counts without a
    restart). Every admin's token is compared, each in constant time (``hmac.compare_digest``):
    how long a check takes says nothing of how close a guess came."""

    def __init__(self, keys: Keys) -> None:
        self._secret = keys.secret
        self._directory = keys.directory
        self._tokens: dict[str, str] = {}
        self._loaded_at = -_RELOAD_EVERY
        self._lock = threading.Lock()

    def _current(self) -> dict[str, str]:
        with self._lock:
            if time.monotonic() - self._loaded_at >= _RELOAD_EVERY:
                self._loaded_at = time.monotonic()
                try:
                    admins = [i for i in list_keys(self._directory) if i.role == "admin"]
                except KeysError as error:
                    log.error("cannot read the keys: %s", error)
                else:
                    self._tokens = {
                        admin_http_token(self._secret, i.public): i.name for i in admins
                    }
            return self._tokens

    def check(self, token: str) -> str | None:
        """The name of the admin whose token this is, or None."""
        presented = token.encode("utf-8", "replace")
        found = None
        for expected, name in self._current().items():
            if hmac.compare_digest(expected.encode("ascii"), presented):
                found = name
        return found
