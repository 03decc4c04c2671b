"""The monitor's parts without a cluster: histogram buckets as Prometheus reads them, the view
exchange between threads, and a dispatcher in this process with metrics on and off (its HTTP
endpoint, a real client's queued tasks)."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from _support.process_guard import eventually
from pydispatch.monitor.exchange import ViewExchange
from pydispatch.monitor.http import MonitorServer
from pydispatch.monitor.recorder import Buckets
from pydispatch.runtime.client import Client
from pydispatch.runtime.dispatcher import Dispatcher


def test_buckets_count_as_prometheus_le_does() -> None:
    buckets = Buckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        buckets.observe(value)
    buckets.observe_many([0.2, 20.0])
    assert buckets.cumulative() == [("0.1", 2), ("1.0", 5), ("+Inf", 7)]
    assert buckets.total == pytest.approx(0.05 + 0.1 + 0.5 + 1.0 + 7.0 + 0.2 + 20.0)
    copy = buckets.copy()
    buckets.observe(0.0)
    assert copy.cumulative()[-1] == ("+Inf", 7)  # a copy does not move with the original


def test_the_exchange_answers_every_waiting_thread_with_one_view() -> None:
    exchange: ViewExchange[int] = ViewExchange(max_age=60.0)
    answers: list[int] = []
    askers = [threading.Thread(target=lambda: answers.append(exchange.get(30))) for _ in range(3)]
    for asker in askers:
        asker.start()
    eventually(lambda: len(exchange.waiting) == 3, "three requests wait")
    built = []
    exchange.serve(lambda: built.append(1) or len(built))
    for asker in askers:
        asker.join()
    assert answers == [1, 1, 1]
    assert exchange.get(0.01) == 1  # fresh enough: no request to the loop
    with pytest.raises(TimeoutError):
        ViewExchange[int]().get(0.05)  # nobody serves it


def test_a_failing_build_reaches_the_askers() -> None:
    exchange: ViewExchange[int] = ViewExchange()
    result: list[BaseException] = []

    def ask() -> None:
        try:
            exchange.get(30)
        except RuntimeError as error:
            result.append(error)

    asker = threading.Thread(target=ask)
    asker.start()
    eventually(lambda: bool(exchange.waiting), "a request waits")

    def broken() -> int:
        raise RuntimeError("no view")

    with pytest.raises(RuntimeError):
        exchange.serve(broken)
    asker.join()
    assert [str(e) for e in result] == ["no view"]


@pytest.fixture(params=[True, False], ids=["metrics-on", "metrics-off"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, bool]]:
    dispatcher = Dispatcher(f"ipc://{tmp_path}/d", metrics=request.param, job_masters=False)
    loop = threading.Thread(target=dispatcher.serve_forever)
    loop.start()
    server = MonitorServer("127.0.0.1:0", dispatcher.view)
    try:
        yield dispatcher.endpoint, server.url, request.param
    finally:
        server.close()
        dispatcher.stop()
        loop.join()


def test_queued_tasks_of_a_real_client_show_in_the_api_and_metrics(
    served: tuple[str, str, bool],
) -> None:
    address, url, metrics_on = served
    client = Client(address)
    try:
        futures = [client.submit(abs, -i, priority=i % 2) for i in range(6)]  # no worker: queued

        def api() -> dict[str, int]:
            with urllib.request.urlopen(url + "/api/tasks", timeout=10) as answer:
                body: dict[str, int] = json.load(answer)
                return body

        eventually(lambda: api()["queued"] == 6, "six tasks queued")
        with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
            families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
        queued = families["pydispatch_tasks_queued"].samples[0].value
        assert queued == 6
        submitted = {
            s.labels["priority"]: s.value
            for s in families["pydispatch_tasks_submitted"].samples
            if s.name.endswith("_total")
        }
        assert submitted == ({"0": 3.0, "1": 3.0} if metrics_on else {})
        assert "pydispatch_dispatcher_process_cpu_seconds" in families  # this process's
        for future in futures:
            future.cancel()
    finally:
        client.shutdown(wait=False, cancel_futures=True)
