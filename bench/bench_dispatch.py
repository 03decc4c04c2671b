"""Dispatch benchmarks: pydispatch side by side with its peers, measured in the same run.

pydispatch runs as ``LocalCluster(workers=2, slots=1)`` (default prefetch); benchmark (a)
also measures ``prefetch=0`` (exact priorities and fair share) and ``prefetch=16``.

Run: ``PYTHONPATH=src python -m pytest bench/bench_dispatch.py -q -s --benchmark-disable-gc``
(``-s`` shows the ratio lines). Each benchmark times pydispatch with pytest-benchmark and the
baseline(s) in the same process right before, then prints ``pydispatch vs peer`` ratios.
Peers that are not installed (dask.distributed, ipyparallel, ray) are skipped with a message.

Environment knobs: ``PYDISPATCH_BENCH_QUEUED`` (tasks queued for the memory benchmark,
default 200,000; the issue's figure is 1,000,000).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import gc
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import numpy as np
import pytest
import zmq

from pydispatch.runtime.client import Client
from pydispatch.runtime.cluster import LocalCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

WORKERS = 2
N_NOOP = 10_000
N_MAP = 100_000
N_ARRAYS = 200
ROUND_TRIPS = 2_000
PEER_SETTLE = 3.0  # seconds


def noop(x: Any = None) -> Any:
    return x


def square(x: int) -> int:
    return x * x


def checksum(a: np.ndarray) -> float:
    return float(a[0])


def report(
    name: str, ours: float, peers: dict[str, float], unit: str, higher_is_better: bool
) -> None:
    line = [f"\n[{name}] pydispatch {ours:,.1f} {unit}"]
    for peer, value in peers.items():
        ratio = ours / value if higher_is_better else value / ours
        line.append(f"{peer} {value:,.1f} {unit} (pydispatch is {ratio:.2f}x)")
    print(" | ".join(line))


_IPC_DIRS: list[str] = []


def _ipc_dir() -> str:
    """A private directory for this module's ipc:// sockets, removed when the module ends
    (a killed subprocess leaves its socket file behind)."""
    if not _IPC_DIRS:
        _IPC_DIRS.append(tempfile.mkdtemp(prefix="pydispatch-bench-"))
    return _IPC_DIRS[0]


@pytest.fixture(scope="module", autouse=True)
def _remove_ipc_dir() -> Iterator[None]:
    yield
    for path in _IPC_DIRS:
        shutil.rmtree(path, ignore_errors=True)
    _IPC_DIRS.clear()


@pytest.fixture
def no_gc() -> Iterator[None]:
    """What ``--benchmark-disable-gc`` does for the benchmarks, for the peer comparisons
    (plain tests): a collection over pytest's whole heap would time neither side."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peer_seconds(fn: Callable[[], Any], rounds: int = 3) -> float:
    """A peer measured as pydispatch is: once to warm up, then the median of ``rounds``."""
    fn()
    return statistics.median(timed(fn) for _ in range(rounds))


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(workers=WORKERS, slots=1) as running:
        yield running


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    c = cluster.client()
    c.submit(noop).result()
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    with multiprocessing.get_context("fork").Pool(WORKERS) as p:
        p.map(noop, range(100))
        yield p


@pytest.fixture(scope="module")
def process_pool() -> Iterator[cf.ProcessPoolExecutor]:
    with cf.ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork")) as ex:
        list(ex.map(noop, range(100)))
        yield ex


def _submit_gather(executor: Any) -> None:
    futures = [executor.submit(noop, i) for i in range(N_NOOP)]
    for f in futures:
        f.result()


def _pool_apply_gather(p: Any) -> None:
    results = [p.apply_async(noop, (i,)) for i in range(N_NOOP)]
    for r in results:
        r.get()


# ---------------------------------------------------------------- (a) no-op throughput


def bench_a_noop_tasks_submit_then_gather(
    benchmark: Any, client: Client, pool: Any, process_pool: cf.ProcessPoolExecutor
) -> None:
    peers = {
        "multiprocessing.Pool": N_NOOP / peer_seconds(lambda: _pool_apply_gather(pool)),
        "ProcessPoolExecutor": N_NOOP / peer_seconds(lambda: _submit_gather(process_pool)),
    }
    for prefetch in (0, 16):
        with (
            LocalCluster(workers=WORKERS, slots=1, prefetch=prefetch) as variant,
            variant.client() as variant_client,
        ):
            _submit_gather(variant_client)
            rate = N_NOOP / timed(functools.partial(_submit_gather, variant_client))
            peers[f"pydispatch prefetch={prefetch}"] = rate
    benchmark.pedantic(_submit_gather, args=(client,), rounds=3, iterations=1, warmup_rounds=1)
    report("a: 10k no-op tasks", N_NOOP / benchmark.stats["median"], peers, "tasks/s", True)


# ---------------------------------------------------------------- (b) round-trip latency


def _raw_zmq_round_trips(n: int) -> list[float]:
    """The practical limit: a REQ-like loop between two processes over ipc, no framework."""
    context = zmq.Context()
    address = f"ipc://{_ipc_dir()}/echo"
    server = context.socket(zmq.DEALER)
    server.bind(address)
    ready = threading.Event()

    def echo() -> None:
        import subprocess

        code = (
            "import zmq,sys\n"
            "s=zmq.Context().socket(zmq.DEALER); s.connect(sys.argv[1]); s.send(b'up')\n"
            "while True:\n"
            "    m=s.recv()\n"
            "    if m==b'stop': break\n"
            "    s.send(m)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", code, address])
        ready.set()
        proc.wait()

    thread = threading.Thread(target=echo)
    thread.start()
    ready.wait()
    server.recv()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        server.send(b"x" * 64)
        server.recv()
        samples.append(time.perf_counter() - start)
    server.send(b"stop")
    thread.join()
    server.close(linger=0)
    context.term()
    return samples


_BROKER = """
import sys, zmq
sock = zmq.Context().socket(zmq.ROUTER)
sock.bind(sys.argv[1])
worker = client = None
while True:
    identity, body = sock.recv_multipart()
    if body == b"worker":
        worker = identity
    elif body == b"stop":
        break
    elif identity == worker:
        sock.send_multipart([client, body])
    else:
        client = identity
        sock.send_multipart([worker, body])
"""

_ECHO_WORKER = """
import sys, zmq
sock = zmq.Context().socket(zmq.DEALER)
sock.connect(sys.argv[1])
sock.send(b"worker")
while True:
    sock.send(sock.recv())
"""


def _brokered_round_trips(n: int) -> list[float]:
    """The floor of any design with a dispatcher between client and worker: the same loop,
    but through a pyzmq ROUTER that forwards each message (four hops, no work at all)."""
    import subprocess

    address = f"ipc://{_ipc_dir()}/broker"
    broker = subprocess.Popen([sys.executable, "-c", _BROKER, address])
    worker = subprocess.Popen([sys.executable, "-c", _ECHO_WORKER, address])
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.connect(address)
    samples = []
    try:
        time.sleep(0.3)  # both connected
        for i in range(n + 100):
            start = time.perf_counter()
            sock.send(b"x" * 64)
            if not sock.poll(5000):
                raise RuntimeError("the pyzmq broker loop did not answer")
            sock.recv()
            if i >= 100:
                samples.append(time.perf_counter() - start)
        sock.send(b"stop")
        broker.wait(timeout=10)
    finally:
        for proc in (broker, worker):
            proc.kill()
            proc.wait()
        sock.close(linger=0)
        context.term()
    return samples


def bench_b_round_trip_latency(benchmark: Any, client: Client) -> None:
    raw = _raw_zmq_round_trips(ROUND_TRIPS)
    brokered = _brokered_round_trips(ROUND_TRIPS)
    samples: list[float] = []

    def one() -> None:
        start = time.perf_counter()
        client.submit(noop, 1).result()
        samples.append(time.perf_counter() - start)

    benchmark.pedantic(one, rounds=ROUND_TRIPS, iterations=1)
    assert client._lane.lease_id, "lone tasks should have gone straight to a leased slot"
    floor = _client_floor_round_trips(ROUND_TRIPS)
    relayed = _dispatcher_path_round_trips(ROUND_TRIPS)
    ours = np.percentile(samples, [50, 99]) * 1e6
    theirs = np.percentile(raw, [50, 99]) * 1e6
    bare = np.percentile(floor, [50, 99]) * 1e6
    via = np.percentile(brokered, [50, 99]) * 1e6
    hops = np.percentile(relayed, [50, 99]) * 1e6
    print(
        f"\n[b: round trip] pydispatch p50 {ours[0]:.0f} us p99 {ours[1]:.0f} us | raw pyzmq "
        f"p50 {theirs[0]:.0f} us p99 {theirs[1]:.0f} us (p50 ratio {ours[0] / theirs[0]:.1f}x) | "
        f"pydispatch through the dispatcher (workers --no-direct) p50 {hops[0]:.0f} us "
        f"p99 {hops[1]:.0f} us ({hops[0] / theirs[0]:.1f}x raw) | "
        f"raw pyzmq through a forwarding broker p50 {via[0]:.0f} us p99 {via[1]:.0f} us "
        f"({via[0] / theirs[0]:.1f}x raw) | "
        f"our Client against a dispatcher that answers at once p50 {bare[0]:.0f} us "
        f"p99 {bare[1]:.0f} us"
    )


def _dispatcher_path_round_trips(n: int) -> list[float]:
    """The same loop with no direct lane: every task through the dispatcher (four hops)."""
    with LocalCluster(workers=WORKERS, slots=1, direct=False) as relayed, relayed.client() as c:
        return _lone_round_trips(c, n)


def _lone_round_trips(client: Client, n: int) -> list[float]:
    """``n`` timed round trips of one no-op task at a time, after 100 untimed ones."""
    for _ in range(100):
        client.submit(noop, 1).result()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        client.submit(noop, 1).result()
        samples.append(time.perf_counter() - start)
    return samples


_INSTANT_DISPATCHER = """
import sys, zmq
from pydispatch.wire import protocol as p
from pydispatch.wire.transport import make_socket, parse, send, split_envelope
sock = make_socket(zmq.Context(), zmq.ROUTER)
sock.bind(sys.argv[1])
senders = {}  # a client's sending socket -> the socket it listens on
while True:
    parts = sock.recv_multipart(copy=False)
    identity, body = split_envelope(parts, routed=True)
    identity = senders.get(identity, identity)
    message, _ = parse(body)
    if isinstance(message, p.ClientHello):
        senders[message.sender] = identity
        send(sock, p.Welcome(p.PROTOCOL_VERSION, 1, "bench"), identity=identity)
    elif isinstance(message, p.Submit):
        done = [p.TaskResult(t.task_id, "ok") for t in message.tasks]
        send(sock, p.Results(done, [t.task_id for t in message.tasks]), identity=identity)
    elif isinstance(message, p.ClientBye):
        break
"""


def _client_floor_round_trips(n: int) -> list[float]:
    """Round trips of our Client against a stand-in that answers every Submit at once: what
    the client alone (its I/O thread, pickling, futures) adds to the raw pyzmq loop."""
    import subprocess

    address = f"ipc://{_ipc_dir()}/floor"
    stand_in = subprocess.Popen([sys.executable, "-c", _INSTANT_DISPATCHER, address])
    try:
        with Client(address) as bare:
            return _lone_round_trips(bare, n)
    finally:
        stand_in.wait(timeout=10)


# ---------------------------------------------------------------- (c) map over small items


def bench_c_map_small_items(benchmark: Any, client: Client, pool: Any) -> None:
    items = list(range(N_MAP))
    pool_rate = N_MAP / peer_seconds(lambda: pool.map(square, items))
    result = benchmark.pedantic(
        lambda: list(client.map(square, items)), rounds=3, iterations=1, warmup_rounds=1
    )
    assert result[-1] == (N_MAP - 1) ** 2
    ours = N_MAP / benchmark.stats["median"]
    report("c: map 100k items", ours, {"multiprocessing.Pool.map": pool_rate}, "items/s", True)


# ---------------------------------------------------------------- (d) 1 MB numpy arguments


def bench_d_numpy_arguments(
    benchmark: Any, client: Client, process_pool: cf.ProcessPoolExecutor
) -> None:
    arrays = [np.full(131_072, i, dtype=np.float64) for i in range(N_ARRAYS)]  # 1 MiB each
    megabytes = sum(a.nbytes for a in arrays) / 1e6

    def run(executor: Any) -> None:
        futures = [executor.submit(checksum, a) for a in arrays]
        assert [f.result() for f in futures] == [float(i) for i in range(N_ARRAYS)]

    # Both warmed once: the first batch of 200 MiB page-faults its buffers in, everywhere.
    peer = megabytes / peer_seconds(lambda: run(process_pool))
    benchmark.pedantic(run, args=(client,), rounds=3, iterations=1, warmup_rounds=1)
    ours = megabytes / benchmark.stats["median"]
    report("d: 200 x 1 MiB numpy args", ours, {"ProcessPoolExecutor": peer}, "MB/s", True)


# ------------------------------------------------------- (a)-(d) with CURVE on and off


@pytest.fixture(scope="module")
def secure_client() -> Iterator[Client]:
    """A client of a cluster like ``cluster``'s with keys: CurveZMQ on every socket (and the
    dispatcher checking each message's key and role)."""
    with LocalCluster(workers=WORKERS, slots=1, keys=True) as secure:
        c = secure.client()
        c.submit(noop).result()
        yield c
        c.shutdown()


def _interleaved(
    off: Callable[[], Any], on: Callable[[], Any], rounds: int = 3
) -> tuple[float, float]:
    """Median seconds of ``off`` and ``on``, measured alternately after one warm-up each (so
    that a drift of the shared machine falls on both)."""
    off()
    on()
    offs, ons = [], []
    for _ in range(rounds):
        offs.append(timed(off))
        ons.append(timed(on))
    return statistics.median(offs), statistics.median(ons)


def _lone_p50(client: Client, n: int = ROUND_TRIPS) -> float:
    return float(np.percentile(_lone_round_trips(client, n), 50)) * 1e6


def _raw_push_pull(curve: bool, n: int = N_ARRAYS, size: int = 1 << 20) -> float:
    """Seconds for ``n`` messages of ``size`` bytes from a PUSH to a PULL over ipc in this
    process, with or without CURVE: the ceiling libzmq + libsodium put on one encrypted hop
    (a task's argument makes two: client -> dispatcher -> slot)."""
    context: zmq.Context[Any] = zmq.Context()
    try:
        pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
        if curve:
            server_public, server_secret = zmq.curve_keypair()
            pull.curve_server = True
            pull.curve_secretkey, pull.curve_publickey = server_secret, server_public
            push.curve_publickey, push.curve_secretkey = zmq.curve_keypair()
            push.curve_serverkey = server_public
        address = f"ipc://{_ipc_dir()}/raw-{int(curve)}"
        pull.bind(address)
        push.connect(address)
        data = b"x" * size
        push.send(data)
        pull.recv()
        sender = threading.Thread(target=lambda: [push.send(data, copy=False) for _ in range(n)])
        start = time.perf_counter()
        sender.start()
        for _ in range(n):
            pull.recv(copy=False)
        sender.join()
        return time.perf_counter() - start
    finally:
        context.destroy(linger=0)


def bench_curve_on_and_off(
    benchmark: Any, client: Client, secure_client: Client, no_gc: None
) -> None:
    arrays = [np.full(131_072, i, dtype=np.float64) for i in range(N_ARRAYS)]
    megabytes = sum(a.nbytes for a in arrays) / 1e6
    items = list(range(N_MAP))

    def numpy_args(executor: Client) -> None:
        futures = [executor.submit(checksum, a) for a in arrays]
        assert [f.result() for f in futures] == [float(i) for i in range(N_ARRAYS)]

    lines = []
    off, on = _interleaved(lambda: _submit_gather(client), lambda: _submit_gather(secure_client))
    lines.append(("a: 10k no-op tasks", N_NOOP / off, N_NOOP / on, "tasks/s"))
    off_b, on_b = _lone_p50(client), _lone_p50(secure_client)
    lines.append(("b: round trip p50 (lower is better)", off_b, on_b, "us"))
    off, on = _interleaved(
        lambda: list(client.map(square, items)), lambda: list(secure_client.map(square, items))
    )
    lines.append(("c: map 100k items", N_MAP / off, N_MAP / on, "items/s"))
    off, on = _interleaved(lambda: numpy_args(client), lambda: numpy_args(secure_client))
    lines.append(("d: 200 x 1 MiB numpy args", megabytes / off, megabytes / on, "MB/s"))
    off, on = _interleaved(lambda: _raw_push_pull(False), lambda: _raw_push_pull(True))
    lines.append(
        ("raw pyzmq PUSH/PULL, 200 x 1 MiB, one hop", megabytes / off, megabytes / on, "MB/s")
    )
    benchmark.pedantic(_submit_gather, args=(secure_client,), rounds=1, iterations=1)
    for name, plain, curve, unit in lines:
        print(
            f"\n[CURVE {name}] off {plain:,.1f} {unit} | on {curve:,.1f} {unit} "
            f"(on/off {curve / plain:.2f})"
        )


# ---------------------------------------------------------------- (e) memory per queued task


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def bench_e_dispatcher_bytes_per_queued_task(benchmark: Any) -> None:
    queued = int(os.environ.get("PYDISPATCH_BENCH_QUEUED", "200000"))
    with LocalCluster(workers=0) as idle:
        assert idle.dispatcher is not None
        client = idle.client()
        client.status()
        before = _rss_bytes(idle.dispatcher.pid)

        def queue_all() -> None:
            for start in range(0, queued, 10_000):
                for i in range(start, min(queued, start + 10_000)):
                    client.submit(noop, i)
                while client.status().queued < min(queued, start + 10_000):
                    time.sleep(0.01)

        benchmark.pedantic(queue_all, rounds=1, iterations=1)
        per_task = (_rss_bytes(idle.dispatcher.pid) - before) / queued
        client.shutdown(wait=False, cancel_futures=True)
    print(f"\n[e: memory] dispatcher {per_task:,.0f} bytes per queued task ({queued:,} queued)")
    statistics.fmean([per_task])  # keep the value visible in --benchmark-json via the print


# ------------------------------------------------ (a) against dask, ipyparallel and Ray
# Last: these frameworks leave processes winding down after shutdown, which would slow the
# benchmarks measured after them.


def bench_a_dask_distributed(client: Client, no_gc: None) -> None:
    distributed = pytest.importorskip("dask.distributed", reason="dask.distributed not installed")
    # Ours first, after a pause: a peer's processes wind down for seconds after it shuts down.
    time.sleep(PEER_SETTLE)
    ours = N_NOOP / peer_seconds(lambda: _submit_gather(client))  # median: robust to a straggler
    with (
        distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True) as dc,
        distributed.Client(dc) as dask_client,
    ):
        dask_client.gather([dask_client.submit(noop, i, pure=False) for i in range(100)])
        theirs = N_NOOP / timed(
            lambda: dask_client.gather(
                [dask_client.submit(noop, i, pure=False) for i in range(N_NOOP)]
            )
        )
    report("a: 10k no-op tasks", ours, {"dask.distributed": theirs}, "tasks/s", True)


def bench_a_ipyparallel(client: Client, no_gc: None) -> None:
    ipp = pytest.importorskip("ipyparallel", reason="ipyparallel not installed")
    # Ours first, after a pause: a peer's processes wind down for seconds after it shuts down.
    time.sleep(PEER_SETTLE)
    ours = N_NOOP / peer_seconds(lambda: _submit_gather(client))  # median: robust to a straggler
    # A lambda travels by value: ipyparallel's engines cannot import this benchmark module.
    identity = lambda x: x  # noqa: E731
    with ipp.Cluster(n=WORKERS) as rc:
        rc[:].use_cloudpickle()  # this module is registered to travel by value
        view = rc.load_balanced_view()

        def run() -> None:
            results = [view.apply_async(identity, i) for i in range(N_NOOP)]
            for r in results:
                r.get()

        theirs = N_NOOP / timed(run)
    report("a: 10k no-op tasks", ours, {"ipyparallel": theirs}, "tasks/s", True)


def bench_a_ray(client: Client, no_gc: None) -> None:
    ray = pytest.importorskip("ray", reason="ray not installed")
    # Ours first, after a pause: a peer's processes wind down for seconds after it shuts down.
    time.sleep(PEER_SETTLE)
    ours = N_NOOP / peer_seconds(lambda: _submit_gather(client))  # median: robust to a straggler
    ray.init(num_cpus=WORKERS, include_dashboard=False)
    try:
        remote_noop = ray.remote(lambda x: x)  # by value: ray workers cannot import this module
        ray.get([remote_noop.remote(i) for i in range(100)])
        theirs = N_NOOP / timed(lambda: ray.get([remote_noop.remote(i) for i in range(N_NOOP)]))
    finally:
        ray.shutdown()
    report("a: 10k no-op tasks", ours, {"ray": theirs}, "tasks/s", True)
