"""A real Prometheus scrapes a LocalCluster's dispatcher: the task counters it stores move as
tasks run, the worker and dispatcher metrics are there, and a running job's per-operator
figures (asked of its master at each scrape) move too."""

from __future__ import annotations

import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

from _support.process_guard import eventually
from _support.prometheus import running_prometheus
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import JobHandle, StreamEnvironment

# Functions defined here travel by value: slot processes cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLUSTER = {
    "workers": 2,
    "slots": 1,
    "http": True,
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 10.0,
}


def square(x: int) -> int:
    return x * x


@pytest.mark.slow
def test_prometheus_sees_the_task_counters_move(cluster: LocalCluster, tmp_path: Path) -> None:
    target = urllib.parse.urlsplit(cluster.http_url).netloc
    client = cluster.client(name="prom test")
    with running_prometheus(tmp_path, [target]) as prometheus:
        eventually(
            lambda: prometheus.value('up{job="pydispatch"}') == 1.0,
            "prometheus scraped the dispatcher",
            timeout=60,
        )
        before = prometheus.value("pydispatch_tasks_finished_total") or 0.0
        assert [f.result() for f in [client.submit(square, i) for i in range(50)]] == [
            i * i for i in range(50)
        ]
        eventually(
            lambda: (prometheus.value("pydispatch_tasks_finished_total") or 0) >= before + 50,
            "the finished counter stored by prometheus grew by 50",
            timeout=60,
        )
        middle = prometheus.value("pydispatch_tasks_finished_total") or 0.0
        assert sum(client.map(square, range(400), chunksize=10)) == sum(i * i for i in range(400))
        eventually(
            lambda: (prometheus.value("pydispatch_tasks_finished_total") or 0) >= middle + 40,
            "the finished counter moved again (40 chunks of the map)",
            timeout=60,
        )
        assert (prometheus.value("sum(pydispatch_tasks_submitted_total)") or 0) >= 90
        # By client: this one's name is its label (Prometheus stores the series as scraped).
        by_name = 'sum(pydispatch_client_tasks_finished_total{client="prom test"})'
        eventually(
            lambda: (prometheus.value(by_name) or 0) >= 90,
            "the client's own finished counter stored",
            timeout=60,
        )
        assert prometheus.value("pydispatch_workers") == 2.0
        assert prometheus.value("pydispatch_slots") == 2.0
        eventually(
            lambda: (prometheus.value("min(pydispatch_worker_resident_memory_bytes)") or 0) > 0,
            "workers report their memory with their heartbeats",
            timeout=60,
        )
        waits = prometheus.value("pydispatch_task_queue_wait_seconds_count") or 0
        assert waits >= 90  # every attempt placed was measured
        assert (prometheus.value("pydispatch_dispatcher_loop_seconds_count") or 0) > 0
        assert (prometheus.value("pydispatch_messages_received_total") or 0) > 0
    client.shutdown()


def endless(index: int = 0, parallelism: int = 1) -> Iterator[int]:
    i = index
    while True:
        if i % 50 == index:
            time.sleep(0.01)
        yield i
        i += parallelism


@pytest.mark.slow
def test_prometheus_sees_a_running_jobs_operators(cluster: LocalCluster, tmp_path: Path) -> None:
    target = urllib.parse.urlsplit(cluster.http_url).netloc
    env = StreamEnvironment(cluster, parallelism=2)
    env.from_source(endless, bounded=False).name("numbers").map(lambda x: x + 1).name(
        "plus_one"
    ).for_each(lambda x: None).name("drop")
    handle = env.execute("scraped-job")
    assert isinstance(handle, JobHandle)
    query = f'pydispatch_operator_records_out_total{{job_id="{handle.job_id}",name="plus_one"}}'
    try:
        with running_prometheus(tmp_path, [target]) as prometheus:
            eventually(
                lambda: (prometheus.value(query) or 0) > 0,
                "prometheus stored the map's records out",
                timeout=60,
            )
            first = prometheus.value(query) or 0
            eventually(
                lambda: (prometheus.value(query) or 0) > first,
                "the map's records out grew in prometheus",
                timeout=60,
            )
            running = 'pydispatch_jobs{state="RUNNING"}'
            assert (prometheus.value(running) or 0) >= 1
            parallelism = f'pydispatch_chain_parallelism{{job_id="{handle.job_id}"}}'
            assert sorted(float(r["value"][1]) for r in prometheus.query(parallelism)) == [
                1.0,  # the source (not parallel)
                2.0,  # plus_one -> drop
            ]
    finally:
        handle.cancel()
