"""An administrator's requests to the dispatcher: drain a worker, cancel another key's tasks.

Kept apart from ``dispatcher`` (which owns the socket and the loop and hands these handlers
their messages). With keys, only an ``admin`` key may send them (``access.ALLOWED``: a client
or worker key is refused before they get here); without keys, whoever reaches the dispatcher
may, as with everything else on a loopback or ipc cluster.

A drained worker goes the way SIGTERM sends it: nothing new is placed on it, its leases end,
and once its slots are idle the dispatcher releases it (``Goodbye``) and it exits. Tasks
belong to the client connections that submitted them; a key's tasks are those of every
connection holding that key, which only a dispatcher with keys knows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zmq

from ..scheduling import scheduler as s
from ..wire import protocol as p
from .access import Access
from .leasing import Leasing

__all__ = ["AdminDesk"]

Frames = list[zmq.Frame]
Handler = Callable[[bytes, Any, Frames, float], None]


class AdminDesk:
    def __init__(
        self,
        scheduler: s.Scheduler,
        leasing: Leasing,
        worker_names: dict[bytes, str],
        access: Access | None,
        perform: Callable[[list[s.Instruction]], None],
        send: Callable[[bytes, p.Message], Any],
    ) -> None:
        self._scheduler = scheduler
        self._leasing = leasing
        self._worker_names = worker_names  # the dispatcher's own: worker identity -> name
        self._access = access
        self._perform = perform
        self._send = send

    def handlers(self) -> dict[type[Any], Handler]:
        return {p.DrainWorker: self._on_drain_worker, p.CancelTasksOf: self._on_cancel_tasks_of}

    def _on_drain_worker(self, peer: bytes, m: p.DrainWorker, frames: Frames, now: float) -> None:
        named = [
            worker
            for worker, name in self._worker_names.items()
            if m.worker in (name, worker.hex()) and self._scheduler.knows_worker(worker)
        ]
        if len(named) != 1:
            why = "no worker" if not named else f"{len(named)} workers"
            self._send(peer, p.AdminReply(False, 0, f"{why} named {m.worker!r} here"))
            return
        worker = named[0]
        self._leasing.close_worker(worker)
        self._perform(self._scheduler.drain_worker(worker, now))
        self._send(peer, p.AdminReply(True, 1, f"worker {m.worker} is draining"))

    def _on_cancel_tasks_of(
        self, peer: bytes, m: p.CancelTasksOf, frames: Frames, now: float
    ) -> None:
        if self._access is None:
            detail = "this dispatcher has no keys: tasks belong to connections, not to keys"
            self._send(peer, p.AdminReply(False, 0, detail))
            return
        connections = self._access.identities_of(m.key)
        if not connections:
            self._send(peer, p.AdminReply(False, 0, f"no client with key {m.key!r} is connected"))
            return
        wanted = set(m.task_ids)
        count = 0
        for client in connections:
            ids = [i for i in self._scheduler.task_ids_of(client) if not wanted or i in wanted]
            count += len(ids)
            if ids:
                self._perform(self._scheduler.cancel(client, ids, m.force))
        detail = f"{count} task(s) of key {m.key!r} cancelled"
        self._send(peer, p.AdminReply(True, count, detail))
