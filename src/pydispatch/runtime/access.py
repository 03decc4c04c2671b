"""Who may say what to a dispatcher that has keys: roles, bound identities, job ownership.

Every peer of a dispatcher with keys has passed its ZAP handler (``wire.security.Gate``: only
known public keys connect), and libzmq stamps each of its messages with its public key. For
each message :class:`Access` decides, before the dispatcher's handler runs (the dispatcher
never unpickles anything; what it forwards is unpickled by slots and masters only if it got
this far):

- the key's role allows the message's kind (:data:`ALLOWED`): a worker key cannot submit, a
  client key cannot register a worker or report a slot's result, a job-master key (issued by
  the dispatcher for one job) speaks for that job only;
- the socket identity it comes from (and that a ``Heartbeat``, ``Register`` or ``SlotReady``
  names) is bound to the key that first used it: another key cannot speak through it;
- dataflow jobs belong to the key that submitted them: ``pydispatch jobs`` lists a client its
  own (an admin every one); ``pydispatch status`` shows a non-admin no worker's pid or data
  endpoint; only an admin drains workers and cancels another key's tasks (``admin``).

A refusal is logged once per key, and answered with an ``Error`` once per key (a hostile peer
gets no stream of replies), and for every refused request (a hello, a status or jobs request:
its peer waits to hear why; what a peer does not read is bounded by the dispatcher's per-peer
queue anyway).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import msgspec
import zmq

from ..wire import protocol as p
from ..wire.security import (
    Gate,
    Identity,
    JobCredentials,
    Keys,
    PeerTable,
    issue_job_credentials,
    peer_key,
    serve_curve,
)

__all__ = ["ALLOWED", "Access", "JobKeys", "RefusedError", "serve_keys"]

log = logging.getLogger(__name__)

_CLIENT: Final = frozenset(
    {
        p.ClientHello,
        p.Submit,
        p.Cancel,
        p.KillDirect,
        p.ReturnLease,
        p.ClientBye,
        p.StatusRequest,
        p.JobsRequest,
        p.JobOutcomeRequest,
    }
)
_WORKER: Final = frozenset(
    {
        p.Register,
        p.Heartbeat,
        p.SlotHello,
        p.SlotReady,
        p.SlotLost,
        p.Done,
        p.LeaseClosed,
        p.Drain,
        p.Goodbye,
    }
)
_MASTER: Final = frozenset({p.JobUpdate, p.JobPayloadRequest, p.JobHostReport, p.JobOutcome})

_ADMIN: Final = frozenset({p.DrainWorker, p.CancelTasksOf})

#: The message kinds each role may send a dispatcher.
ALLOWED: Final[dict[str, frozenset[type]]] = {
    "client": _CLIENT | {p.SubmitJob},
    "worker": _WORKER,
    "job-master": _CLIENT | _MASTER,
    "admin": _CLIENT | _WORKER | _ADMIN | {p.SubmitJob},
    "dispatcher": _CLIENT | _WORKER | _ADMIN | {p.SubmitJob},
}
# Requests whose sender waits for an answer: a refused one is always answered (why), bounded
# by the dispatcher's per-peer queue like any answer.
_ANSWERED: Final = frozenset(
    {
        p.ClientHello,
        p.Register,
        p.SlotHello,
        p.StatusRequest,
        p.JobsRequest,
        p.JobOutcomeRequest,
        p.SubmitJob,
        p.JobPayloadRequest,
        p.DrainWorker,
        p.CancelTasksOf,
    }
)
_SEES_EVERY_JOB: Final = frozenset({"admin", "dispatcher"})
_IDENTITIES_PER_KEY: Final = 1024  # socket identities one key may hold (oldest forgotten)
_REMEMBERED: Final = 4096  # keys whose refusal was logged


class RefusedError(Exception):
    """This message is not allowed: ``reply`` says whether to answer it (once per key)."""

    def __init__(self, reason: str, reply: bool) -> None:
        super().__init__(reason)
        self.reply = reply


class Access:
    """The dispatcher's gatekeeper over ``peers`` (its :class:`PeerTable`)."""

    def __init__(self, peers: PeerTable, forgotten: Callable[[bytes], None] | None = None) -> None:
        self.peers = peers
        # Told of a socket identity forgotten to keep a key's bound (a client of that key
        # is then forgotten too: no table a key can fill).
        self._forgotten = forgotten
        self._bound: dict[bytes, str] = {}  # socket identity -> the key that holds it
        self._held: dict[str, OrderedDict[bytes, None]] = {}  # key -> its identities
        self._refused: dict[str, None] = {}
        #: Who sent the message being handled (set by :meth:`admit`).
        self.current: Identity | None = None

    def peer(self, frame: zmq.Frame) -> Identity:
        """Who sent the message ``frame`` is part of; RefusedError for a key no longer known (a
        job's key after its master exited), before anything of the message is decoded."""
        key = peer_key(frame)
        identity = self.peers.get(key)
        if identity is None:
            raise self._refuse(key, "unknown key")
        return identity

    def admit(self, peer: Identity, routing: bytes, client: bytes, message: p.Message) -> None:
        """Raise :class:`RefusedError` unless ``peer`` may send ``message`` from the socket
        ``routing`` (``client``: the client that socket sends for, if it is a client's sending
        socket)."""
        kind = type(message)
        if kind not in ALLOWED.get(peer.role, frozenset()):
            # A request is always answered: its peer waits for that answer to say why.
            # (Raised, never held in a local: a traceback's frame holding its own exception
            # would be a cycle keeping the message's frames until the next full collection.)
            reason = f"a {peer.role} key may not send {kind.__name__}"
            raise self._refuse(peer.public, reason, kind in _ANSWERED)
        self._bind(peer, routing)
        if client != routing and self._bound.get(client) != peer.public:
            raise self._refuse(peer.public, "a sending socket of another key's client")
        named: list[bytes] = []
        if isinstance(message, p.Heartbeat):
            named = [message.worker]
        elif isinstance(message, p.Register):
            named = list(message.slot_ids)
        elif isinstance(message, p.SlotReady):
            named = [message.slot]
        for identity in named:
            if self._bound.get(identity) != peer.public:
                raise self._refuse(peer.public, f"{kind.__name__} names a socket of another key")
        if isinstance(message, p.JobUpdate):
            job = message.job.job_id
        elif isinstance(message, p.JobPayloadRequest | p.JobHostReport | p.JobOutcome):
            job = message.job_id
        else:
            job = peer.job
        if job != peer.job:
            raise self._refuse(peer.public, f"a key of job {peer.job!r} spoke for job {job!r}")
        self.current = peer

    def identities_of(self, name: str) -> list[bytes]:
        """The socket identities held by the key named ``name`` (its clients among them)."""
        return [
            routing
            for key, held in self._held.items()
            if (identity := self.peers.get(key)) is not None and identity.name == name
            for routing in held
        ]

    def key_of(self, routing: bytes) -> str:
        """The key that holds a socket identity ("": none)."""
        return self._bound.get(routing, "")

    def sees(self, job: p.JobInfo) -> bool:
        """Whether the current peer may see (list, ask about) ``job``."""
        peer = self.current
        if peer is None or peer.role in _SEES_EVERY_JOB:
            return True
        return job.owner_key == peer.public or job.job_id == peer.job

    def status_for_peer(self, reply: p.StatusReply) -> p.StatusReply:
        """The status the current peer may see: an admin all of it; anyone else (a client,
        looking at what it could ask for) no worker's pid or data endpoint."""
        peer = self.current
        if peer is None or peer.role in _SEES_EVERY_JOB:
            return reply
        workers = [msgspec.structs.replace(w, pid=0, data_address="") for w in reply.workers]
        return msgspec.structs.replace(reply, workers=workers)

    def forget(self, routing: bytes) -> None:
        key = self._bound.pop(routing, None)
        if key is not None:
            held = self._held.get(key)
            if held is not None:
                held.pop(routing, None)
                if not held:
                    del self._held[key]

    def _bind(self, peer: Identity, routing: bytes) -> None:
        bound = self._bound.get(routing)
        if bound == peer.public:
            return
        if bound is not None:
            raise self._refuse(peer.public, "a socket identity held by another key")
        held = self._held.setdefault(peer.public, OrderedDict())
        if len(held) >= _IDENTITIES_PER_KEY:  # bounded per key: its oldest is forgotten
            oldest, _ = held.popitem(last=False)
            self._bound.pop(oldest, None)
            if self._forgotten is not None:
                self._forgotten(oldest)
        held[routing] = None
        self._bound[routing] = peer.public

    def _refuse(self, key: str, reason: str, answer: bool = False) -> RefusedError:
        first = key not in self._refused
        if first:
            if len(self._refused) >= _REMEMBERED:
                self._refused.clear()
            self._refused[key] = None
            identity = self.peers.get(key) if key else None
            who = f"{identity.name} ({identity.role})" if identity else f"key {key or '?'}"
            log.warning("refused %s: %s (logged once per key)", who, reason)
        return RefusedError(reason, reply=first or answer)


def serve_keys(
    context: zmq.Context[Any],
    sock: zmq.Socket[Any],
    keys: Keys,
    forgotten: Callable[[bytes], None] | None = None,
) -> tuple[Access, Gate, JobKeys]:
    """Make the dispatcher's ``sock`` (not bound yet) a CURVE server that lets in the keys of
    ``keys``'s directory; its gatekeeper, ZAP handler and issuer of job keys."""
    peers = PeerTable(keys.directory)
    access = Access(peers, forgotten)
    gate = Gate(context, lambda key: peers.get(key) is not None, "dispatcher")
    serve_curve(sock, keys.public, keys.secret)
    return access, gate, JobKeys(access, keys.public)


class JobKeys:
    """The per-job credentials a dispatcher with keys issues: a fresh key pair per job, known
    (role job-master, for that job only) from the job's submission until its master exits.
    The job's master gets the secret key on its launcher's stdin (never on a command line);
    its slices get it inside their task, over CURVE."""

    def __init__(self, access: Access, server: str) -> None:
        self._access = access
        self._server = server

    def issue(self, job_id: str, owner: Identity | None) -> JobCredentials:
        admins = self._access.peers.admins()
        credentials = issue_job_credentials(self._server, owner.public if owner else "", admins)
        self._access.peers.add(Identity(f"job:{job_id}", "job-master", credentials.public, job_id))
        return credentials

    def revoke(self, credentials: JobCredentials) -> None:
        self._access.peers.remove(credentials.public)
