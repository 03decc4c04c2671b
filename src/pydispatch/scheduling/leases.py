"""Leases: which client may send its lone tasks straight to which slot (the direct lane).

A pure book, like the scheduler: events in, decisions out, no sockets. The dispatcher grants a
lease on the slot where a client's lone plain task was placed, if that slot has a direct
endpoint and the client holds no open lease; the client then sends its next lone tasks to the
slot itself (two hops instead of four), until the lease is closed.

While a lease is in the book its slot is reserved in the scheduler (nothing else is placed
there): the dispatcher does not see direct attempts, so it must not count on the slot. When
tasks wait for a slot, open leases are closed; a closed lease stays in the book until its slot
confirms it ran every direct attempt it took under it (``LeaseClosed``), and only then is the
slot given work again. So a slot never holds a direct attempt and a placed one at once beyond
what prefetch allows, and if the slot dies first the book says whom to tell.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Lease", "Leases"]


@dataclass(slots=True)
class Lease:
    lease_id: int
    client: bytes
    slot: bytes
    worker: bytes
    address: str
    open: bool = True
    # The capability its holder shows the slot with every direct attempt: 128 random bits,
    # and the holder's key (with keys). The lease id is random too (31 bits: it is the high
    # half of the lease's int64 direct attempt ids), so a lease cannot be named by counting.
    token: bytes = field(default_factory=lambda: secrets.token_bytes(16))


# Direct attempt ids are -(lease_id << 32 | n): a lease id below 2**31 keeps them in int64.
_LEASE_IDS: Final = 2**31 - 1


class Leases:
    def __init__(self) -> None:
        self._by_id: dict[int, Lease] = {}
        self._open_of_client: dict[bytes, int] = {}
        self._addresses: dict[bytes, str] = {}  # slot -> its direct endpoint

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def any_open(self) -> bool:
        return bool(self._open_of_client)

    def slot_endpoint(self, slot: bytes, address: str) -> None:
        """A slot said hello with this direct endpoint ("": it has none)."""
        if address:
            self._addresses[slot] = address
        else:
            self._addresses.pop(slot, None)

    def grant(self, client: bytes, slot: bytes, worker: bytes) -> Lease | None:
        """A lease on ``slot`` for ``client``, or None: the slot has no direct endpoint, or
        the client holds an open lease already (one at a time: a lease is for lone tasks)."""
        address = self._addresses.get(slot)
        if not address or client in self._open_of_client:
            return None
        lease_id = secrets.randbelow(_LEASE_IDS) + 1
        while lease_id in self._by_id:  # (the book holds a few leases per client at most)
            lease_id = secrets.randbelow(_LEASE_IDS) + 1
        lease = Lease(lease_id, client, slot, worker, address)
        self._by_id[lease.lease_id] = lease
        self._open_of_client[client] = lease.lease_id
        return lease

    def discard(self, lease: Lease) -> None:
        """A lease granted here that the scheduler could not reserve a slot for."""
        self._drop([lease])

    def get(self, lease_id: int, client: bytes) -> Lease | None:
        """The lease if ``client`` holds it (open or closed)."""
        lease = self._by_id.get(lease_id)
        return lease if lease is not None and lease.client == client else None

    def close_worker(self, worker: bytes) -> list[Lease]:
        """The worker drains: its open leases close (their slots still answer what they took)."""
        return self._close_all([x for x in self._by_id.values() if x.worker == worker])

    def close_all(self) -> list[Lease]:
        """Tasks wait for a slot: every open lease closes."""
        return self._close_all([self._by_id[i] for i in self._open_of_client.values()])

    def close_client(self, client: bytes) -> list[Lease]:
        """The client is gone, or asks for a new lease: its open lease closes."""
        return self._close_all([x for x in self._by_id.values() if x.client == client])

    def confirm_closed(self, lease_id: int, slot: bytes) -> Lease | None:
        """``slot`` ran every direct attempt of its closed lease: the lease leaves the book."""
        lease = self._by_id.get(lease_id)
        if lease is None or lease.slot != slot or lease.open:
            return None
        return self._drop([lease])[0]

    def slot_gone(self, worker: bytes, slot: bytes) -> list[Lease]:
        """``worker`` says its slot process is gone: every lease on it ends (open or closed)."""
        gone = [x for x in self._by_id.values() if x.slot == slot and x.worker == worker]
        if gone:
            self._addresses.pop(slot, None)
        return self._drop(gone)

    def worker_gone(self, worker: bytes) -> list[Lease]:
        """The worker is removed (with its slots, as far as we know)."""
        gone = [x for x in self._by_id.values() if x.worker == worker]
        for lease in gone:
            self._addresses.pop(lease.slot, None)
        return self._drop(gone)

    def _close_all(self, leases: list[Lease]) -> list[Lease]:
        closed = [x for x in leases if x.open]
        for lease in closed:
            self._close(lease)
        return closed

    def _close(self, lease: Lease) -> None:
        lease.open = False
        if self._open_of_client.get(lease.client) == lease.lease_id:
            del self._open_of_client[lease.client]

    def _drop(self, leases: list[Lease]) -> list[Lease]:
        for lease in leases:
            self._close(lease)
            del self._by_id[lease.lease_id]
        return leases
