"""A real Prometheus scrapes a LocalCluster's dispatcher: the task counters it stores move as
tasks run, and the worker and dispatcher metrics are there."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from _support.process_guard import eventually
from _support.prometheus import running_prometheus
from pydispatch.runtime.cluster import LocalCluster

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
    client = cluster.client()
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
