"""The dispatcher's book of its clients: which peers said ``ClientHello``, the second (sending)
socket each may have, and when each was last heard from.

A client may send on a socket of its own besides the one it receives on
(:attr:`~pydispatch.wire.protocol.ClientHello.sender`): messages from that identity count as the
client's. A client with tasks outstanding says hello every ``timeout / 4`` seconds; one silent
for ``timeout`` is presumed gone (the dispatcher drops its queued tasks; running ones finish), so
a client killed outright does not keep the cluster busy, nor its fair share. Each client's name
goes to the monitor's :class:`~pydispatch.monitor.client_labels.ClientLabels` (its metrics'
label) and leaves it with the client.
"""

from __future__ import annotations

from collections.abc import Callable

from ..monitor.client_labels import ClientLabels
from ..wire import protocol as p

__all__ = ["ClientBook"]


class ClientBook:
    """``is_peer`` tells whether an identity is a registered worker or slot (a client's sender
    identity must not be one)."""

    def __init__(
        self,
        timeout: float,
        is_peer: Callable[[bytes], bool],
        labels: ClientLabels | None = None,
        key_of: Callable[[bytes], str] | None = None,
    ) -> None:
        self.timeout = timeout
        self._key_of = key_of  # with keys: the key an identity holds ("" none)
        self.labels = labels if labels is not None else ClientLabels()
        self._is_peer = is_peer
        self._clients: set[bytes] = set()
        # Read on every message (the dispatcher's hot loop), hence public:
        self.seen: dict[bytes, float] = {}  # client -> when it was last heard from
        self.senders: dict[bytes, bytes] = {}  # a client's sending socket -> the client
        self._sender_of: dict[bytes, bytes] = {}  # and back

    def __contains__(self, identity: bytes) -> bool:
        return identity in self._clients

    def hello(self, client: bytes, sender: bytes, now: float, name: str = "") -> None:
        """``client`` said hello, naming its sending socket (``b""``: none of its own) and
        itself (``""``: no name, or the one it gave before)."""
        if sender:
            self._add_sender(client, sender)
        self.labels.hello(client, name)
        self._clients.add(client)
        self.seen[client] = now

    def forget(self, client: bytes) -> None:
        self._clients.discard(client)
        self.labels.forget(client)
        self.seen.pop(client, None)
        sender = self._sender_of.pop(client, None)
        if sender is not None:
            del self.senders[sender]

    def silent(self, now: float) -> list[tuple[bytes, float]]:
        """The clients silent for over ``timeout``, with for how long; the clock of each
        restarts (so they are not found again at every tick)."""
        out = [(c, now - seen) for c, seen in self.seen.items() if now - seen > self.timeout]
        for client, _ in out:
            self.seen[client] = now
        return out

    def _taken_over(self, owner: bytes, client: bytes) -> bool:
        """Whether ``owner`` is the old connection of ``client``, which has reconnected: a
        dispatcher's ROUTER lets a peer's new connection take its identity over
        (``ROUTER_HANDOVER``) and names the old one ``b"\\x00"`` + 4 bytes while it delivers
        what it still holds (a hello, say). Such names are also every unnamed socket's, so
        only the same key's hello may take a sending socket from one: with keys only."""
        if len(owner) != 5 or owner[0] != 0 or self._key_of is None:
            return False
        key = self._key_of(owner)
        return bool(key) and key == self._key_of(client)

    def _add_sender(self, client: bytes, sender: bytes) -> None:
        owner = self.senders.get(sender)
        if owner is not None and owner != client and self._taken_over(owner, client):
            self.forget(owner)  # the client's own hello takes its sending socket back
            owner = None
        if (
            sender == client
            or sender in self._clients
            or owner not in (None, client)
            or self._is_peer(sender)
        ):
            raise p.ProtocolError("the hello names a sender identity that is taken")
        previous = self._sender_of.get(client)
        if previous is not None and previous != sender:
            del self.senders[previous]  # one sending socket per client
        self.senders[sender] = client
        self._sender_of[client] = sender
