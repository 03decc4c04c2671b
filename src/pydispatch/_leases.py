"""Leases: which client may send its lone tasks straight to which slot (the direct lane).

A pure book, like the scheduler: events in, decisions out, no sockets. The dispatcher grants a
lease on the slot where a client's lone plain task was placed, if that slot has a direct
endpoint and the client holds no open lease; the client then sends its next lone tasks to the
slot itself (two hops instead of four), until the lease is closed.

Invariant: a lease stays in the book until its slot is gone (or its client is), even after it
is closed. Direct attempts the slot accepted before the close still run there, and whoever
waits for them must hear of it if the slot dies before answering: the book is how the
dispatcher knows whom to tell.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

__all__ = ["Lease", "Leases"]


@dataclass(slots=True)
class Lease:
    lease_id: int
    client: bytes
    slot: bytes
    worker: bytes
    address: str
    open: bool = True


class Leases:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._by_id: dict[int, Lease] = {}
        self._open_of_client: dict[bytes, int] = {}
        self._addresses: dict[bytes, str] = {}  # slot -> its direct endpoint

    def __len__(self) -> int:
        return len(self._by_id)

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
        lease = Lease(next(self._ids), client, slot, worker, address)
        self._by_id[lease.lease_id] = lease
        self._open_of_client[client] = lease.lease_id
        return lease

    def get(self, lease_id: int, client: bytes) -> Lease | None:
        """The lease if ``client`` holds it (open or closed)."""
        lease = self._by_id.get(lease_id)
        return lease if lease is not None and lease.client == client else None

    def close_worker(self, worker: bytes) -> list[Lease]:
        """The worker drains: its open leases close (their slots still answer what they took)."""
        closed = [x for x in self._by_id.values() if x.worker == worker and x.open]
        for lease in closed:
            self._close(lease)
        return closed

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

    def client_gone(self, client: bytes) -> list[Lease]:
        """The client is gone: its leases end (nobody is left to tell; the slots are told)."""
        return self._drop([x for x in self._by_id.values() if x.client == client])

    def _close(self, lease: Lease) -> None:
        lease.open = False
        if self._open_of_client.get(lease.client) == lease.lease_id:
            del self._open_of_client[lease.client]

    def _drop(self, leases: list[Lease]) -> list[Lease]:
        for lease in leases:
            self._close(lease)
            del self._by_id[lease.lease_id]
        return leases
