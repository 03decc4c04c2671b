"""The dashboard in a real headless Chromium (Debian's chromium and its chromedriver, driven
by Selenium; no browser is downloaded): while a dataflow job runs, the page shows the
workers, the job with its operator graph, and figures that change between two looks; no
console errors. A screenshot of each page is kept in the test's temporary directory."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from _support.process_guard import eventually
from pydispatch.plan import ExecutionGraph
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import JobHandle, StreamEnvironment

cloudpickle.register_pickle_by_value(sys.modules[__name__])

CLUSTER: dict[str, Any] = {
    "workers": 2,
    "slots": 2,
    "http": True,
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 10.0,
}

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def endless(index: int = 0, parallelism: int = 1) -> Iterator[int]:
    i = index
    while True:
        if i % 50 == index:
            time.sleep(0.01)  # about 5k records/s per subtask: figures move, cores stay free
        yield i
        i += parallelism


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    for needed in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(needed):
            pytest.fail(f"{needed} is missing: apt-get install chromium chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def texts(driver: Any, selector: str) -> list[str]:
    """The text of each element ``selector`` matches, read in one script: the page redraws
    every second, so elements found in one call may be gone (stale) by the next."""
    found: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)",
        selector,
    )
    return found


def attributes(driver: Any, selector: str, name: str) -> list[str]:
    found: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(e => e.getAttribute(arguments[1]))",
        selector,
        name,
    )
    return found


@pytest.mark.slow
def test_dashboard_shows_workers_a_running_job_and_moving_figures(
    cluster: LocalCluster, browser: Any, tmp_path: Path
) -> None:
    env = StreamEnvironment(cluster, parallelism=2)
    (
        env.from_source(endless, bounded=False)
        .name("numbers")
        .map(lambda x: (x % 7, 1))
        .name("pairs")
        .key_by(lambda pair: pair[0])
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
        .name("counts")
        .for_each(lambda record: None)
        .name("discard")
    )
    plan = ExecutionGraph(env.job_graph)
    handle = env.execute("dashboard-job")
    assert isinstance(handle, JobHandle)
    try:
        browser.get(cluster.http_url + "/")
        eventually(
            lambda: len(texts(browser, "#workers-table tbody tr")) == 2,
            "the workers table lists both workers",
        )
        names = set(texts(browser, "#workers-table tbody tr td:first-child"))
        assert names == {"worker-0", "worker-1"}
        assert texts(browser, "#stat-slots")[0].endswith("/4")
        eventually(
            lambda: any(handle.job_id in t for t in texts(browser, "#jobs-table tbody tr")),
            "the jobs table lists the running job",
        )
        # Tasks by client: the job's slices are tasks of its master's client; a named one's.
        named = cluster.client(name="dashboard test")
        assert named.submit(abs, -3).result(60) == 3
        named.shutdown()

        def client_rows() -> dict[str, list[str]]:
            rows: list[list[str]] = browser.execute_script(  # in one script: see texts()
                "return Array.from(document.querySelectorAll('#clients-table tbody tr'))"
                ".map(r => Array.from(r.cells).map(c => c.textContent))"
            )
            return {row[0]: row for row in rows if row}

        eventually(lambda: "dashboard test" in client_rows(), "the named client's row shows")
        assert client_rows()["dashboard test"][2] == "1"  # submitted
        assert "job-master" in client_rows()
        browser.save_screenshot(str(tmp_path / "overview.png"))

        # The job's link, followed as a click would (found and clicked in one script: the
        # table is redrawn every second).
        browser.execute_script("document.querySelector('#jobs-table a.job-link').click()")
        eventually(
            lambda: len(texts(browser, "#job-graph .operator")) > 0,
            "the job page draws the operator graph",
        )
        shown = set(attributes(browser, "#job-graph .operator", "data-name"))
        assert shown == {"numbers", "pairs", "counts", "discard"}
        partitionings = set(attributes(browser, "#job-graph .edge", "data-partitioning"))
        assert "hash" in partitionings  # key_by's exchange
        chains = attributes(browser, "#job-graph .chain", "data-chain")
        assert chains == [c.name for c in plan.chains]
        assert len(plan.chains) < 4  # some operators are chained: the graph shows it

        def source_records_out() -> int:
            selector = '#job-graph .operator[data-name="numbers"]'
            found = attributes(browser, selector, "data-records-out")
            return int(found[0]) if found else 0

        eventually(lambda: source_records_out() > 0, "the source's records out are shown")
        first = source_records_out()
        eventually(lambda: source_records_out() > first, "the source's records out grow")

        # The keyed exchange's bytes: sent by pairs (its chain's tail), received by counts.
        def exchanged(name: str, side: str) -> int:
            selector = f'#job-graph .operator[data-name="{name}"]'
            found = attributes(browser, selector, f"data-bytes-{side}")
            return int(found[0]) if found else 0

        eventually(lambda: exchanged("counts", "in") > 0, "bytes into the keyed operator shown")
        assert exchanged("pairs", "out") > 0
        assert exchanged("numbers", "in") == 0
        rows = texts(browser, "#operators-table tbody tr td:first-child")
        assert rows == ["numbers", "pairs", "counts", "discard"]
        assert len(texts(browser, "#slices-table tbody tr")) == 2
        browser.save_screenshot(str(tmp_path / "job.png"))
        assert (tmp_path / "job.png").stat().st_size > 0
        print(f"screenshots: {tmp_path / 'overview.png'} {tmp_path / 'job.png'}")

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        handle.cancel()
