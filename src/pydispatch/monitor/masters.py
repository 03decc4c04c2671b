"""Asking a dataflow job's master for its figures, as a job's handle does (the job plane's
``JobStatusRequest``): the monitor's per-operator metrics and job pages come from there, since
the dispatcher itself only knows each job's state (its master announces every change)."""

from __future__ import annotations

import time
from typing import Any

import zmq

from ..wire import job_plane as jp
from ..wire import transport
from ..wire.protocol import ProtocolError

__all__ = ["ask_job_status"]


def ask_job_status(
    context: zmq.Context[Any], endpoint: str, timeout: float
) -> jp.JobStatusReply | None:
    """The master's ``JobStatusReply`` at ``endpoint``, or None if it does not answer within
    ``timeout`` seconds (it exited, or is busy) or answers something else."""
    sock = transport.make_socket(context, zmq.DEALER)
    try:
        sock.connect(endpoint)
        transport.send(sock, jp.JobStatusRequest())
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            if not sock.poll(int(left * 1000) + 1):
                return None
            _, body = transport.split_envelope(sock.recv_multipart(copy=False), routed=False)
            try:
                reply, _ = transport.parse_job_reply(body)
            except ProtocolError:
                return None
            return reply if isinstance(reply, jp.JobStatusReply) else None
        return None
    finally:
        sock.close(linger=0)
