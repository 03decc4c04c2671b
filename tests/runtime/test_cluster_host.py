"""A LocalCluster's dispatcher and workers are forked by one host process
(``runtime.cluster_host``), which imports their modules once: the process tree it makes, the
``Popen``-like objects the cluster hands out for processes it did not fork, the preload a
dataflow environment asks, the dispatcher's restart and its failures at start, and that
nothing outlives the program that started the cluster. Real processes throughout."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from _support.clusters import make_cluster
from _support.process_guard import children, eventually
from pydispatch import LocalCluster
from pydispatch.stream import StreamEnvironment


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _slot_modules() -> tuple[int, list[str]]:
    import os
    import sys

    return os.getppid(), sorted(sys.modules)


def _blas_product(seed: int) -> list[float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    a = rng.standard_normal((300, 300))
    return [float(x) for x in (a @ a.T).sum(axis=0)]


def test_one_host_forks_the_dispatcher_and_every_worker_each_in_a_group_of_its_own() -> None:
    with make_cluster(workers=2, slots=1) as cluster:
        assert cluster.dispatcher is not None
        dispatcher = cluster.dispatcher.pid
        hosts = {_parent(pid) for pid in [dispatcher, *cluster.worker_pids]}
        assert len(hosts) == 1
        (host,) = hosts
        assert host != os.getpid()
        assert _parent(host) == os.getpid()  # the host is ours; the others are its children
        assert os.getpgid(dispatcher) == dispatcher
        cluster.start_worker(name="later")  # forked by the same host after start
        cluster.wait_for_workers(3)
        assert {_parent(pid) for pid in cluster.worker_pids} == {host}
        for worker in cluster.worker_pids:
            assert os.getpgid(worker) == worker
            assert os.getsid(worker) == worker
            eventually(lambda w=worker: bool(children(w)), "the worker's slot started")
            assert {os.getpgid(slot) for slot in children(worker)} == {worker}
        client = cluster.client()
        parent, modules = client.submit(_slot_modules).result(timeout=60)
        assert parent in cluster.worker_pids
        assert "numpy" not in modules  # no preload asked: the slots stay light
    eventually(lambda: not _alive(host), "the host ended with the cluster")


def test_hosted_workers_behave_like_popen_objects() -> None:
    with make_cluster(workers=2, slots=1) as cluster:
        victim, survivor = cluster.workers
        assert victim.poll() is None
        assert victim.returncode is None
        slots = children(victim.pid)
        victim.kill()
        assert victim.wait(timeout=30) == -signal.SIGKILL
        assert victim.poll() == -signal.SIGKILL
        victim.kill()  # reaped: nothing happens (its pid is no longer its)
        assert survivor.poll() is None
        # The dispatcher forgets the dead worker; the other one still runs tasks.
        assert cluster.client().submit(abs, -3).result(timeout=60) == 3
        # Its orphaned slot leaves: it notices that its worker is gone.
        eventually(lambda: not any(map(_alive, slots)), "the dead worker's slot left")
        survivor.send_signal(signal.SIGTERM)  # a drain: nothing runs, so it exits at once
        assert survivor.wait(timeout=30) == 0
    assert all(worker.returncode is not None for worker in cluster.workers)


def test_preloaded_modules_are_in_every_slot_before_its_first_task_and_blas_works() -> None:
    with make_cluster(workers=1, slots=2, preload=["pydispatch.dataflow.slice"]) as cluster:
        client = cluster.client()
        _, modules = client.submit(_slot_modules).result(timeout=60)
        assert {"numpy", "pydispatch.dataflow.slice"} <= set(modules)
        # numpy's BLAS was loaded (its thread pool started) in the host before the forks:
        # both slots still multiply matrices, as this process does.
        futures = [client.submit(_blas_product, seed) for seed in (1, 2, 3, 4)]
        for seed, future in zip((1, 2, 3, 4), futures, strict=True):
            assert np.allclose(future.result(timeout=60), _blas_product(seed))


def test_a_dataflow_environment_preloads_the_slices_modules() -> None:
    with StreamEnvironment.local(workers=1) as env:
        assert env.from_elements([1, 2, 3]).map(lambda x: x * 2).collect() == [2, 4, 6]
        cluster = env._owned
        assert isinstance(cluster, LocalCluster)
        _, modules = cluster.client().submit(_slot_modules).result(timeout=60)
        assert "pydispatch.dataflow.slice" in modules


_ABANDONED = """
import sys, time
from pydispatch import LocalCluster

cluster = LocalCluster(workers=2, slots=1)
cluster.start()
print(cluster._owned.host.process.pid, cluster.dispatcher.pid, *cluster.worker_pids, flush=True)
time.sleep(600)
"""


def test_a_killed_program_leaves_no_host_and_no_worker_behind() -> None:
    program = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_ABANDONED)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert program.stdout is not None
        pids = [int(word) for word in program.stdout.readline().split()]
        assert len(pids) == 4
        slots = [slot for worker in pids[2:] for slot in children(worker)]
    finally:
        program.kill()
        program.wait()
    # Its end closes the host's request pipe: the host exits, then the dispatcher and the
    # workers (whose parent it was) and their slots stop by themselves.
    eventually(lambda: not any(map(_alive, pids + slots)), "every process ended")


def test_a_dispatcher_restarted_on_tcp_keeps_its_port_and_the_workers_come_back() -> None:
    with make_cluster(workers=1, slots=1, address="tcp://127.0.0.1:0") as cluster:
        address = cluster.address
        assert address.startswith("tcp://127.0.0.1:")
        assert not address.endswith(":0")
        old = cluster.dispatcher
        assert old is not None
        cluster.restart_dispatcher()
        assert old.returncode == -signal.SIGKILL
        assert cluster.dispatcher is not None
        assert cluster.dispatcher.pid != old.pid
        assert cluster.address == address
        cluster.wait_for_workers(1)
        assert cluster.client().submit(abs, -5).result(timeout=60) == 5


def test_a_dispatcher_that_cannot_bind_fails_the_start_with_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = make_cluster(workers=1, slots=1, address=f"tcp://127.0.0.1:{port}")
        with pytest.raises(RuntimeError, match="the dispatcher exited during start-up"):
            cluster.start()
    # start() closed it: every process it started has ended.
    assert cluster.dispatcher is not None
    assert cluster.dispatcher.returncode is not None
    assert not Path(cluster._tmpdir).exists()
