"""A lease that moves to another slot and back: the lane's DirectRun must reach the slot.

Found by bench/bench_monitor.py, where now and then a ``result()`` without a timeout never
returned: the client's lease went from slot A to slot B and back to A while A was busy running
tasks, and the lane's next DirectRun vanished without an error. Two libzmq behaviours together:
with ``ZMQ_IMMEDIATE`` a disconnected endpoint's pipe stays writable until its session has gone
(a message sent then is dropped), and a ROUTER that has not yet seen a peer's last connection go
refuses a new one under the same routing identity (what is sent over it is dropped). The lane
now makes a new socket, with no identity of its own, when its lease moves.

Real sockets: two ROUTERs made as a slot makes its direct endpoint, answering with the real
protocol. The first slot is not read while the lease is elsewhere, as a busy slot is not.

And the safety net, on a real cluster: a DirectRun lost on the way however it happens is sent
through the dispatcher once the slot confirms its lease closed (``LeaseEnded.settled``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import zmq

from _support.clusters import make_cluster
from _support.process_guard import eventually
from pydispatch.runtime.lane import DirectAttempt, Lane
from pydispatch.wire import protocol as p
from pydispatch.wire.transport import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Socket,
    make_socket,
    parse,
    send,
    split_envelope,
)


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _slot(context: zmq.Context[Any], address: str) -> Socket:
    sock = make_socket(context, zmq.ROUTER, max_message_size=DEFAULT_MAX_MESSAGE_SIZE)
    sock.bind(address)
    return sock


def _resolve(attempt: DirectAttempt, result: p.AttemptResult, frames: list[zmq.Frame]) -> None:
    attempt.future.set_result(result.status)


def _refused(attempt: DirectAttempt) -> None:
    attempt.future.set_exception(AssertionError("the slot refused a DirectRun"))


def _round_trip(lane: Lane, slot: Socket, lease_id: int) -> None:
    """One lone task under ``lease_id``: sent once the lane is connected, answered by ``slot``."""
    spec = p.TaskSpec(lease_id, p.KIND_CALL, p.Blob(p.INLINE, (), b""), p.Blob(p.INLINE, (), b""))
    future: Future[Any] = Future()
    attempt_ids: list[int] = []

    def sent() -> bool:  # 0 while the new connection is not made (the task would go elsewhere)
        attempt_id = lane.try_send(future, spec, [], lambda attempt: None)
        attempt_ids.append(attempt_id)
        return attempt_id != 0

    eventually(sent, f"a DirectRun under lease {lease_id} goes out")
    assert slot.poll(30_000), f"the DirectRun under lease {lease_id} reached its slot"
    client, body = split_envelope(slot.recv_multipart(copy=False), routed=True)
    message, _ = parse(body)
    assert isinstance(message, p.DirectRun)
    assert message.lease_id == lease_id
    assert message.attempt.attempt_id == attempt_ids[-1]
    send(slot, p.DirectDone(p.AttemptResult(attempt_ids[-1], "ok")), identity=client)
    lane.wait(future, attempt_ids[-1], 30.0)
    assert future.result(timeout=30) == "ok"
    assert not lane.attempts


@pytest.mark.parametrize("moves", [1, 3])
def test_a_lease_back_on_a_slot_that_was_busy_meanwhile_still_reaches_it(
    context: zmq.Context[Any], tmp_path: Path, moves: int
) -> None:
    first = _slot(context, f"ipc://{tmp_path}/a.direct")
    second = _slot(context, f"ipc://{tmp_path}/b.direct")
    lane = Lane(context, DEFAULT_MAX_MESSAGE_SIZE, _resolve, _refused)
    try:
        lease_id = 1
        lane.grant(lease_id, f"ipc://{tmp_path}/a.direct", "w0")
        _round_trip(lane, first, lease_id)
        for _ in range(moves):
            lease_id += 1
            lane.grant(lease_id, f"ipc://{tmp_path}/b.direct", "w1")
            _round_trip(lane, second, lease_id)
            lease_id += 1  # back to the first slot, which was not read meanwhile
            lane.grant(lease_id, f"ipc://{tmp_path}/a.direct", "w0")
            _round_trip(lane, first, lease_id)
    finally:
        lane.close()
        first.close(linger=0)
        second.close(linger=0)


def add(a: int, b: int = 0) -> int:
    return a + b


def test_a_direct_task_lost_on_the_way_goes_through_the_dispatcher_once_the_lease_closed() -> None:
    with make_cluster(1, 1, prefetch=0) as cluster:
        holder, other = cluster.client(), cluster.client()
        for _ in range(500):  # lone tasks until one went straight to the leased slot
            future = holder.submit(add, 1, 1)
            assert future.result(timeout=20) == 2
            if future._lane_attempt < 0:
                break
        lane = holder._lane
        lease_id = lane.lease_id
        assert lease_id, "no lease was granted"
        # Lost on the way: the slot drops a DirectRun without its lease's token without a
        # word (a guessed lease), as it would never see one lost between the two.
        lane._token = bytes(16)
        lost = holder.submit(add, 2, 3)
        assert lost._lane_attempt < 0, "expected the task to go straight to the leased slot"
        # Work of another client waits for the only slot: the dispatcher closes the lease, the
        # slot confirms (it holds nothing of it), and the holder hears it is settled.
        assert other.submit(add, 1).result(timeout=30) == 1
        assert lost.result(timeout=60) == 5
        assert not lane.attempts
        assert holder.submit(add, 7).result(timeout=30) == 7
