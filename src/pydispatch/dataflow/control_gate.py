"""Who may say what on a job master's control socket, with keys (private).

The socket serves CURVE with the job's own key pair (issued by the dispatcher: see
``runtime.access.JobKeys``) and its ZAP handler lets in three kinds of keys only: the job's
(its slices, which report), its owner's and the admins' (which ask for status and result, and
cancel). Each message is checked against its sender's kind before the master handles it; a
refusal is logged once per key. Without keys the socket is plain and every message is taken,
as on an embedded cluster's loopback.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import zmq

from ..wire import job_plane as jp
from ..wire.security import Gate, JobCredentials, peer_key, serve_curve

__all__ = ["OWNER_SAYS", "SLICE_SAYS", "ControlGate"]

log = logging.getLogger(__name__)

#: What the job's slices (the job's key) may send, and its owner and the admins.
SLICE_SAYS: Final = (
    jp.SliceReady,
    jp.SliceMetrics,
    jp.SliceFailed,
    jp.CheckpointAck,
    jp.CheckpointDeclined,
)
OWNER_SAYS: Final = (jp.JobCancel, jp.JobStatusRequest, jp.JobResultRequest, jp.SavepointRequest)
_REMEMBERED: Final = 4096  # keys whose refusal was logged


class ControlGate:
    """Set ``sock`` (not bound yet) up for ``credentials`` (None: no keys); :meth:`stop` before
    the context is terminated."""

    def __init__(
        self,
        context: zmq.Context[Any],
        sock: zmq.Socket[Any],
        credentials: JobCredentials | None,
        job_id: str,
    ) -> None:
        self._job_id = job_id
        self._roles: dict[str, tuple[type, ...]] = {}
        self._refused: set[str] = set()
        self._malformed: set[str] = set()
        self._gate: Gate | None = None
        self.secure = credentials is not None
        if credentials is not None:
            self._roles = dict.fromkeys(credentials.admins, OWNER_SAYS)
            if credentials.owner:
                self._roles[credentials.owner] = OWNER_SAYS
            self._roles[credentials.public] = SLICE_SAYS
            self._gate = Gate(context, self._roles.__contains__, f"job {job_id}")
            serve_curve(sock, credentials.public, credentials.secret)

    def sender(self, frame: zmq.Frame) -> str | None:
        """The key a message came with, or None (logged once) if it may say nothing here."""
        key = peer_key(frame)
        if self.secure and key not in self._roles:
            self._refuse(key, "its key is not accepted here")  # (ZAP let it in: raced)
            return None
        return key

    def allows(self, key: str, message: jp.JobMessage) -> bool:
        if not self.secure or isinstance(message, self._roles[key]):
            return True
        self._refuse(key, f"{type(message).__name__} is not its to send")
        return False

    def malformed(self, key: str, error: str) -> None:
        """A message from ``key`` could not be decoded: logged once per key (a peer's bug, or
        a flood: either way one line says who)."""
        if key not in self._malformed and len(self._malformed) < _REMEMBERED:
            self._malformed.add(key)
            log.error(
                "job %s dropped a malformed control message from key %s: %s (logged once per key)",
                self._job_id,
                key or "(none: no keys)",
                error,
                extra={"job_id": self._job_id},
            )

    def stop(self) -> None:
        if self._gate is not None:
            self._gate.stop()

    def _refuse(self, key: str, reason: str) -> None:
        if key not in self._refused and len(self._refused) < _REMEMBERED:
            self._refused.add(key)
            log.warning("job %s refused a message from key %s: %s", self._job_id, key, reason)
