"""Sending frames through a real zmq socket pair, for the protocol tests."""

from __future__ import annotations

import uuid

import zmq

from pydispatch.wire import transport


def through_zmq(frames: list[transport.FrameLike]) -> list[zmq.Frame]:
    """``frames`` as a peer receives them (zero-copy frames), over an inproc PAIR."""
    context = zmq.Context()
    a, b = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    endpoint = f"inproc://{uuid.uuid4().hex}"
    try:
        a.bind(endpoint)
        b.connect(endpoint)
        a.send_multipart(frames, copy=False)
        return b.recv_multipart(copy=False)
    finally:
        a.close()
        b.close()
        context.term()
