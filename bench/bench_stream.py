"""Dataflow benchmarks: jobs on a 2-worker LocalCluster against single-process baselines.

Run: ``PYTHONPATH=src python -m pytest bench/bench_stream.py -q -s --benchmark-disable-gc``
(``-s`` shows the figures). Groups:

- word count (``flat_map`` -> ``map`` -> ``key_by`` -> ``sum``, parallelism 2) against
  ``collections.Counter`` and, where installed, a dask bag; and its producer's work alone in
  one process, operator by operator against the fused native pass (``dataflow.fusion``);
- columnar keyed sum over ``from_arrays`` (parallelism 2) against DuckDB ``GROUP BY`` with two
  threads and ``np.bincount`` (the best a single process does for dense int keys), with polars,
  pandas, a dask dataframe groupby and the native kernel alone beside them (a peer that is not
  installed is skipped with a message: ``pip install .[bench]``);
- a Python ``map`` (parallelism 2) against a list comprehension;
- the shuffle: 512 MiB in 1 MiB columnar batches between two processes over the data plane's
  code, against bare pyzmq PUSH/PULL (bytes per second);
- the seed example from a cold start: ``StreamEnvironment.local(workers=2)`` included.

Shuffle MB/s (bytes sent between subtasks over the job's wall time) are printed per job.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import numpy as np
import pytest
import zmq

from pydispatch.dataflow.aggregation import group_aggregate
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import DataStream, JobHandle, StreamEnvironment
from pydispatch.wire import data_plane as dp
from pydispatch.wire import transport

cloudpickle.register_pickle_by_value(sys.modules[__name__])

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "é", "spam"]
LINES = [" ".join(WORDS[(i * 7 + j) % 10] + str(i % 97) for j in range(10)) for i in range(100_000)]
N_WORDS = sum(len(line.split()) for line in LINES)
ROWS = 10_000_000
N_MAP = 1_000_000


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(workers=2, slots=1) as running:
        yield running


def _run(stream: DataStream) -> JobHandle:
    stream._sink("Collect", {"sink": "collect", "columnar": stream.schema.columnar})
    handle = stream._env.execute("bench")
    assert isinstance(handle, JobHandle)
    handle.result()
    return handle


def _shuffle(handle: JobHandle, what: str) -> None:
    m = handle.metrics()
    rate = m["bytes_shuffled"] / m["seconds"] / 1e6
    print(f"\n  {what}: shuffled {m['bytes_shuffled'] / 1e6:.1f} MB, {rate:.1f} MB/s")


def bench_word_count(benchmark: Any, record: Any, cluster: LocalCluster) -> None:
    env = StreamEnvironment(cluster, parallelism=2)
    handles: list[JobHandle] = []

    def job() -> None:
        stream = env.from_collection(LINES).flat_map(str.split).map(lambda w: (w, 1))
        handles.append(_run(stream.key_by(0).sum(1)))

    benchmark.pedantic(job, rounds=3, iterations=1)
    record("word count (records = words)", "pydispatch, 2 workers", N_WORDS)
    expected = collections.Counter(w for line in LINES for w in line.split())
    assert dict(next(iter(handles[-1].collected.values()))) == expected
    _shuffle(handles[-1], "word count")


def bench_word_count_counter(benchmark: Any, record: Any) -> None:
    benchmark.pedantic(
        lambda: collections.Counter(w for line in LINES for w in line.split()),
        rounds=3,
        iterations=1,
    )
    record("word count (records = words)", "collections.Counter", N_WORDS, baseline=True)


def bench_word_count_dask_bag(benchmark: Any, record: Any) -> None:
    bag = pytest.importorskip("dask.bag")
    lines = bag.from_sequence(LINES, npartitions=4)
    benchmark.pedantic(
        lambda: dict(lines.str.split().flatten().frequencies().compute()),
        rounds=3,
        iterations=1,
    )
    record("word count (records = words)", "dask bag (default scheduler)", N_WORDS)


def _producer_stages() -> tuple[Any, Any, Any]:
    """A word count producer's operators as the job has them: flat_map, map, and the keyed
    sum whose exchange combines (dataflow.fusion runs the three as one native pass)."""
    env = StreamEnvironment(parallelism=1)
    words = env.from_collection(["a"]).flat_map(str.split)
    pairs = words.map(lambda w: (w, 1))
    return words.operator, pairs.operator, pairs.key_by(0).sum(1).operator


def bench_word_count_producer_python(benchmark: Any, record: Any) -> None:
    """Before fusion: a list comprehension per operator (operators.transform) and the
    combiner's former Python loop, 4,096 lines a batch, one process."""
    from pydispatch.dataflow.operators import transform

    flat_map, mapping, _ = _producer_stages()

    def run() -> dict[Any, list[Any]]:
        state: dict[Any, list[Any]] = {}
        for start in range(0, len(LINES), 4096):
            words = transform(flat_map, LINES[start : start + 4096])
            for record in transform(mapping, words):
                entry = state.get(record[0])
                if entry is None:
                    state[record[0]] = [record[1], 1]
                else:
                    entry[0] = entry[0] + record[1]
                    entry[1] += 1
        return state

    benchmark.pedantic(run, rounds=3, iterations=1)
    group = "word count producer, 1 process (words)"
    record(group, "operator by operator, Python combiner", N_WORDS, baseline=True)


def bench_word_count_producer_fused(benchmark: Any, record: Any) -> None:
    """The same through dataflow.fusion's native pass (_core.RecordChain into the record
    combiner's _core.RecordFold)."""
    from pydispatch import _core
    from pydispatch.dataflow.combiners import RecordCombiner

    flat_map, mapping, aggregate = _producer_stages()
    stages = [_core.STAGE_FLAT_MAP, _core.STAGE_MAP]

    def run() -> list[Any]:
        chain = _core.RecordChain(stages, (flat_map.function, mapping.function))
        combiner = RecordCombiner(aggregate)
        for start in range(0, len(LINES), 4096):
            combiner.push_through(chain, LINES[start : start + 4096])
        return combiner.flush() or []

    benchmark.pedantic(run, rounds=3, iterations=1)
    record("word count producer, 1 process (words)", "fused native pass", N_WORDS)


def _columns() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    return {"k": rng.integers(0, 100_000, ROWS), "v": rng.integers(0, 1000, ROWS)}


def bench_columnar_keyed_sum(benchmark: Any, record: Any, cluster: LocalCluster) -> None:
    columns = _columns()
    env = StreamEnvironment(cluster, parallelism=2)
    handles: list[JobHandle] = []
    benchmark.pedantic(
        lambda: handles.append(_run(env.from_arrays(columns).key_by("k").sum("v"))),
        rounds=3,
        iterations=1,
    )
    record("columnar keyed sum (rows)", "pydispatch, 2 workers", ROWS)
    out = next(iter(handles[-1].collected.values()))
    expected = np.bincount(columns["k"], weights=columns["v"]).astype(np.int64)
    np.testing.assert_array_equal(out["v"][np.argsort(out["k"])], expected[np.sort(out["k"])])
    _shuffle(handles[-1], "columnar keyed sum")


def bench_columnar_numpy(benchmark: Any, record: Any) -> None:
    columns = _columns()
    benchmark.pedantic(
        lambda: np.bincount(columns["k"], weights=columns["v"]), rounds=3, iterations=1
    )
    record("columnar keyed sum (rows)", "numpy bincount, 1 process", ROWS, baseline=True)


def bench_columnar_dask_dataframe(benchmark: Any, record: Any) -> None:
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    frame = dd.from_pandas(pd.DataFrame(_columns()), npartitions=4)
    benchmark.pedantic(lambda: frame.groupby("k")["v"].sum().compute(), rounds=3, iterations=1)
    record("columnar keyed sum (rows)", "dask dataframe groupby", ROWS)


def bench_columnar_duckdb(benchmark: Any, record: Any) -> None:
    """DuckDB's GROUP BY over the same numpy arrays (scanned in place through a pandas frame),
    two threads: the machine's two cores, as the cluster's two workers have."""
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (the bench extra)")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(_columns())
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("rows", frame)
    query = "SELECT k, sum(v) AS v FROM rows GROUP BY k"
    benchmark.pedantic(lambda: con.execute(query).fetchnumpy(), rounds=3, iterations=1)
    record("columnar keyed sum (rows)", "DuckDB GROUP BY, 2 threads", ROWS, baseline=True)


def bench_columnar_polars(benchmark: Any, record: Any) -> None:
    pl = pytest.importorskip("polars", reason="polars is not installed (the bench extra)")
    frame = pl.DataFrame(_columns())
    benchmark.pedantic(lambda: frame.group_by("k").agg(pl.col("v").sum()), rounds=3, iterations=1)
    record("columnar keyed sum (rows)", "polars group_by", ROWS)


def bench_columnar_pandas(benchmark: Any, record: Any) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(_columns())
    benchmark.pedantic(lambda: frame.groupby("k")["v"].sum(), rounds=3, iterations=1)
    record("columnar keyed sum (rows)", "pandas groupby", ROWS)


def bench_columnar_native_one_process(benchmark: Any, record: Any) -> None:
    """pydispatch's native hash aggregation alone, one thread: the kernel under the job."""
    columns = _columns()
    benchmark.pedantic(
        lambda: group_aggregate(columns["k"], columns["v"], "sum"), rounds=3, iterations=1
    )
    record("columnar keyed sum (rows)", "pydispatch group_aggregate, 1 thread", ROWS)


def bench_python_map(benchmark: Any, record: Any, cluster: LocalCluster) -> None:
    data = list(range(N_MAP))
    env = StreamEnvironment(cluster, parallelism=2)
    benchmark.pedantic(
        lambda: _run(env.from_collection(data).map(lambda x: x * 2 + 1)), rounds=3, iterations=1
    )
    record("python map (records)", "pydispatch, 2 workers", N_MAP)


def bench_python_map_list(benchmark: Any, record: Any) -> None:
    data = list(range(N_MAP))
    benchmark.pedantic(lambda: [x * 2 + 1 for x in data], rounds=3, iterations=1)
    record("python map (records)", "list comprehension", N_MAP, baseline=True)


def bench_seed_example_cold_start(benchmark: Any, record: Any) -> None:
    """From nothing (the stream module not imported yet in a fresh interpreter would add about
    50 ms more) to the result: the embedded cluster's start-up included, its shutdown not (it
    happens in the next round's untimed setup)."""
    envs: list[StreamEnvironment] = []

    def close_previous() -> None:
        while envs:
            envs.pop().close()

    def cold() -> None:
        started = time.perf_counter()
        env = StreamEnvironment.local(workers=2)
        envs.append(env)
        up = time.perf_counter()
        assert env.from_elements([1, 2, 3, 4, 5]).map(lambda x: x + 1).collect() == [2, 3, 4, 5, 6]
        done = time.perf_counter()
        print(f"\n  seed: cluster up {up - started:.3f} s, job {done - up:.3f} s")

    benchmark.pedantic(cold, setup=close_previous, rounds=5, iterations=1)
    close_previous()
    record("seed example, cold (jobs)", "pydispatch local(workers=2)", 1)


# -- the shuffle between two processes ------------------------------------------------------

SHUFFLE_BYTES = 512 << 20
SHUFFLE_BATCH = 1 << 20
SHUFFLE_CREDITS = 8  # SliceSpec's default

# A consumer subtask's loop as dataflow.slice runs it, over a slot's memory settings: read a
# batch, rebuild its columns over the frames, hand back a credit; print the bytes at the end.
_CONSUMER = """
import sys, zmq
from pydispatch.runtime.memory import keep_large_buffers
from pydispatch.wire import data_plane as dp, protocol as p, transport
keep_large_buffers(64 << 20)
sock = zmq.Context().socket(zmq.ROUTER)
print(sock.bind_to_random_port("tcp://127.0.0.1"), flush=True)
credit, got = p.encode(dp.Credit()), 0
while True:
    identity, body = transport.split_envelope(transport.recv_parts(sock), routed=True)
    message, frames = transport.parse_data(body)
    if isinstance(message, dp.EndOfInput):
        break
    got += sum(c.nbytes for c in transport.batch_from(message, frames).values())
    sock.send_multipart([identity, b"", credit])
print(got, flush=True)
"""

_RAW_PULL = """
import sys, zmq
from pydispatch.runtime.memory import keep_large_buffers
keep_large_buffers(64 << 20)
sock = zmq.Context().socket(zmq.PULL)
print(sock.bind_to_random_port("tcp://127.0.0.1"), flush=True)
got = 0
while len(frame := sock.recv(copy=False)):
    got += len(frame)
print(got, flush=True)
"""


def _peer(code: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, f"tcp://127.0.0.1:{int(proc.stdout.readline())}"


def _finish(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    got = int(proc.stdout.readline())
    proc.wait(timeout=30)
    return got


def bench_shuffle_two_processes(benchmark: Any, record: Any) -> None:
    """512 MiB in 1 MiB columnar batches from one process to another over the data plane's
    code (``transport.batch_message``/``send``, ``batch_from``, a credit per batch, 8 credits),
    TCP on loopback as slices use: what a shuffle between two slots on one host can move. The
    consumer process starts in the untimed setup."""
    half = SHUFFLE_BATCH // 16
    batch = {"k": np.arange(half, dtype=np.int64), "v": np.ones(half)}
    context: zmq.Context[Any] = zmq.Context()

    def move(proc: subprocess.Popen[str], endpoint: str) -> None:
        sock = context.socket(zmq.DEALER)
        sock.connect(endpoint)
        credits = SHUFFLE_CREDITS
        for _ in range(SHUFFLE_BYTES // SHUFFLE_BATCH):
            if credits == 0:
                sock.recv_multipart()
                credits += 1
            transport.send(sock, *transport.batch_message(0, batch))
            credits -= 1
        while credits < SHUFFLE_CREDITS:
            sock.recv_multipart()
            credits += 1
        transport.send(sock, dp.EndOfInput(0))
        assert _finish(proc) == SHUFFLE_BYTES
        sock.close()

    benchmark.pedantic(move, setup=lambda: (_peer(_CONSUMER), {}), rounds=3, iterations=1)
    context.term()
    record("shuffle, 1 MiB batches (bytes)", "data plane, two processes, TCP", SHUFFLE_BYTES)


def bench_shuffle_raw_pyzmq(benchmark: Any, record: Any) -> None:
    """The floor: bare pyzmq PUSH/PULL of the same bytes in 1 MiB messages, TCP on loopback."""
    payload = np.ones(SHUFFLE_BATCH, np.uint8)
    context: zmq.Context[Any] = zmq.Context()

    def move(proc: subprocess.Popen[str], endpoint: str) -> None:
        sock = context.socket(zmq.PUSH)
        sock.connect(endpoint)
        for _ in range(SHUFFLE_BYTES // SHUFFLE_BATCH):
            sock.send(payload, copy=False)
        sock.send(b"")
        assert _finish(proc) == SHUFFLE_BYTES
        sock.close()

    benchmark.pedantic(move, setup=lambda: (_peer(_RAW_PULL), {}), rounds=3, iterations=1)
    context.term()
    record(
        "shuffle, 1 MiB batches (bytes)", "raw pyzmq PUSH/PULL, TCP", SHUFFLE_BYTES, baseline=True
    )
