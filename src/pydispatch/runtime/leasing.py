"""The dispatcher's end of leases: it keeps the book, reserves the leased slots in the scheduler
and tells slots and clients.

:class:`~pydispatch.scheduling.leases.Leases` decides (which client may send lone tasks straight
to which slot); :class:`Leasing` performs: a granted lease reserves its slot in the scheduler and
is announced to the slot first (``LeaseOpen``), then to the client (``LeaseGranted``); a closed
one puts its slot back to work once the slot confirms (``LeaseClosed``); an ended one (its slot or
worker gone) tells its client which direct attempt was running. The client's end of a lease is
:mod:`~pydispatch.runtime.lane`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..scheduling import scheduler as s
from ..scheduling.leases import Lease, Leases
from ..wire import protocol as p

__all__ = ["Leasing"]

Send = Callable[[bytes, p.Message], bool]  # False: that peer is unreachable


class Leasing:
    """Grant, close and end the leases of one dispatcher (whose ``send`` it uses)."""

    def __init__(
        self, scheduler: s.Scheduler, send: Send, key_of: Callable[[bytes], str] | None = None
    ) -> None:
        self._scheduler = scheduler
        self._send = send
        # With keys: the public key a socket identity speaks with ("" without keys). A slot
        # opens a lease to its client's key only; the client checks the slot's.
        self._key_of = key_of or (lambda identity: "")
        self._book = Leases()

    @property
    def any_open(self) -> bool:
        return self._book.any_open

    def slot_endpoint(self, slot: bytes, address: str) -> None:
        """A slot said hello with this direct endpoint ("": it has none)."""
        self._book.slot_endpoint(slot, address)

    def grant(self, client: bytes, slot: bytes, worker: bytes, worker_name: str) -> None:
        """``client`` asked for a lease with a lone task that was just sent to ``slot``."""
        # A client asks only when it holds no lease: one it dropped (its slot refused it) is
        # closed here, or its slot would stay reserved for nothing.
        self.close_client(client)
        lease = self._book.grant(client, slot, worker)
        if lease is None:
            return
        if not self._scheduler.lease_slot(worker, slot):
            self._book.discard(lease)
            return
        # The slot hears first: the client's first DirectRun most likely finds the lease open
        # (if not, the slot refuses it and the client sends the task through us).
        self._send(slot, p.LeaseOpen(lease.lease_id, lease.token, self._key_of(client)))
        granted = p.LeaseGranted(
            lease.lease_id, lease.address, worker_name, lease.token, self._key_of(slot)
        )
        if not self._send(client, granted):
            self.close_client(client)

    def return_lease(self, client: bytes, lease_id: int) -> None:
        """The client gives its open lease back."""
        lease = self._book.get(lease_id, client)
        if lease is not None and lease.open:
            self.close_client(client)

    def close_client(self, client: bytes) -> None:
        """The client is gone, or asks for a new lease: its open lease closes."""
        self._close(self._book.close_client(client))

    def close_worker(self, worker: bytes) -> None:
        """The worker drains: its open leases close."""
        self._close(self._book.close_worker(worker))

    def close_all(self) -> None:
        """Tasks wait for a slot: every open lease closes (its slot goes back to work)."""
        self._close(self._book.close_all())

    def confirm_closed(self, lease_id: int, slot: bytes) -> list[s.Instruction]:
        """``slot`` ran every direct attempt of its closed lease: it takes work again."""
        lease = self._book.confirm_closed(lease_id, slot)
        if lease is None:
            return []
        # Its client hears, after the slot's answers (sent before LeaseClosed, one hop to our
        # two): a direct attempt it still waits for never reached the slot, or its answer was
        # lost. Without this, its future would wait forever.
        self._send(lease.client, p.LeaseEnded(lease.lease_id, settled=True))
        return self._scheduler.unlease_slot(lease.worker, lease.slot)

    def kill_direct(self, client: bytes, lease_id: int, attempt_id: int) -> None:
        """Force-cancel a direct attempt the client sent under this lease."""
        lease = self._book.get(lease_id, client)
        if lease is None or attempt_id >= 0 or -attempt_id >> 32 != lease_id:
            return  # its slot is gone already (the client hears of it), or nonsense
        # As for a dispatcher attempt: the slot skips it if not started, and its worker kills
        # the slot if running it (the slot's loss then ends the lease, naming the attempt).
        self._send(lease.slot, p.Kill([attempt_id]))
        self._send(lease.worker, p.Kill([attempt_id]))

    def slot_gone(
        self, worker: bytes, slot: bytes, running: int, status: p.Status, error: str
    ) -> None:
        """``worker`` says its slot is gone (``running``: the attempt it ran, and how it ended)."""
        self._end(self._book.slot_gone(worker, slot), running, status, error)

    def worker_gone(self, worker: bytes, reason: str) -> None:
        """The worker is removed, with its slots."""
        self._end(self._book.worker_gone(worker), 0, "lost", reason)

    def _close(self, leases: list[Lease]) -> None:
        """Closed: their slots refuse new direct attempts, answer those they took, then say
        LeaseClosed (and get work again); their clients send through us again."""
        for lease in leases:
            self._scheduler.close_lease(lease.worker, lease.slot)
            self._send(lease.slot, p.LeaseClose(lease.lease_id))
            self._send(lease.client, p.LeaseEnded(lease.lease_id))

    def _end(self, leases: list[Lease], running: int, status: p.Status, error: str) -> None:
        """These leases' slots are gone: each client hears which of its direct attempts was
        running (with its outcome); the others it sent there never started."""
        for lease in leases:
            if running < 0 and -running >> 32 == lease.lease_id:
                ended = p.LeaseEnded(lease.lease_id, running, status, error)
                if status != "lost":  # killed by a forced cancel, or crashed by the task
                    self._scheduler.count_direct(
                        cancelled=status == "cancelled", failed=status == "failed"
                    )
            else:
                ended = p.LeaseEnded(lease.lease_id, 0, "lost", error)
            self._send(lease.client, ended)
