"""Task metrics by client: each client counts under its name's label (a bounded set: past the
limit, names fold into ``other``), in ``/metrics`` and ``/api/tasks`` of a LocalCluster's
dispatcher; a hello without a name (an older client's) still works and counts as ``unnamed``;
the label rules themselves."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import msgspec
import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

import pydispatch.runtime.client as client_module
from _support.clusters import make_cluster
from _support.process_guard import eventually
from pydispatch.monitor.client_labels import (
    DEFAULT_LIMIT,
    LIMIT_ENV,
    ClientLabels,
    label_limit,
    normal_name,
)
from pydispatch.runtime.client import Client
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.runtime.dispatcher import Dispatcher
from pydispatch.runtime.monitoring import Monitoring
from pydispatch.scheduling import scheduler as s
from pydispatch.wire import protocol as p
from pydispatch.wire.transport import loads

cloudpickle.register_pickle_by_value(sys.modules[__name__])

LIMIT = 2  # distinct names with a label of their own, in this module's dispatcher
# No direct lane (a lone task's client would send the next ones straight to a slot, which the
# dispatcher counts only in its totals); no prefetch: each sleeping task holds a slot.
SHAPE: dict[str, Any] = {
    "workers": 1,
    "slots": 2,
    "http": True,
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 10.0,
    "direct": False,
    "prefetch": 0,
}
_STATES = ("submitted", "finished", "failed", "cancelled", "retried", "queued", "running")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A cluster whose dispatcher gives LIMIT names a label (the variable is read at its
    start, in its own process)."""
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(LIMIT_ENV, str(LIMIT))
            running = stack.enter_context(make_cluster(**SHAPE))  # its processes start here
        yield running


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def by_client(url: str) -> dict[tuple[str, int], dict[str, int]]:
    """``/api/tasks``'s per-client rows, by (client label, priority)."""
    rows = get_json(url + "/api/tasks")["by_client"]
    return {(r["client"], r["priority"]): {s: r[s] for s in _STATES} for r in rows}


def scraped(url: str) -> dict[tuple[str, str, str], float]:
    """``/metrics``' per-client samples, by (family, client, priority), parsed by
    prometheus_client's own parser; plus the unlabelled task totals under ("name", "", "")."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            if "client" in sample.labels:
                key = (sample.name, sample.labels["client"], sample.labels["priority"])
                out[key] = sample.value
            elif sample.name.startswith("pydispatch_tasks_") and not sample.labels:
                out[(sample.name, "", "")] = sample.value
    return out


def fails(x: int) -> int:
    raise ValueError(x)


def test_two_named_clients_count_apart_in_metrics_and_api(cluster: LocalCluster) -> None:
    url = cluster.http_url
    etl, report = cluster.client(name="etl"), cluster.client(name="report")
    try:
        assert [f.result(60) for f in [etl.submit(abs, -i) for i in range(10)]] == list(range(10))
        urgent = [etl.submit(abs, -i, priority=1) for i in range(3)]
        assert [f.result(60) for f in urgent] == [0, 1, 2]
        with pytest.raises(ValueError, match="7"):  # the user's error: finished, not failed
            etl.submit(fails, 7).result(60)
        impossible = etl.submit(abs, 1, resources={"gpu": 1.0})  # no worker has one: failed
        with pytest.raises(Exception, match="gpu"):
            impossible.result(60)
        assert sum(report.map(abs, range(4), chunksize=1)) == 6
        # Both slots busy with report's sleepers; etl's next task waits, and is cancelled.
        sleepers = [report.submit(time.sleep, 60) for _ in range(2)]
        eventually(lambda: by_client(url)[("report", 0)]["running"] == 2, "report's 2 running")
        waiting = etl.submit(abs, -1)
        eventually(lambda: by_client(url)[("etl", 0)]["queued"] == 1, "etl's task waits")
        rows = by_client(url)
        assert rows[("etl", 0)] == {
            "submitted": 13,  # 10 + the user's error + the impossible one + the one waiting
            "finished": 11,
            "failed": 1,
            "cancelled": 0,
            "retried": 0,
            "queued": 1,
            "running": 0,
        }
        assert rows[("etl", 1)]["submitted"] == 3
        assert rows[("etl", 1)]["finished"] == 3
        assert rows[("report", 0)]["submitted"] == 6
        assert rows[("report", 0)]["finished"] == 4
        assert rows[("report", 0)]["running"] == 2
        metrics = scraped(url)
        assert metrics[("pydispatch_tasks_submitted_total", "etl", "0")] == 13
        assert metrics[("pydispatch_tasks_submitted_total", "etl", "1")] == 3
        assert metrics[("pydispatch_tasks_submitted_total", "report", "0")] == 6
        assert metrics[("pydispatch_client_tasks_finished_total", "etl", "0")] == 11
        assert metrics[("pydispatch_client_tasks_failed_total", "etl", "0")] == 1
        assert metrics[("pydispatch_client_tasks_queued", "etl", "0")] == 1
        assert metrics[("pydispatch_client_tasks_running", "report", "0")] == 2
        assert metrics[("pydispatch_client_tasks_running", "etl", "0")] == 0
        # Nothing went by the direct lane, and no client left: the clients' counts add up to
        # the dispatcher's totals.
        for state in ("finished", "failed"):
            total = metrics[(f"pydispatch_tasks_{state}_total", "", "")]
            assert total == sum(
                v for k, v in metrics.items() if k[0] == f"pydispatch_client_tasks_{state}_total"
            )
        assert waiting.cancel()
        eventually(
            lambda: by_client(url)[("etl", 0)]["cancelled"] == 1, "the cancel counted for etl"
        )
        assert scraped(url)[("pydispatch_client_tasks_cancelled_total", "etl", "0")] == 1
        assert by_client(url)[("etl", 0)]["queued"] == 0
        for sleeper in sleepers:  # killed in their slots (which are replaced)
            assert report.cancel(sleeper, force=True)
        eventually(
            lambda: all(s.cancelled() for s in sleepers), "the sleepers cancelled", timeout=60
        )
        eventually(
            lambda: (
                by_client(url)[("report", 0)]["cancelled"] == 2
                and by_client(url)[("report", 0)]["running"] == 0
            ),
            "report's forced cancels counted",
        )
    finally:
        etl.shutdown(wait=False, cancel_futures=True)
        report.shutdown(wait=False, cancel_futures=True)


def test_names_past_the_limit_count_as_other(cluster: LocalCluster) -> None:
    # This module's dispatcher gives LIMIT (2) names a label: "etl" and "report" have them
    # if the test above ran first; either way no more than two names of these five do.
    names = ["etl", "report", "third", "fourth", "fifth"]
    clients = [cluster.client(name=name) for name in names]
    try:
        for c in clients:
            assert c.submit(abs, -5).result(60) == 5
        # (A view may be a fraction of a second old: the dispatcher hands a fresh one out
        # again for a while.)
        eventually(
            lambda: by_client(cluster.http_url).get(("other", 0), {}).get("finished") == 3,
            "three names' tasks counted as other",
        )
        rows = by_client(cluster.http_url)
        labels = {client for client, _ in rows}
        assert "other" in labels
        assert len(labels - {"other", "unnamed", "job-master"}) == LIMIT
        assert not labels & {"third", "fourth", "fifth"}
        assert rows[("other", 0)]["submitted"] == 3
        assert rows[("other", 0)]["finished"] == 3
        metrics = scraped(cluster.http_url)
        assert metrics[("pydispatch_tasks_submitted_total", "other", "0")] == 3
        clients.append(cluster.client(name="third"))  # a name once folded stays folded
        assert clients[-1].submit(abs, -1).result(60) == 1
        eventually(
            lambda: by_client(cluster.http_url)[("other", 0)]["finished"] == 4,
            "a fourth task of 'other' counted",
        )
    finally:
        for c in clients:
            c.shutdown(wait=False)


def test_an_old_style_hello_without_a_name_still_works(cluster: LocalCluster) -> None:
    """A hello as clients sent it before it had a name or a sender field: the short array
    decodes (missing trailing fields take their defaults), the client is welcomed, its task
    runs and counts as ``unnamed``."""
    context: zmq.Context[Any] = zmq.Context()
    raw = context.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(cluster.address)
    try:
        old_hello = msgspec.msgpack.encode(["ClientHello", p.PROTOCOL_VERSION])
        decoded = p.decode(old_hello)
        assert decoded == p.ClientHello(p.PROTOCOL_VERSION)
        raw.send_multipart([b"", old_hello])
        assert raw.poll(30_000), "no answer to the hello"
        assert isinstance(p.decode(raw.recv_multipart()[1]), p.Welcome)
        task = p.TaskSpec(9, p.KIND_CALL, p.Blob(0), p.Blob(1))
        fn, args = cloudpickle.dumps(abs), cloudpickle.dumps(((-9,), {}))
        raw.send_multipart([b"", p.encode(p.Submit([task])), fn, args])
        result = None
        while result is None:
            assert raw.poll(30_000), "no result"
            frames = raw.recv_multipart(copy=False)
            message = p.decode(frames[1].bytes)
            if isinstance(message, p.Results):
                result = message.results[0]
        assert result.status == "ok"
        assert result.value is not None
        assert loads(result.value, frames[2:]) == 9
        eventually(
            lambda: by_client(cluster.http_url).get(("unnamed", 0), {}).get("finished") == 1,
            "the nameless client's task counted as unnamed",
        )
    finally:
        raw.close()
        context.term()


@contextlib.contextmanager
def serving(address: str) -> Iterator[Dispatcher]:
    """A dispatcher in this process (no workers: tasks stay queued), its loop in a thread."""
    dispatcher = Dispatcher(address, job_masters=False, client_timeout=0.8)
    loop = threading.Thread(target=dispatcher.serve_forever)
    loop.start()
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        loop.join()


def queued_by_label(dispatcher: Dispatcher) -> dict[str, int]:
    return {row.client: row.queued for row in dispatcher.view().clients if row.queued}


def test_a_nameless_client_is_named_after_its_script_and_says_so_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default name reaches the dispatcher; a restarted dispatcher, which first hears the
    client's repeated hello, learns the name from it (not ``unnamed`` or ``other``)."""
    # As if run by `python etl.py` (pytest's own __main__ differs: a module, or none in an
    # xdist worker).
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "__spec__", None, raising=False)
    monkeypatch.setattr(main, "__file__", str(tmp_path / "etl.py"), raising=False)
    script = client_module._default_name()
    assert script == "etl"
    address = f"ipc://{tmp_path}/d"
    with contextlib.ExitStack() as stack:
        with serving(address) as first:
            c = Client(address)
            stack.callback(c.shutdown, wait=False, cancel_futures=True)
            futures = [c.submit(abs, -i) for i in range(3)]
            eventually(lambda: queued_by_label(first) == {script: 3}, "3 queued as the script")
        with serving(address) as second:  # it knows none of them: the client resends
            eventually(
                lambda: queued_by_label(second) == {script: 3},
                "the tasks sent again count under the script's name",
            )
            for future in futures:
                assert future.cancel()


def test_a_retried_task_counts_for_its_client() -> None:
    """A worker killed under a running task: the task runs again elsewhere, counted as
    retried for its client, as many as the dispatcher's total."""
    shape = {**SHAPE, "workers": 2, "slots": 1, "heartbeat_timeout": 1.0}
    with make_cluster(**shape) as cluster:
        c = cluster.client(name="batch")
        try:
            pids = {w.pid for w in cluster.workers}
            first = c.submit(time.sleep, 3)
            eventually(
                lambda: by_client(cluster.http_url).get(("batch", 0), {}).get("running") == 1,
                "the task runs",
            )
            busy = [w for w in get_json(cluster.http_url + "/api/workers") if w["slots_used"]]
            assert len(busy) == 1
            victim = next(pid for pid in pids if pid == busy[0]["pid"])
            os.kill(victim, signal.SIGKILL)
            first.result(60)  # it ran again on the other worker
            eventually(
                lambda: by_client(cluster.http_url)[("batch", 0)]["finished"] == 1,
                "the retried task's end counted",
            )
            assert by_client(cluster.http_url)[("batch", 0)]["retried"] == 1
            metrics = scraped(cluster.http_url)
            assert metrics[("pydispatch_client_tasks_retried_total", "batch", "0")] == 1
            assert metrics[("pydispatch_tasks_retried_total", "", "")] == 1
        finally:
            c.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------- the label rules


def test_labels_are_bounded_and_names_normalised() -> None:
    labels = ClientLabels(limit=2)
    for identity, name in [
        (b"a", "etl"),
        (b"b", "  report\n"),
        (b"c", "third"),
        (b"d", "job master 1f3a"),
        (b"e", ""),
        (b"f", "etl"),
    ]:
        labels.hello(identity, name)
    got = {identity: labels.label(identity) for identity in (b"a", b"b", b"c", b"d", b"e", b"f")}
    assert got == {
        b"a": "etl",
        b"b": "report",
        b"c": "other",  # the third name: past the limit
        b"d": "job-master",  # reserved labels count against no limit
        b"e": "unnamed",
        b"f": "etl",  # a name with a label keeps it for every client of that name
    }
    labels.hello(b"a", "")  # a repeated hello without its name keeps the label
    assert labels.label(b"a") == "etl"
    labels.forget(b"a")
    assert labels.label(b"a") == "other"  # a client gone (its late results)
    assert normal_name("x" * 100) == "x" * 64
    assert normal_name("tab\there\x00") == "tab here?"
    zero = ClientLabels(limit=0)
    zero.hello(b"z", "anything")
    assert zero.label(b"z") == "other"


def test_the_limit_comes_from_the_environment() -> None:
    assert label_limit({}) == DEFAULT_LIMIT
    assert label_limit({LIMIT_ENV: "5"}) == 5
    assert label_limit({LIMIT_ENV: "0"}) == 0
    for bad in ("-1", "many"):
        with pytest.raises(ValueError, match=LIMIT_ENV):
            label_limit({LIMIT_ENV: bad})


def test_live_tasks_are_walked_at_most_every_hundred_walks_time() -> None:
    monitoring = Monitoring(None)
    assert monitoring.walk_due()
    monitoring._walk_started -= 0.05  # as if this view's walk took 50 ms
    walked = s.Snapshot([], 1, 0, s.Counters(), {(b"c", 0): [1, 0]})
    assert monitoring._live_tasks(walked) == {(b"c", 0): [1, 0]}
    assert not monitoring.walk_due()  # not for 5 s: the next views reuse that count
    assert monitoring._live_tasks(s.Snapshot([], 2, 0, s.Counters())) == {(b"c", 0): [1, 0]}
