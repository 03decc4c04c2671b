"""The direct lane: lone plain tasks sent straight from a client to a leased slot.

The lease book is tested without I/O in ``tests/scheduling/test_leases.py``; the lane itself
runs here against real processes (dispatcher, workers, slots, over ipc:// and tcp://), including
the ways it can break: a slot or worker killed under a direct attempt, a forced cancel, a drain,
another client's queued work, a peer that sends garbage to a slot's direct endpoint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import cloudpickle
import pytest
import zmq

from _support.clusters import make_cluster
from _support.process_guard import eventually
from pydispatch.errors import TaskFailedError
from pydispatch.runtime.client import Client, TaskFuture
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.wire import protocol as p
from pydispatch.wire.transport import dumps, make_socket, recv, send

cloudpickle.register_pickle_by_value(sys.modules[__name__])

C1, C2 = b"client-1", b"client-2"
W1, W2 = b"worker-1", b"worker-2"
S1, S2 = b"slot-1", b"slot-2"


# ----------------------------------------------------------- real processes


def add(a: int, b: int = 0) -> int:
    return a + b


def where() -> tuple[int, int]:
    return os.getpid(), os.getppid()  # (slot, its worker)


def sleep_then(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def wait_for_file(path: str, value: Any = None) -> Any:
    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def signal_then_wait(started: str, gate: str, value: Any = None) -> Any:
    open(started, "w").close()
    return wait_for_file(gate, value)


def crash_slot() -> None:
    os._exit(3)


def leased(client: Client) -> None:
    """Run lone tasks until one went straight to a leased slot (the lease granted, and the
    connection to its slot made: until then they go through the dispatcher)."""
    for _ in range(500):
        future = client.submit(add, 1, 1)
        assert future.result(timeout=20) == 2
        if future._lane_attempt < 0:
            return
        time.sleep(0.001)
    raise AssertionError("no lease was granted")


def direct(client: Client, fn: Any, *args: Any, **kwargs: Any) -> TaskFuture:
    future = client.submit(fn, *args, **kwargs)
    assert future._lane_attempt < 0, "expected the task to go straight to the leased slot"
    return future


CLUSTER: dict[str, Any] = {"workers": 2, "slots": 1}


def test_lone_tasks_go_straight_to_the_leased_slot_and_are_counted(client: Client) -> None:
    leased(client)
    before = client.status().finished
    values = []
    for i in range(50):
        future = direct(client, add, i, 1)
        values.append(future.result(timeout=20))
        assert future.worker in ("worker-0", "worker-1")
    assert values == [i + 1 for i in range(50)]
    # Exceptions travel the lane with their remote traceback, as through the dispatcher.
    with pytest.raises(ZeroDivisionError) as caught:
        direct(client, lambda: 1 // 0).result(timeout=20)
    assert "ZeroDivisionError" in str(caught.value.__cause__)
    # The slot counts them to the dispatcher (after a short idle, never one message each).
    eventually(lambda: client.status().finished >= before + 51, "direct tasks counted")


def test_callbacks_asyncio_and_timeouts_work_on_direct_futures(client: Client) -> None:
    leased(client)
    seen: list[Any] = []
    done = threading.Event()
    future = direct(client, add, 2, 3)

    def note(f: cf.Future[Any]) -> None:
        seen.append(f.result())
        done.set()

    future.add_done_callback(note)
    assert done.wait(20)
    assert seen == [5]

    async def awaited() -> Any:
        return await direct(client, add, 4, 5)

    assert asyncio.run(awaited()) == 9
    slow = direct(client, sleep_then, 0.5, "late")
    with pytest.raises(cf.TimeoutError):
        slow.result(timeout=0.05)
    assert slow.result(timeout=20) == "late"
    (finished,), _ = cf.wait([direct(client, add, 1)], timeout=20)
    assert finished.result() == 1
    # A done-callback may submit (and wait for) the next task: the lane's lock is re-entrant.
    chained: list[Any] = []
    first = direct(client, add, 1)
    first.add_done_callback(lambda f: chained.append(client.submit(add, f.result(), 1)))
    assert first.result(timeout=20) == 1
    eventually(lambda: bool(chained), "the callback submitted")
    assert chained[0].result(timeout=20) == 2


def test_a_task_that_kills_its_leased_slot_fails_and_the_lane_recovers(client: Client) -> None:
    leased(client)
    with pytest.raises(TaskFailedError, match="exit code 3"):
        direct(client, crash_slot, retries=0).result(timeout=20)
    leased(client)  # a new lease, on the slot that replaced it or the other one
    assert direct(client, add, 40, 2).result(timeout=20) == 42


def test_force_cancel_of_a_running_direct_task_kills_its_slot(
    client: Client, tmp_path: Any
) -> None:
    leased(client)
    before = client.status().cancelled
    running = direct(client, wait_for_file, str(tmp_path / "never"))
    assert running.running()
    assert not running.cancel()
    time.sleep(0.2)  # it is running in the slot
    assert client.cancel(running, force=True)
    with pytest.raises(cf.CancelledError):
        running.result(timeout=20)
    assert client.submit(add, 41, 1).result(timeout=20) == 42
    eventually(lambda: client.status().cancelled == before + 1, "counted cancelled")


def test_a_killed_worker_under_a_direct_task_fails_it_over_exactly_once() -> None:
    with make_cluster(2, 1) as cluster:
        client = cluster.client()
        leased(client)
        _, victim = direct(client, where).result(timeout=20)
        names = {w.pid: f"worker-{i}" for i, w in enumerate(cluster.workers)}
        future = direct(client, sleep_then, 1.0, "done")
        time.sleep(0.2)
        os.kill(victim, signal.SIGKILL)
        assert future.result(timeout=30) == "done"  # run again on the other worker
        assert future.worker != names[victim]
        assert future._lane_attempt == 0  # it left the lane for the dispatcher
        # Nothing resolves twice, and lone tasks keep working (a new lease, elsewhere).
        assert [client.submit(add, i).result(timeout=20) for i in range(20)] == list(range(20))


def test_a_drained_worker_finishes_its_direct_task_and_clients_move_on() -> None:
    with make_cluster(2, 1) as cluster:
        client = cluster.client()
        leased(client)
        _, victim = direct(client, where).result(timeout=20)
        future = direct(client, sleep_then, 0.5, "finished")
        time.sleep(0.1)
        os.kill(victim, signal.SIGTERM)
        assert future.result(timeout=30) == "finished"
        eventually(lambda: client._lane.lease_id == 0 or len(client.status().workers) == 1, "")
        assert [client.submit(add, i).result(timeout=20) for i in range(20)] == list(range(20))
        eventually(lambda: len(client.status().workers) == 1, "the drained worker left")


def test_another_clients_queued_work_closes_the_lease_and_runs_after_the_direct_task(
    tmp_path: Any,
) -> None:
    with make_cluster(1, 1, prefetch=0) as cluster:
        holder, other = cluster.client(), cluster.client()
        leased(holder)
        gate, started = str(tmp_path / "gate"), str(tmp_path / "started")
        blocker = direct(holder, signal_then_wait, started, gate, "blocker")
        # (Sent before it started, the lease's closing could overtake it at the slot, which
        # would then refuse it: it would go through the dispatcher, after the others.)
        eventually(lambda: os.path.exists(started), "the direct task started")
        queued = [other.submit(add, i) for i in range(3)]
        # The holder is told its lease closed; the others wait for the slot (it is busy).
        eventually(lambda: holder._lane.lease_id == 0, "the lease closed")
        time.sleep(0.2)
        assert not any(f.done() for f in queued)
        open(gate, "w").close()
        assert blocker.result(timeout=20) == "blocker"
        assert [f.result(timeout=20) for f in queued] == [0, 1, 2]
        # The holder's lone tasks go through the dispatcher again, then lease anew.
        assert holder.submit(add, 5).result(timeout=20) == 5
        leased(holder)


def test_a_direct_endpoint_refuses_garbage_and_unopened_leases_and_keeps_serving(
    client: Client,
) -> None:
    leased(client)
    context: zmq.Context[Any] = zmq.Context()
    raw = make_socket(context, zmq.DEALER, identity=b"intruder")
    try:
        raw.connect(client._lane._address)
        raw.send_multipart([b"", b"\xc1garbage"])
        raw.send_multipart([b"no delimiter"])
        send(raw, p.ClientHello(p.PROTOCOL_VERSION))  # not a DirectRun: dropped
        frames: list[Any] = []
        fn, args = dumps(add, frames), dumps(((1, 2), {}), frames)
        forged = p.RunSpec(-(999 << 32 | 1), p.KIND_CALL, fn, args)
        send(raw, p.DirectRun(999, forged), frames)  # a lease nobody granted
        assert raw.poll(20_000)
        _, reply, _ = recv(raw, routed=False)
        assert isinstance(reply, p.DirectDone)
        assert reply.refused
        assert reply.result.attempt_id == forged.attempt_id
        assert direct(client, add, 2, 2).result(timeout=20) == 4
    finally:
        raw.close(linger=0)
        context.term()


def test_without_direct_endpoints_every_task_goes_through_the_dispatcher() -> None:
    with make_cluster(1, 1, direct=False) as cluster:
        client = cluster.client()
        assert [client.submit(add, i).result(timeout=20) for i in range(20)] == list(range(20))
        assert client._lane.lease_id == 0


def test_the_lane_works_over_tcp() -> None:
    with make_cluster(1, 1, address="tcp://127.0.0.1:0") as cluster:
        client = cluster.client()
        leased(client)
        assert client._lane._address.startswith("tcp://127.0.0.1:")
        assert direct(client, add, 1, 2).result(timeout=20) == 3


def test_a_direct_task_the_slot_refuses_goes_through_the_dispatcher(client: Client) -> None:
    # As when the lease closed while the task was on its way: the slot no longer has it open.
    # (A round in which other tasks waited closes every lease, the client's true one too, so
    # under load the submit below may find no lease at all: then lease again.)
    for _ in range(20):
        leased(client)
        client._lane.lease_id += 1000
        future = client.submit(add, 20, 22)
        if future._lane_attempt < 0:
            break
        assert future.result(timeout=20) == 42
    else:
        raise AssertionError("expected a task to go straight to the leased slot")
    assert future.result(timeout=20) == 42
    assert future._lane_attempt == 0  # it left the lane
    assert client._lane.lease_id == 0  # and the client dropped the lease the slot refused
    leased(client)


def test_outcomes_are_delivered_outside_the_lanes_lock() -> None:
    """A done-callback runs without the lane's lock held, whichever thread delivers it: one
    that waits for a task the I/O thread must read (the next task goes through the
    dispatcher: another client's work closed the lease) must not find that thread stuck on
    the lock (a done-callback that blocks the I/O thread itself stays the caller's concern,
    as for any executor)."""
    with make_cluster(1, 1, prefetch=0) as cluster:
        holder, other = cluster.client(), cluster.client()
        leased(holder)
        first = direct(holder, sleep_then, 0.5, "first")
        lock_free: list[bool] = []
        nexts: list[TaskFuture] = []

        def then(done: cf.Future[Any]) -> None:
            # (Held by this thread, the lock would never be acquired; another thread holds
            # it only for a moment.)
            free = holder._lane.lock.acquire(timeout=5)
            if free:
                holder._lane.lock.release()
            lock_free.append(free)
            nexts.append(holder.submit(add, 1, 1))

        first.add_done_callback(then)
        queued = other.submit(add, 5)
        eventually(lambda: holder._lane.lease_id == 0, "the lease closed")
        assert first.result(timeout=20) == "first"
        eventually(lambda: bool(nexts), "the callback ran")
        assert lock_free == [True]
        assert nexts[0].result(timeout=20) == 2
        assert queued.result(timeout=20) == 5


def test_only_a_slot_may_count_direct_attempts(client: Client, cluster: LocalCluster) -> None:
    context: zmq.Context[Any] = zmq.Context()
    raw = make_socket(context, zmq.DEALER, identity=b"not-a-slot")
    try:
        raw.connect(cluster.address)
        before = client.status().finished
        send(raw, p.Done([], 1000, 0))  # not a slot: not counted
        send(raw, p.Done([], 2**62, 0))  # implausible: refused
        replies = []  # (a worker the dispatcher does not know is also asked to register)
        while not any(isinstance(r, p.Error) for r in replies) and raw.poll(20_000):
            replies.append(recv(raw, routed=False)[1])
        errors = [r for r in replies if isinstance(r, p.Error)]
        assert len(errors) == 1
        assert "implausible" in errors[0].message
        assert client.status().finished == before  # and status still encodes
    finally:
        raw.close(linger=0)
        context.term()


def test_a_lease_whose_slot_cannot_be_reached_is_handed_back_and_not_asked_again() -> None:
    with make_cluster(1, 1) as cluster:
        client = cluster.client()
        # As if the slot advertised an endpoint this client cannot reach (another host's
        # loopback, a firewall): every lease it is granted points where nothing listens.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            nowhere = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
        grant = client._lane.grant
        client._lane.grant = lambda lease_id, _, worker, *rest: grant(
            lease_id, nowhere, worker, *rest
        )  # type: ignore[method-assign]
        deadline = time.monotonic() + 30
        while client._lane.usable and time.monotonic() < deadline:
            assert client.submit(add, 2, 2).result(timeout=20) == 4  # via the dispatcher
            time.sleep(0.05)
        assert not client._lane.usable
        assert [client.submit(add, i).result(timeout=20) for i in range(20)] == list(range(20))
        assert client._lane.lease_id == 0  # never asked for again


def test_direct_endpoints_fall_back_to_loopback_tcp_and_wildcards_advertise_the_host() -> None:
    from pydispatch.runtime.slot import _reachable
    from pydispatch.runtime.worker import Worker, WorkerOptions

    worker = Worker.__new__(Worker)
    worker.options, worker.address = WorkerOptions(), "ipc:///tmp/x/dispatcher"
    assert worker._direct_bind("/tmp/short/slot-0-1") == "ipc:///tmp/short/slot-0-1.direct"
    assert worker._direct_bind("/tmp/" + "d" * 120 + "/slot-0-1") == "tcp://127.0.0.1:*"
    # Over TCP: on the address the worker reaches the dispatcher from (tests/multihost).
    worker.address, worker.advertise_host = "tcp://10.0.0.1:5555", "10.0.0.2"
    assert worker._direct_bind("/tmp/short/slot-0-1") == "tcp://10.0.0.2:*"
    worker.options = WorkerOptions(data_bind="")
    assert worker._direct_bind("/tmp/short/slot-0-1") == ""
    worker.options = WorkerOptions(direct=False)
    assert worker._direct_bind("/tmp/short/slot-0-1") == ""
    assert _reachable("tcp://0.0.0.0:4242") == f"tcp://{socket.gethostname()}:4242"
    assert _reachable("tcp://127.0.0.1:4242") == "tcp://127.0.0.1:4242"
