"""Per-operator bytes in/out and a time window's watermark and watermark lag, in a running
streaming job's metrics and in the dispatcher's ``/metrics``: a keyed exchange from a parallel
unbounded source into event-time windows, on a LocalCluster (real slots, real sockets); and a
finished job's exchange, whose bytes sent and received balance exactly."""

from __future__ import annotations

import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import cloudpickle
from prometheus_client.parser import text_string_to_metric_families

from _support.process_guard import eventually
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import JobHandle, StreamEnvironment

cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLUSTER = {"workers": 2, "slots": 2, "http": True}


def timed_events(index: int = 0, parallelism: int = 1) -> Iterator[tuple[int, int, int]]:
    """(key, event time, value) with ascending event times; subtask 1 runs slower, so its
    channel's marks trail (what the watermark lag shows)."""
    t = 0
    while True:
        time.sleep(0.001 if index == 0 else 0.003)
        yield (t % 7, t, 1)
        t += 1


def _by_name(metrics: dict[str, Any], figure: str) -> dict[str, float]:
    names = {str(op["id"]): op["name"] for op in metrics["graph"]["operators"]}
    return {names[str(op)]: value for op, value in metrics.get(figure, {}).items()}


def _scraped(url: str, job_id: str) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job_id") == job_id and "operator" in sample.labels:
                found[(sample.name, sample.labels["name"])] = sample.value
    return found


def test_bytes_per_operator_and_the_watermark_lag_of_a_window(cluster: LocalCluster) -> None:
    env = StreamEnvironment(cluster, parallelism=2)
    stream = env.from_source(timed_events, bounded=False).name("events")
    windows = stream.key_by(0).time_window(10, timestamp=1).sum(2).name("window")
    windows.map(lambda r: r).name("after").for_each(lambda r: None).name("drop")
    handle = env.execute("bytes-and-watermarks")
    assert isinstance(handle, JobHandle)
    try:
        eventually(lambda: "window" in _by_name(handle.metrics(), "watermark"), "a watermark", 60)
        first = handle.metrics()
        eventually(
            lambda: (
                _by_name(handle.metrics(), "watermark")["window"]
                > _by_name(first, "watermark")["window"]
            ),
            "the window's watermark advanced",
            60,
        )
        m = handle.metrics()
        out, into = _by_name(m, "bytes_out"), _by_name(m, "bytes_in")
        # The keyed exchange (each slice reports its figures at its own pace: no order
        # between the two sides while it runs; see the bounded job below for equality).
        assert out["events"] > 0
        assert into["window"] > 0
        assert into["events"] == 0
        assert into["after"] == out["after"] == into["drop"] == out["drop"] == 0
        lag = _by_name(m, "watermark_lag")["window"]
        assert lag >= 0
        assert _by_name(m, "watermark")["window"] + lag > 0
        assert set(_by_name(m, "watermark")) == {"window"}  # only windows have watermarks

        scraped: dict[tuple[str, str], float] = {}

        def scrape() -> bool:
            scraped.update(_scraped(cluster.http_url, handle.job_id))
            return scraped.get(("pydispatch_operator_bytes_in_total", "window"), 0) > 0

        eventually(scrape, "bytes in scraped", 60)
        assert scraped[("pydispatch_operator_bytes_out_total", "events")] > 0
        assert scraped[("pydispatch_operator_bytes_in_total", "drop")] == 0
        assert ("pydispatch_operator_watermark", "window") in scraped
        assert scraped[("pydispatch_operator_watermark_lag", "window")] >= 0
    finally:
        handle.cancel()


def test_a_finished_jobs_exchange_bytes_balance(cluster: LocalCluster) -> None:
    env = StreamEnvironment(cluster, parallelism=2)
    numbers = env.from_collection(range(20_000)).name("numbers")
    pairs = numbers.map(lambda x: (x % 7, x)).name("pairs")
    pairs.key_by(0).sum(1).name("sums").for_each(lambda r: None).name("drop")
    handle = env.execute("balanced")
    handle.result(timeout=120)
    m = handle.metrics()
    out, into = _by_name(m, "bytes_out"), _by_name(m, "bytes_in")
    # Every batch sent on the keyed exchange was received: the same bytes on both sides.
    assert out["pairs"] > 0
    assert into["sums"] == out["pairs"]
    assert out["numbers"] == into["pairs"] == 0  # chained: no bytes between them
    assert _by_name(m, "watermark") == {}  # batch mode: no watermarks


def _job_samples(url: str, job_id: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("job_id") == job_id and "operator" not in sample.labels
    }


def test_a_checkpointing_jobs_checkpoints_are_scraped(cluster: LocalCluster, tmp_path: Any) -> None:
    env = StreamEnvironment(cluster, parallelism=2)
    env.enable_checkpointing(0.2, storage=str(tmp_path / "checkpoints"))
    events = env.from_source(timed_events, bounded=False).name("events")
    events.key_by(0).sum(2).name("sums").for_each(lambda r: None).name("drop")
    handle = env.execute("checkpointed")
    try:
        scraped: dict[str, float] = {}

        def two_checkpoints() -> bool:
            scraped.update(_job_samples(cluster.http_url, handle.job_id))
            return scraped.get("pydispatch_job_checkpoints_total", 0) >= 2

        eventually(two_checkpoints, "two checkpoints scraped", 60)
        figures = handle.metrics()["checkpoints"]
        assert figures["completed"] >= scraped["pydispatch_job_checkpoints_total"]
        assert scraped["pydispatch_job_checkpoint_size_bytes"] > 0  # the keyed sums' state
        assert scraped["pydispatch_job_checkpoint_duration_seconds"] > 0
        assert "pydispatch_job_checkpoints_aborted_total" in scraped
    finally:
        handle.cancel()
