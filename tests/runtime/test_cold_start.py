"""What a cluster's start costs, structurally (the figures are in bench/bench_cold_start.py):
the modules a dispatcher, a worker and a slot load stay free of the heavy ones (numpy,
asyncio, OR-Tools, the HTTP server...) until something needs them. Real processes; what they
loaded is read from /proc (their mapped extension modules), or from a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from _support.clusters import make_cluster
from _support.process_guard import children


def _mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


# Extension modules that would tell a heavy import: numpy, asyncio, OR-Tools, PostgreSQL's
# driver, the HTTP server's SSL, ...; none of these processes needs them to start.
_HEAVY = ["_multiarray_umath", "_asyncio", "ortools", "psycopg", "_ssl"]


@pytest.mark.parametrize("what", ["dispatcher", "worker"])
def test_the_processes_of_a_cluster_load_nothing_heavy_to_start(what: str) -> None:
    with make_cluster(workers=1, slots=1) as cluster:
        cluster.client().submit(abs, -1).result(timeout=60)
        assert cluster.dispatcher is not None
        pids = [cluster.dispatcher.pid] if what == "dispatcher" else cluster.worker_pids
        if what == "worker":
            pids += children(cluster.worker_pids[0])  # its slot, which ran a task
        for pid in pids:
            maps = _mapped_libraries(pid)
            loaded = [name for name in _HEAVY if name in maps]
            assert not loaded, f"{what} process {pid} loaded {loaded}"


def test_the_modules_the_processes_import_stay_light() -> None:
    # The same in a fresh interpreter, by module name (a guard for what /proc cannot tell:
    # pure-Python modules such as asyncio's or http.server's).
    code = (
        "import sys\n"
        "import pydispatch.runtime.dispatcher, pydispatch.runtime.worker\n"
        "heavy = {'numpy', 'asyncio', 'http.server', 'ortools', 'psycopg', 'prometheus_client',"
        " 'pydispatch.dataflow', 'pydispatch.stream', 'pydispatch.solver'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
