"""With keys, a DirectRun that reaches its slot after the lease closed is answered "refused".

The lease holder may send a lone task straight to its slot just before it hears that the
dispatcher closed the lease (other work came). Its client keeps the attempt and waits for the
slot's answer to send the task through the dispatcher instead; the slot used to drop such a
DirectRun without a word when its key held no open lease any more, and ``result()`` waited
forever. Real processes, real CURVE; the holder's second connection is a raw socket with the
holder's key, made while the lease was open (only then does the slot's ZAP handler let it in).
"""

from __future__ import annotations

from typing import Any

import zmq

from _support.process_guard import eventually
from _support.secure_cluster import SecureCluster, raw_socket
from pydispatch import Client
from pydispatch.wire import protocol as p
from pydispatch.wire.transport import dumps, parse, send, split_envelope


def square(x: int) -> int:
    return x * x


def _answer(sock: zmq.Socket[Any]) -> p.DirectDone:
    assert sock.poll(30_000), "the slot answers a DirectRun"
    _, body = split_envelope(sock.recv_multipart(copy=False), routed=False)
    done, _ = parse(body)
    assert isinstance(done, p.DirectDone)
    return done


def test_a_direct_run_under_a_closed_lease_is_answered_refused(
    secure: SecureCluster, context: zmq.Context[Any]
) -> None:
    with Client(secure.address, keys=str(secure.keys), identity="alice") as alice:
        for _ in range(500):
            future = alice.submit(square, 3)
            assert future.result(timeout=30) == 9
            if future._lane_attempt < 0:
                break
        lane = alice._lane
        lease_id, address, token = lane.lease_id, lane._address, lane._token
        assert lease_id, "no lease was granted"
        holder = raw_socket(context, address, secure.key("alice"), secure.key("worker").public)
        frames: list[Any] = []
        fn, args = dumps(square, frames), dumps(((4,), {}), frames)
        # Let in while the lease is open: a task under it runs.
        spec = p.RunSpec(-(lease_id << 32 | 1000), p.KIND_CALL, fn, args)
        send(holder, p.DirectRun(lease_id, spec, token), frames)
        done = _answer(holder)
        assert (done.refused, done.result.status) == (False, "ok")
        # Other work waits for a slot: the dispatcher closes the lease.
        burst = [alice.submit(square, i) for i in range(2000)]
        eventually(lambda: lane.lease_id != lease_id, "the dispatcher ended the lease")
        assert [f.result(timeout=60) for f in burst] == [i * i for i in range(2000)]
        # Sent again until the slot has read its LeaseClose (before, it runs the task): then
        # the answer is a refusal, never silence.
        for number in range(1001, 1101):
            spec = p.RunSpec(-(lease_id << 32 | number), p.KIND_CALL, fn, args)
            send(holder, p.DirectRun(lease_id, spec, token), frames)
            done = _answer(holder)
            assert done.result.attempt_id == spec.attempt_id
            if done.refused:
                break
        assert done.refused, "a DirectRun under the closed lease was refused"
        holder.close(linger=0)
