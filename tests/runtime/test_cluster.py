"""End-to-end tests with real processes: dispatcher, workers and slots over ipc:// and tcp://.

Every process a test starts is ended by pid in a fixture's ``finally`` (LocalCluster.close);
slot processes end with their worker. An environment tag inherited by every process lets the
module check at the end that nothing is left behind. Heartbeats are short here (0.1 s interval)
so fail-over tests take about a second, not minutes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import msgspec
import numpy as np
import pytest
import zmq

from _support.clusters import FAST, make_cluster
from _support.process_guard import children, eventually, slot_state_path
from pydispatch.errors import RemoteError, RemoteTraceback, TaskFailedError
from pydispatch.runtime.client import Client
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.wire import protocol as p
from pydispatch.wire.transport import loads, recv, send

# Functions defined here travel by value: slot processes cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

MAX_MESSAGE = 4 * 1024 * 1024


CLUSTER: dict[str, Any] = {
    "workers": 2,
    "slots": 2,
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 5,
    "max_message_size": MAX_MESSAGE,
}


# ------------------------------------------------------------------------ task functions


def add(a: int, b: int = 0) -> int:
    return a + b


def fail(message: str) -> None:
    raise ValueError(message)


class UnpicklableError(Exception):
    def __reduce__(self) -> Any:
        raise TypeError("no pickling")


def fail_unpicklable() -> None:
    raise UnpicklableError("cannot come back as itself")


def sleep_then(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def wait_for_file(path: str, value: Any = None) -> Any:
    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def log_to(path: str, name: str) -> str:
    with open(path, "a") as f:
        f.write(name + "\n")
    return name


def exclusive(path: str) -> str:
    """Fail if another task holding the same resource runs at the same time."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return "overlap"
    try:
        time.sleep(0.1)
    finally:
        os.close(fd)
        os.unlink(path)
    return "alone"


def worker_pid() -> int:
    return os.getppid()  # the slot's parent is its worker


# --------------------------------------------------------------------------------- basics


def test_submit_map_and_results(client: Client) -> None:
    assert client.submit(add, 2, b=3).result(timeout=20) == 5
    assert client.submit(lambda: "lambda by value").result(timeout=20) == "lambda by value"
    assert list(client.map(add, range(1000), range(1000))) == [2 * i for i in range(1000)]
    assert list(client.map(add, range(10), chunksize=3)) == list(range(10))
    assert list(client.map(add, [])) == []


def test_exceptions_carry_remote_tracebacks(client: Client) -> None:
    with pytest.raises(ValueError, match="boom") as info:
        client.submit(fail, "boom").result(timeout=20)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in fail" in cause.traceback
    assert "raise ValueError(message)" in cause.traceback
    with pytest.raises(RemoteError, match="UnpicklableError"):
        client.submit(fail_unpicklable).result(timeout=20)
    with pytest.raises(ValueError, match="boom"):
        list(client.map(fail, ["boom"]))


def test_numpy_round_trip(client: Client) -> None:
    array = np.random.default_rng(0).random(131_072)  # 1 MiB
    result = client.submit(lambda x: {"doubled": x * 2, "same": x}, array).result(timeout=20)
    np.testing.assert_array_equal(result["doubled"], array * 2)
    np.testing.assert_array_equal(result["same"], array)
    assert result["same"].flags.writeable
    matrix = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.testing.assert_array_equal(client.submit(np.transpose, matrix).result(20), matrix.T)


def test_futures_work_with_wait_as_completed_and_asyncio(client: Client) -> None:
    futures = [client.submit(add, i) for i in range(20)]
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=20)) == list(range(20))
    done, not_done = cf.wait(futures, timeout=20)
    assert len(done) == 20
    assert not not_done

    async def gather() -> list[int]:
        first = await client.submit(add, 1, 1)
        wrapped = await asyncio.wrap_future(client.submit(add, 2, 2))
        return [first, wrapped]

    assert asyncio.run(gather()) == [2, 4]


def test_client_is_a_context_manager_and_shutdown_refuses_new_work(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        future = c.submit(sleep_then, 0.2, "finished")
    assert future.result(timeout=0) == "finished"  # shutdown(wait=True) waited for it
    with pytest.raises(RuntimeError, match="after shutdown"):
        c.submit(add, 1)


def test_impossible_demands_fail_at_once_with_reason(client: Client) -> None:
    with pytest.raises(TaskFailedError, match="no registered worker could ever run") as info:
        client.submit(add, 1, resources={"gpu": 64}).result(timeout=20)
    assert "gpu=64" in str(info.value)
    with pytest.raises(TaskFailedError, match="zone=nowhere"):
        client.submit(add, 1, labels={"zone": "nowhere"}).result(timeout=20)


def test_status_cli_human_and_json(cluster: LocalCluster) -> None:
    command = [sys.executable, "-m", "pydispatch.cli", "status", cluster.address]
    data = json.loads(subprocess.run([*command, "--json"], capture_output=True, check=True).stdout)
    assert {w["name"] for w in data["workers"]} == {"worker-0", "worker-1"}
    assert data["workers"][0]["slots"] == 2
    assert data["workers"][0]["data_address"] == ""  # no data socket (it was never read)
    human = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "2 worker(s)" in human
    assert "worker-0" in human


# ----------------------------------------------------------- placement, priority, cancel


@pytest.fixture(params=[0, 4], ids=["exact", "prefetch"])
def small_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """One worker, one slot: execution order is observable; with and without prefetch."""
    with make_cluster(1, 1, prefetch=request.param) as running:
        yield running


def test_priorities_order_queued_tasks(small_cluster: LocalCluster, tmp_path: Path) -> None:
    client = small_cluster.client()
    gate, journal = str(tmp_path / "gate"), str(tmp_path / "journal")
    blocker = client.submit(wait_for_file, gate)
    eventually(blocker.running, "the blocker started")
    # With prefetch, the busy slot may queue two tasks before it has timed one: fill that
    # window first, so that the tasks below all wait at the dispatcher, whichever messages
    # bring them there (a low task arriving alone would otherwise go to the slot's window).
    fillers = [client.submit(wait_for_file, gate) for _ in range(2)]
    eventually(lambda: placed_or_queued(client) == 3, "the slot's window filled")
    low = [client.submit(log_to, journal, f"low{i}") for i in range(3)]
    high = client.submit(log_to, journal, "high", priority=10)
    eventually(lambda: placed_or_queued(client) == 7, "all seven at the dispatcher")
    Path(gate).touch()
    cf.wait([*fillers, *low, high], timeout=20)
    assert Path(journal).read_text().split() == ["high", "low0", "low1", "low2"]


def placed_or_queued(client: Client) -> int:
    status = client.status()
    return status.queued + status.running


def test_cancel_pending_and_force_cancel_running(
    small_cluster: LocalCluster, tmp_path: Path
) -> None:
    client = small_cluster.client()
    # A quick task first: once a slot has measured its tasks, it queues `prefetch` of them.
    assert client.submit(add, 0).result(timeout=20) == 0
    running = client.submit(wait_for_file, str(tmp_path / "never"))
    eventually(running.running, "the long task started")
    # With prefetch the worker takes a few more; the next one waits at the dispatcher.
    prefetched = [client.submit(add, i) for i in range(small_cluster._prefetch)]
    eventually(lambda: placed_or_queued(client) >= len(prefetched), "they reached the dispatcher")
    # Placed in the slot's queue behind the long task (or queued), they have not started.
    assert not any(f.running() for f in prefetched)
    pending = client.submit(add, 1)
    # At the dispatcher first: one cancelled before it left the client is dropped there (and
    # the dispatcher never counts it). Queued there, or (a slot's window grew meanwhile)
    # placed behind the long task: not started either way.
    # (The dispatcher does not count what went straight to a leased slot: the direct lane.)
    through_dispatcher = [f for f in (running, *prefetched, pending) if f._lane_attempt >= 0]
    eventually(
        lambda: placed_or_queued(client) >= len(through_dispatcher),
        "the last one at the dispatcher",
    )
    assert not pending.running()
    assert pending.cancel()
    assert pending.cancelled()
    assert not running.cancel()  # a running task needs force
    assert client.cancel(running, force=True)
    with pytest.raises(cf.CancelledError):
        running.result(timeout=20)
    # The slot is free again: new work runs (on a fresh slot process).
    assert client.submit(add, 41, 1).result(timeout=20) == 42
    assert [f.result(timeout=20) for f in prefetched] == list(range(len(prefetched)))
    status = client.status()
    assert status.workers[0].slots_used == 0
    assert status.cancelled == 2


def test_resources_and_labels_are_honoured(tmp_path: Path) -> None:
    with make_cluster(1, 2) as cluster:
        cluster.start_worker(name="gpu-box", slots=2, resources={"gpu": 1}, labels={"zone": "b"})
        cluster.wait_for_workers(2)
        client = cluster.client()
        lock = str(tmp_path / "gpu-lock")
        gpu = [client.submit(exclusive, lock, resources={"gpu": 1}) for _ in range(4)]
        assert [f.result(timeout=20) for f in gpu] == ["alone"] * 4
        assert {f.worker for f in gpu} == {"gpu-box"}
        zoned = [client.submit(add, i, labels={"zone": "b"}) for i in range(4)]
        cf.wait(zoned, timeout=20)
        assert {f.worker for f in zoned} == {"gpu-box"}
        # Waiting for a busy worker is not impossible: this queues, then runs.
        busy = client.submit(sleep_then, 0.3, resources={"gpu": 1})
        after = client.submit(add, 1, resources={"gpu": 1})
        assert after.result(timeout=20) == 1
        assert busy.done()


# ------------------------------------------------------------------------------ failures


@pytest.mark.slow
@pytest.mark.parametrize("prefetch", [0, 8])
def test_kill_9_worker_mid_map_every_result_exactly_once(prefetch: int) -> None:
    with make_cluster(2, 1, prefetch=prefetch) as cluster:
        client = cluster.client()
        futures = [client.submit(sleep_then, 0.02, i) for i in range(150)]
        eventually(lambda: sum(f.done() for f in futures) >= 20, "some results")
        (slot,) = children(cluster.workers[0].pid)
        state_dir = os.path.dirname(slot_state_path(slot))
        assert os.path.isdir(state_dir)
        os.kill(cluster.workers[0].pid, signal.SIGKILL)
        # Its slot notices, exits, and removes the dead worker's directory.
        eventually(lambda: not os.path.exists(state_dir), "the worker's directory removed")
        assert [f.result(timeout=30) for f in futures] == list(range(150))
        results = list(client.map(sleep_then, [0.001] * 50, range(50), chunksize=1))
        assert results == list(range(50))
        status = client.status()
        assert status.finished == 200  # no task resolved twice, none lost
        assert status.failed == 0
        assert status.retried >= 1
        assert [w.name for w in status.workers] == ["worker-1"]


def test_a_dispatcher_stopped_past_the_heartbeat_timeout_keeps_its_workers() -> None:
    # The converse: the dispatcher frozen (a GC pause, swapped out, SIGSTOP) for twice the
    # heartbeat timeout does not declare its workers lost on waking; their work goes on.
    with make_cluster(2, 1) as cluster:
        client = cluster.client()
        futures = [client.submit(sleep_then, 1.0, i) for i in range(2)]
        eventually(lambda: all(f.running() for f in futures), "both tasks running")
        dispatcher = cluster.dispatcher
        assert dispatcher is not None
        os.kill(dispatcher.pid, signal.SIGSTOP)
        try:
            time.sleep(2.0)  # FAST: a heartbeat timeout of 1 s
        finally:
            os.kill(dispatcher.pid, signal.SIGCONT)
        assert [f.result(timeout=30) for f in futures] == [0, 1]
        status = client.status()
        assert sorted(w.name for w in status.workers) == ["worker-0", "worker-1"]
        assert (status.finished, status.retried) == (2, 0)


@pytest.mark.slow
def test_sigstop_past_heartbeat_timeout_fails_over_and_discards_late_results() -> None:
    with make_cluster(2, 1) as cluster:
        client = cluster.client()
        victim = cluster.workers[0]
        # One slow task on each worker; then freeze the victim's node (the worker and its
        # slot processes, as a network partition would) while its task runs.
        futures = [client.submit(sleep_then, 0.5, i) for i in range(2)]
        eventually(lambda: all(f.running() for f in futures), "both tasks running")
        slots = children(victim.pid)
        for pid in [victim.pid, *slots]:
            os.kill(pid, signal.SIGSTOP)
        try:
            assert [f.result(timeout=30) for f in futures] == [0, 1]
            status = client.status()
            assert [w.name for w in status.workers] == ["worker-1"]
            assert status.retried == 1
            # The slot wakes first: its late result is discarded. (Woken together, the
            # worker might replace its slots on re-registering before the result goes.)
            for pid in slots:
                os.kill(pid, signal.SIGCONT)
            eventually(lambda: client.status().discarded_late_results >= 1, "late result")
        finally:
            for pid in [*slots, victim.pid]:
                os.kill(pid, signal.SIGCONT)
        # The victim registers again and gets work.
        cluster.wait_for_workers(2)
        assert client.status().finished == 2
        more = [client.submit(sleep_then, 0.05, i) for i in range(20)]
        assert [f.result(timeout=20) for f in more] == list(range(20))


@pytest.mark.slow
def test_a_stopped_worker_process_alone_is_removed_and_its_slots_results_discarded() -> None:
    """Tasks skip the worker process, so a frozen supervisor does not stop its slots' work,
    but a worker that cannot heartbeat (or kill a slot) is removed all the same: its slot's
    result, arriving after the removal, is discarded and the task runs elsewhere."""
    with make_cluster(2, 1) as cluster:
        client = cluster.client()
        victim = cluster.workers[0]
        futures = [client.submit(sleep_then, 2.0, i) for i in range(2)]
        eventually(lambda: all(f.running() for f in futures), "both tasks running")
        os.kill(victim.pid, signal.SIGSTOP)
        try:
            eventually(lambda: len(client.status().workers) == 1, "the frozen worker removed")
            assert [f.result(timeout=30) for f in futures] == [0, 1]
            eventually(lambda: client.status().discarded_late_results >= 1, "late result")
        finally:
            os.kill(victim.pid, signal.SIGCONT)
        cluster.wait_for_workers(2)
        status = client.status()
        assert status.finished == 2
        # At least the frozen worker's task; more if a loaded machine also delays worker-1's
        # heartbeats past this test's short timeout.
        assert status.retried >= 1
        assert {f.worker for f in futures} == {"worker-1"}


def test_sigterm_drains_a_worker(tmp_path: Path) -> None:
    with make_cluster(2, 1) as cluster:
        client = cluster.client()
        gate = str(tmp_path / "gate")
        long = [client.submit(wait_for_file, gate, i) for i in range(2)]
        eventually(lambda: all(f.running() for f in long), "both workers busy")
        draining = cluster.workers[0]
        draining.send_signal(signal.SIGTERM)
        eventually(lambda: any(w.draining for w in client.status().workers), "drain noticed")
        later = [client.submit(add, i) for i in range(5)]
        Path(gate).touch()
        assert [f.result(timeout=20) for f in long] == [0, 1]
        assert [f.result(timeout=20) for f in later] == list(range(5))
        assert {f.worker for f in later} == {"worker-1"}
        assert draining.wait(timeout=20) == 0
        assert [w.name for w in client.status().workers] == ["worker-1"]


def test_worker_cli_nprocs_resources_labels_and_drain() -> None:
    with make_cluster(0) as cluster:
        group = subprocess.Popen(
            [
                sys.executable, "-m", "pydispatch.cli", "worker", cluster.address,
                "--nprocs", "2", "--slots", "3", "--name", "cli",
                "--resources", "cpu=2,memory=1GiB", "--label", "zone=z",
            ]
        )  # fmt: skip
        try:
            cluster.wait_for_workers(2)
            workers = Client.status(cluster.client())
            assert sorted(w.name for w in workers.workers) == ["cli-0", "cli-1"]
            first = workers.workers[0]
            assert first.resources == {"cpu": 2.0, "memory": 2.0**30}
            assert first.labels["zone"] == "z"
            assert first.slots == 3
            group.send_signal(signal.SIGTERM)
            assert group.wait(timeout=20) == 0
        finally:
            if group.poll() is None:
                group.kill()
                group.wait()


# ---------------------------------------------------------------- hostile input, raw zmq


@pytest.fixture
def raw(cluster: LocalCluster) -> Iterator[zmq.Socket[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.address)
    try:
        yield sock
    finally:
        sock.close()
        context.term()


def exchange(sock: zmq.Socket[Any], *frames: bytes) -> p.Message:
    sock.send_multipart(list(frames))
    assert sock.poll(10_000), "the dispatcher did not answer"
    parts = sock.recv_multipart()
    assert parts[0] == b""
    return p.decode(parts[1])


def test_garbage_frames_get_error_replies(raw: zmq.Socket[Any], client: Client) -> None:
    before = client.status().protocol_errors
    hostile = [
        (b"", b"\xff\x00garbage"),
        (b"no delimiter",),
        (b"",),
        (b"", msgspec.msgpack.encode(["NoSuchKind", 1])),
        (b"", p.encode(p.ClientHello(version=999))),
        (b"", p.encode(p.Register(999, "w", "n", 1, 1))),
        (b"", p.encode(p.Submit([]))),  # no hello on this socket yet
        (b"", p.encode(p.Run([]))),  # a worker-bound message sent to the dispatcher
        (b"", p.encode(p.SlotHello(999, b"w"))),
        (b"", p.encode(p.Register(p.PROTOCOL_VERSION, "w", "n", 1, 1, slot_ids=[b"a", b"b"]))),
        (b"", p.encode(p.SlotLost(b"s", 1, "ok"))),  # a lost slot's attempt cannot be "ok"
    ]
    for frames in hostile:
        reply = exchange(raw, *frames)
        assert isinstance(reply, p.Error), frames
    refusal = exchange(raw, b"", p.encode(p.ClientHello(version=999)))
    assert isinstance(refusal, p.Error)
    assert "version 999" in refusal.message
    assert isinstance(
        exchange(raw, b"", p.encode(p.SlotHello(p.PROTOCOL_VERSION, b"w"))), p.SlotWelcome
    )
    # Still serving everyone.
    assert client.submit(add, 1, 2).result(timeout=20) == 3
    assert client.status().protocol_errors >= before + len(hostile)


def test_a_clients_sending_socket_is_the_client_and_answers_go_to_its_hello(
    cluster: LocalCluster, raw: zmq.Socket[Any]
) -> None:
    sender = raw.context.socket(zmq.DEALER)
    sender.setsockopt(zmq.LINGER, 0)
    sender.setsockopt(zmq.ROUTING_ID, b"raw-sender")
    sender.connect(cluster.address)
    try:
        hello = p.ClientHello(p.PROTOCOL_VERSION, "two sockets", b"raw-sender")
        assert isinstance(exchange(raw, b"", p.encode(hello)), p.Welcome)
        task = p.TaskSpec(5, p.KIND_CALL, p.Blob(0), p.Blob(1))
        fn, args = cloudpickle.dumps(add), cloudpickle.dumps(((2, 3), {}))
        sender.send_multipart([b"", p.encode(p.Submit([task])), fn, args])
        results: list[p.TaskResult] = []
        while not results:  # the answer comes where the hello came from, not to the sender
            assert raw.poll(10_000), "no result on the hello's socket"
            frames = raw.recv_multipart(copy=False)
            message, payload = p.decode(frames[1].bytes), frames[2:]
            if isinstance(message, p.Results):
                results = message.results
        assert results[0].task_id == 5
        assert results[0].status == "ok"
        assert results[0].value is not None
        assert loads(results[0].value, payload) == 5
        assert not sender.poll(50)
        # The same client may repeat its hello (it does, as a liveness signal)...
        again = p.ClientHello(p.PROTOCOL_VERSION, "two sockets", b"raw-sender")
        assert isinstance(exchange(raw, b"", p.encode(again)), p.Welcome)
        # ...but another client cannot claim its sender.
        with contextlib.closing(raw.context.socket(zmq.DEALER)) as other:
            other.setsockopt(zmq.LINGER, 0)
            other.connect(cluster.address)
            claim = p.ClientHello(p.PROTOCOL_VERSION, "thief", b"raw-sender")
            refusal = exchange(other, b"", p.encode(claim))
            assert isinstance(refusal, p.Error)
            assert "sender identity" in refusal.message
        # Bye from the sending socket ends the client: its sender is forgotten with it.
        sender.send_multipart([b"", p.encode(p.ClientBye())])
        eventually(lambda: _submit_refused(sender), "the sender forgotten with its client")
    finally:
        sender.close()


def _submit_refused(sender: zmq.Socket[Any]) -> bool:
    # Once forgotten, the sender is a stranger: its Submit gets "send ClientHello first",
    # answered to the sender itself.
    sender.send_multipart([b"", p.encode(p.Submit([]))])
    if not sender.poll(1000):
        return False
    message = p.decode(sender.recv_multipart()[1])
    return isinstance(message, p.Error) and "ClientHello" in message.message


def test_truncated_submit_fails_only_the_bad_tasks(raw: zmq.Socket[Any]) -> None:
    assert isinstance(exchange(raw, b"", p.encode(p.ClientHello(p.PROTOCOL_VERSION))), p.Welcome)
    fn = cloudpickle.dumps(add)
    args = cloudpickle.dumps(((1, 2), {}))
    good = p.TaskSpec(1, p.KIND_CALL, p.Blob(0), p.Blob(1))
    missing_frame = p.TaskSpec(2, p.KIND_CALL, p.Blob(0), p.Blob(7))
    short_buffer = p.TaskSpec(
        3, p.KIND_CALL, p.Blob(0), p.Blob(1, (p.BufferMeta(2, 1000, "B", (1000,)),))
    )
    raw.send_multipart(
        [b"", p.encode(p.Submit([good, missing_frame, short_buffer])), fn, args, b"x"]
    )
    outcomes: dict[int, p.TaskResult] = {}
    while len(outcomes) < 3:
        assert raw.poll(10_000)
        message = p.decode(raw.recv_multipart()[1])
        if isinstance(message, p.Results):
            outcomes.update({r.task_id: r for r in message.results})
    assert outcomes[1].status == "ok"
    assert outcomes[2].status == "failed"
    assert "frame 7" in outcomes[2].error
    assert "truncated" in outcomes[3].error


def test_oversized_message_is_dropped_and_dispatcher_keeps_serving(
    raw: zmq.Socket[Any], client: Client
) -> None:
    raw.send_multipart([b"", p.encode(p.StatusRequest()), b"\0" * (2 * MAX_MESSAGE)])
    # libzmq disconnects the sender before Python sees the message; the socket reconnects.
    reply = exchange(raw, b"", p.encode(p.StatusRequest()))
    assert isinstance(reply, p.StatusReply)
    assert client.submit(add, 2, 2).result(timeout=20) == 4


def test_tcp_on_a_free_port() -> None:
    with make_cluster(1, 1, address="tcp://127.0.0.1:*") as cluster:
        assert cluster.address.startswith("tcp://127.0.0.1:")
        assert cluster.client().submit(add, 20, 22).result(timeout=20) == 42


def crash_slot() -> None:
    os._exit(3)


def test_a_task_that_kills_its_slot_fails_and_the_slot_is_replaced(client: Client) -> None:
    with pytest.raises(TaskFailedError, match="exit code 3"):
        client.submit(crash_slot, retries=0).result(timeout=20)
    assert client.submit(add, 1, 1).result(timeout=20) == 2


def test_fair_share_a_long_job_does_not_starve_a_short_one(small_cluster: LocalCluster) -> None:
    long_job = small_cluster.client()
    short_job = small_cluster.client()
    many = [long_job.submit(sleep_then, 0.02, i) for i in range(100)]
    eventually(lambda: any(f.running() for f in many), "the long job started")
    short = short_job.submit(add, 7)
    assert short.result(timeout=20) == 7
    # The short task went ahead of the long job's queue, not after all of it.
    assert sum(f.done() for f in many) < 50
    cf.wait(many, timeout=30)


def test_drain_grace_over_requeues_unfinished_work(tmp_path: Path) -> None:
    with make_cluster(1, 1, drain_grace=0.3) as cluster:
        client = cluster.client()
        gate = str(tmp_path / "gate")
        stuck = client.submit(wait_for_file, gate, "done elsewhere")
        eventually(stuck.running, "the task started")
        cluster.start_worker(name="rescuer")
        cluster.wait_for_workers(2)
        cluster.workers[0].send_signal(signal.SIGTERM)
        assert cluster.workers[0].wait(timeout=20) == 0
        Path(gate).touch()
        assert stuck.result(timeout=20) == "done elsewhere"
        assert stuck.worker == "rescuer"


@pytest.mark.slow
def test_dispatcher_restart_workers_register_again_tasks_are_sent_again(tmp_path: Path) -> None:
    # (The client owns its tasks: see test_dispatcher_restart.py.)
    with make_cluster(2, 1) as cluster:
        client = cluster.client()
        gate = tmp_path / "gate"
        stuck = client.submit(wait_for_file, str(gate), "after the restart")
        eventually(stuck.running, "the task started")
        cluster.restart_dispatcher()
        cluster.wait_for_workers(2)
        gate.touch()
        assert stuck.result(timeout=20) == "after the restart"
        assert client.submit(add, 1, 2).result(timeout=20) == 3
        assert cluster.client().submit(add, 2, 2).result(timeout=20) == 4


def test_an_idle_client_is_known_again_after_a_dispatcher_restart() -> None:
    # Nothing outstanding across the restart: status is asked and answered on the client's
    # receiving socket, and the new dispatcher learns its sending socket from its idle hellos.
    with make_cluster(1, 1) as cluster:
        client = cluster.client()
        assert client.submit(add, 1, 1).result(timeout=20) == 2
        cluster.restart_dispatcher()
        cluster.wait_for_workers(1)
        assert client.status(timeout=20).workers

        def runs_again() -> bool:
            # One sent before that hello is refused, and fails "lost" (never hangs).
            try:
                return bool(client.submit(add, 2, 2).result(timeout=20) == 4)
            except ConnectionError:
                return False

        eventually(runs_again, "the restarted dispatcher knows the client again", timeout=20)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"priority": 1.5}, TypeError, "priority must be an integer"),
        ({"retries": "3"}, TypeError, "retries must be an integer"),
        ({"resources": {"gpu": "one"}}, TypeError, "gpu='one' is not a number"),
        ({"resources": {1: 1.0}}, TypeError, "resource names must be strings"),
        ({"labels": {"zone": 1}}, TypeError, "labels must map strings to strings"),
    ],
)
def test_bad_task_options_are_refused_at_submit_and_nothing_else_suffers(
    client: Client, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        client.submit(add, 1, 2, **options)
    # Well-typed but meaningless amounts are the dispatcher's to judge, for every client.
    for amount in (float("nan"), -1):
        with pytest.raises(TaskFailedError, match="invalid demand"):
            client.submit(add, 1, 2, resources={"gpu": amount}).result(timeout=20)
    # numpy integers are integers: they travel as such
    assert client.submit(add, 1, 2, priority=np.int64(3), retries=np.int32(1)).result(20) == 3
    assert client.submit(add, 2, 2).result(timeout=20) == 4
    client.shutdown(wait=True)  # nothing left behind: shutdown does not hang


def test_prefetched_attempts_can_be_cancelled_and_survive_a_force_cancel(tmp_path: Path) -> None:
    with make_cluster(1, 1, prefetch=4) as cluster:
        client = cluster.client()
        # A quick task first: once a slot has measured its tasks, it queues `prefetch` of them.
        assert client.submit(add, 0).result(timeout=20) == 0
        gate = str(tmp_path / "gate")
        first = client.submit(wait_for_file, gate, "first")
        queued_on_worker = [client.submit(add, i) for i in range(4)]
        eventually(first.running, "the first started")
        eventually(lambda: placed_or_queued(client) >= 4, "the others reached the dispatcher")
        client.cancel(queued_on_worker[0], force=True)  # waiting in the worker's queue
        client.cancel(first, force=True)  # running; the slot's other attempts are re-queued
        with pytest.raises(cf.CancelledError):
            first.result(timeout=20)
        with pytest.raises(cf.CancelledError):
            queued_on_worker[0].result(timeout=20)
        assert [f.result(timeout=20) for f in queued_on_worker[1:]] == [1, 2, 3]


def test_closing_the_cluster_fails_unfinished_futures(tmp_path: Path) -> None:
    with make_cluster(1) as cluster:
        client = cluster.client()
        stuck = client.submit(wait_for_file, str(tmp_path / "never"))
        eventually(stuck.running, "the task started")
    with pytest.raises(ConnectionError, match="LocalCluster was closed"):
        stuck.result(timeout=20)
    assert not client._thread.is_alive()


def test_workers_of_a_killed_worker_group_exit_by_themselves() -> None:
    with make_cluster(0) as cluster:
        command = [sys.executable, "-m", "pydispatch.cli", "worker", cluster.address]
        group = subprocess.Popen([*command, "--nprocs", "2", "--name", "orphan"])
        try:
            cluster.wait_for_workers(2)
            group.kill()
            group.wait()
            client = cluster.client()
            eventually(lambda: not client.status().workers, "the orphans stopped and left")
        finally:
            if group.poll() is None:
                group.kill()
                group.wait()


def test_map_timeout_and_shutdown_cancelling_futures(
    small_cluster: LocalCluster, tmp_path: Path
) -> None:
    client = small_cluster.client()
    gate = str(tmp_path / "gate")
    with pytest.raises(TimeoutError):
        list(client.map(wait_for_file, [gate], timeout=0.2))
    queued = [client.submit(add, i) for i in range(10)]
    client.shutdown(wait=False, cancel_futures=True)
    # Pending ones are cancelled; with prefetch up to `prefetch` may already be placed on
    # the worker (RUNNING), and those finish normally.
    cancelled = [f for f in queued if f.cancelled()]
    assert len(cancelled) >= len(queued) - small_cluster._prefetch
    Path(gate).touch()
    for i, future in enumerate(queued):
        assert future.cancelled() or future.result(timeout=20) == i
    other = small_cluster.client()
    assert other.submit(add, 5).result(timeout=20) == 5


def test_a_map_dropped_early_cancels_the_chunks_not_yet_started(
    small_cluster: LocalCluster, tmp_path: Path
) -> None:
    client = small_cluster.client()
    gate = str(tmp_path / "gate")
    paths = ["/"] + [gate] * 9  # the first chunk is ready at once, the others wait for the gate
    before = client.status().cancelled
    # (buffersize: all ten out at once; by default a map reads its input lazily)
    items = client.map(wait_for_file, paths, range(10), chunksize=1, buffersize=10)
    assert next(items) == 0
    del items  # dropped after one item: nobody wants the rest
    gc.collect()

    # The rest is cancelled: at the dispatcher (counted there), or in the client before it
    # was sent (then the dispatcher never hears of it). Nothing of it stays queued, and at
    # most the running chunk and what prefetch put behind it are still on the worker.
    def rest_cancelled() -> bool:
        status = client.status()
        counted = status.cancelled - before >= 9 - 1 - small_cluster._prefetch
        never_sent = status.queued == 0 and status.running <= 1 + small_cluster._prefetch
        return counted or never_sent

    eventually(rest_cancelled, "the rest of the map cancelled")
    Path(gate).touch()
    assert client.submit(add, 1, 1).result(timeout=20) == 2


def test_a_raw_worker_with_broken_results_fails_its_tasks_not_the_dispatcher() -> None:
    with make_cluster(0) as cluster:
        context: zmq.Context[Any] = zmq.Context()
        fake = context.socket(zmq.DEALER)
        fake.setsockopt(zmq.LINGER, 0)
        fake.setsockopt(zmq.ROUTING_ID, b"fake")
        fake.connect(cluster.address)
        try:
            # A worker that is its own (only) slot: tasks come to this socket.
            register = p.Register(p.PROTOCOL_VERSION, "fake", "node", 1, 1, slot_ids=[b"fake"])
            assert isinstance(exchange(fake, b"", p.encode(register)), p.Registered)
            client = cluster.client()
            future = client.submit(add, 1, 2)
            assert fake.poll(10_000)
            run = p.decode(fake.recv_multipart()[1])
            assert isinstance(run, p.Run)
            (spec,) = run.attempts
            broken = p.AttemptResult(spec.attempt_id, "ok", p.Blob(9))
            fake.send_multipart([b"", p.encode(p.Done([broken]))])
            with pytest.raises(TaskFailedError, match="protocol error in the worker's result"):
                future.result(timeout=20)
            assert isinstance(exchange(fake, b"", b"\x00garbage"), p.Error)
            # A late duplicate for the same attempt is discarded, and everyone is still served.
            fake.send_multipart([b"", p.encode(p.Done([broken]))])
            eventually(lambda: client.status().discarded_late_results == 1, "duplicate dropped")
        finally:
            fake.close()
            context.term()


def test_client_without_a_dispatcher_fails_to_connect(tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match="no dispatcher answered"):
        Client(f"ipc://{tmp_path}/nobody", connect_timeout=0.3)


def test_force_cancel_inside_a_slot_batch_runs_nothing_twice(tmp_path: Path) -> None:
    with make_cluster(1, 1, prefetch=4) as cluster:
        client = cluster.client()
        gate, journal = str(tmp_path / "gate"), str(tmp_path / "journal")
        # Submitted together, the five reach the idle slot as one batch.
        first = client.submit(wait_then_log, gate, journal, "first")
        rest = [client.submit(log_to, journal, f"t{i}") for i in range(4)]
        eventually(lambda: Path(journal).exists(), "the batch started")
        client.cancel(rest[1], force=True)  # batched behind the running one: skipped
        with pytest.raises(cf.CancelledError):
            rest[1].result(timeout=20)
        client.cancel(rest[3], force=True)
        with pytest.raises(cf.CancelledError):
            rest[3].result(timeout=20)
        Path(gate).touch()
        assert first.result(timeout=20) == "first"
        assert [rest[i].result(timeout=20) for i in (0, 2)] == ["t0", "t2"]
        assert Path(journal).read_text().split() == ["started", "first", "t0", "t2"]


def wait_then_log(gate: str, journal: str, name: str) -> str:
    log_to(journal, "started")
    wait_for_file(gate)
    return log_to(journal, name)


def test_a_slow_task_does_not_hold_back_results_batched_before_it(tmp_path: Path) -> None:
    with make_cluster(1, 1, prefetch=4) as cluster:
        client = cluster.client()
        assert [f.result(timeout=20) for f in [client.submit(add, i) for i in range(20)]] == list(
            range(20)
        )  # `add` is known to be quick on the slot now: its results may be batched
        gate = str(tmp_path / "gate")
        quick = [client.submit(add, i) for i in range(3)]
        slow = client.submit(wait_for_file, gate, "slow")
        assert [f.result(timeout=20) for f in quick] == [0, 1, 2]
        assert not slow.done()
        Path(gate).touch()
        assert slow.result(timeout=20) == "slow"


def test_a_worker_started_before_its_dispatcher_registers_when_it_comes_up(
    tmp_path: Path,
) -> None:
    address = f"ipc://{tmp_path}/later"
    cli = [sys.executable, "-m", "pydispatch.cli"]
    worker = subprocess.Popen([*cli, "worker", address, "--name", "early", "--slots", "2"])
    dispatcher = None
    try:
        time.sleep(0.5)  # the worker and its slots are up, knocking at an empty address
        assert worker.poll() is None
        dispatcher = subprocess.Popen(
            [*cli, "dispatcher", "--bind", address], stdout=subprocess.DEVNULL
        )
        with Client(address) as client:
            eventually(lambda: len(client.status().workers) == 1, "the early worker registered")
            (status,) = client.status().workers
            assert (status.name, status.slots) == ("early", 2)
            assert client.submit(add, 20, 22).result(timeout=20) == 42
    finally:
        for process in (worker, dispatcher):
            if process is not None:
                process.terminate()
                process.wait(timeout=20)


def test_an_unreachable_slot_is_dropped_its_work_requeued_and_its_worker_told() -> None:
    with make_cluster(0) as cluster:
        context: zmq.Context[Any] = zmq.Context()
        fake = context.socket(zmq.DEALER)
        fake.setsockopt(zmq.LINGER, 0)
        fake.connect(cluster.address)
        try:
            # A worker whose only slot never connects to the dispatcher.
            register = p.Register(p.PROTOCOL_VERSION, "fake", "node", 1, 1, slot_ids=[b"ghost"])
            assert isinstance(exchange(fake, b"", p.encode(register)), p.Registered)
            client = cluster.client()
            future = client.submit(add, 1, 2)
            assert fake.poll(10_000)
            replace = p.decode(fake.recv_multipart()[1])
            assert replace == p.ReplaceSlot(b"ghost")
            # The dispatcher places nothing more there; it waits for the worker to say what
            # the slot was running (nothing: the task never reached it).
            time.sleep(0.3)
            assert not future.done()
            lost = p.SlotLost(b"ghost", 0, "lost", "the dispatcher could not reach its slot")
            fake.send_multipart([b"", p.encode(lost)])
            # The task went back to the queue, whole (no attempt used up): a real worker runs it.
            cluster.start_worker(name="real")
            assert future.result(timeout=20) == 3
            assert future.worker == "real"
            status = client.status()
            assert (status.finished, status.failed, status.retried) == (1, 0, 0)
        finally:
            fake.close()
            context.term()


def test_a_worker_whose_slots_are_refused_exits_with_the_reason(tmp_path: Path) -> None:
    address = f"ipc://{tmp_path}/refusing"
    context: zmq.Context[Any] = zmq.Context()
    stand_in = context.socket(zmq.ROUTER)  # a dispatcher that speaks another version
    stand_in.setsockopt(zmq.LINGER, 0)
    stand_in.bind(address)
    worker = subprocess.Popen(
        [sys.executable, "-m", "pydispatch.cli", "worker", address, "--name", "refused"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while worker.poll() is None and time.monotonic() < deadline:
            if stand_in.poll(100):
                identity, *_ = stand_in.recv_multipart()
                refusal = p.Error("protocol", "protocol version 2 is not supported")
                stand_in.send_multipart([identity, b"", p.encode(refusal)])
        assert worker.wait(timeout=20) != 0
        assert worker.stderr is not None
        assert "refused this worker's slots" in worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        stand_in.close()
        context.term()


def test_a_worker_heartbeats_at_once_at_the_pace_its_registration_tells(tmp_path: Path) -> None:
    # A dispatcher with a short timeout (here 0.5 s) tells a short interval when the worker
    # registers: the worker must follow it at once, not after the 1 s it waits by default
    # first (a worker used to be declared lost just after registering).
    address = f"ipc://{tmp_path}/stand-in"
    context: zmq.Context[Any] = zmq.Context()
    stand_in = context.socket(zmq.ROUTER)
    stand_in.setsockopt(zmq.LINGER, 0)
    stand_in.bind(address)
    worker = subprocess.Popen(
        [sys.executable, "-m", "pydispatch.cli", "worker", address, "--name", "paced"],
        stderr=subprocess.DEVNULL,
    )
    try:
        registered_at: float | None = None
        heartbeats: list[float] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            registered_at is None or time.monotonic() < registered_at + 0.8
        ):
            if not stand_in.poll(50):
                continue
            identity, message, _ = recv(stand_in, routed=True)
            if isinstance(message, p.SlotHello):
                send(stand_in, p.SlotWelcome(), identity=identity)
            elif isinstance(message, p.Register):
                send(stand_in, p.Registered(0.05, 0.5, "epoch"), identity=identity)
                registered_at = time.monotonic()
            elif isinstance(message, p.Heartbeat):
                heartbeats.append(time.monotonic())
        assert registered_at is not None, "the worker never registered"
        # 0.8 s at 0.05 s: about 16 (none came before the first second, then).
        assert len([t for t in heartbeats if t < registered_at + 0.8]) >= 4
    finally:
        worker.kill()
        worker.wait()
        stand_in.close()
        context.term()


def test_a_usually_quick_function_turning_slow_does_not_hold_back_earlier_results(
    tmp_path: Path,
) -> None:
    with make_cluster(1, 1, prefetch=4) as cluster:
        client = cluster.client()
        there = str(tmp_path / "there")
        Path(there).touch()
        warm = [client.submit(wait_for_file, there, i) for i in range(20)]
        assert [f.result(timeout=20) for f in warm] == list(range(20))  # quick so far
        gate = str(tmp_path / "gate")
        # Sent together, queued on the one slot: it holds the first result for the next call
        # of the same (so far quick) function, which now waits for the gate; the late flusher
        # sends it. Those behind the slow one wait for it, as they must on one slot.
        first = client.submit(wait_for_file, there, "first")
        slow = client.submit(wait_for_file, gate, "slow")
        behind = [client.submit(wait_for_file, there, i) for i in range(3)]
        assert first.result(timeout=20) == "first"
        assert not slow.done()
        Path(gate).touch()
        assert slow.result(timeout=20) == "slow"
        assert [f.result(timeout=20) for f in behind] == [0, 1, 2]


_DOOMED_CLIENT = """
import os, sys, time
from pydispatch.runtime.client import Client

def wait_for_file(path, value=None):
    while not os.path.exists(path):
        time.sleep(0.01)
    return value

client = Client(sys.argv[1])
running = client.submit(wait_for_file, sys.argv[2], "running")
queued = [client.submit(wait_for_file, sys.argv[2], i) for i in range(20)]
while not running.running():
    time.sleep(0.01)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_a_vanished_clients_queued_tasks_are_dropped_and_a_live_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    options: dict[str, Any] = {**FAST, "client_timeout": 1.0}
    with LocalCluster(workers=1, slots=1, prefetch=0, **options) as cluster:
        gate = str(tmp_path / "gate")
        doomed = subprocess.Popen(
            [sys.executable, "-c", _DOOMED_CLIENT, cluster.address, gate],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert doomed.stdout is not None
            assert doomed.stdout.readline().strip() == "ready"
            live = cluster.client()
            mine = [live.submit(add, i) for i in range(3)]  # queued behind the doomed one
            time.sleep(2.5)  # past the timeout: the live client's hellos keep its tasks
            assert not any(f.done() for f in mine)
            assert live.status().queued == 23
            doomed.kill()
            doomed.wait()
            eventually(lambda: live.status().queued == 3, "the vanished client's tasks dropped")
            assert live.status().failed == 0  # dropped, not failed (see drop_queued)
            Path(gate).touch()  # the vanished client's running task finishes unobserved
            assert [f.result(timeout=20) for f in mine] == [0, 1, 2]
        finally:
            if doomed.poll() is None:
                doomed.kill()
                doomed.wait()
