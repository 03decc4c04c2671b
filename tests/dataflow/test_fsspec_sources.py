"""Text and CSV sources read through fsspec URLs on a LocalCluster (real slots, real fsspec):
each worker opens its own byte range of the file through fsspec, the results equal the
local path's; a URL a worker cannot open fails the job at once, naming the URL; a protocol
fsspec does not know is refused where the job is built."""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import pytest

from pydispatch.errors import JobFailedError
from pydispatch.runtime.cluster import LocalCluster
from pydispatch.stream import FixedDelay, StreamEnvironment

CLUSTER = {"workers": 2, "slots": 2}

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]


def _book(path: Path, lines: int) -> Path:
    path.write_text(
        "".join(" ".join(WORDS[(i * k) % 6] for k in range(1, 8)) + "\n" for i in range(lines))
    )
    return path


def _word_count(env: StreamEnvironment, source: str) -> dict[str, int]:
    words = env.read_text(source).flat_map(str.split).map(lambda w: (w, 1))
    return dict(words.key_by(0).sum(1).collect())  # type: ignore[arg-type]


def test_a_file_url_is_read_in_splits_like_its_path(cluster: LocalCluster, tmp_path: Path) -> None:
    book = _book(tmp_path / "book.txt", 3_000)
    expected = collections.Counter(book.read_text().split())
    on_cluster = _word_count(StreamEnvironment(cluster, parallelism=3), book.as_uri())
    assert on_cluster == expected
    assert _word_count(StreamEnvironment(parallelism=3), book.as_uri()) == expected  # in process


def test_a_csv_url_with_a_header(cluster: LocalCluster, tmp_path: Path) -> None:
    table = tmp_path / "table.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "count"])
        writer.writerows([f"n{i}", str(i)] for i in range(500))
    env = StreamEnvironment(cluster, parallelism=2)
    rows = env.read_csv(table.as_uri(), header=True).collect()
    with table.open(newline="") as f:
        assert sorted(rows, key=str) == sorted(csv.DictReader(f), key=str)  # type: ignore[arg-type]


def test_a_url_no_worker_can_open_fails_the_job_naming_it(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    data = _book(tmp_path / "gone.txt", 10)
    env = StreamEnvironment(cluster)
    env.set_restart_strategy(lambda: FixedDelay(attempts=3, delay=5.0))
    env.read_text(data.as_uri()).for_each(lambda line: None)
    data.unlink()  # there when the job was built, not when it runs
    handle = env.execute("unseen-url")
    with pytest.raises(JobFailedError) as info:
        handle.result(timeout=60)
    assert f"cannot read {data.as_uri()}: no such file" in str(info.value)
    assert handle.metrics()["restarts"] == 0  # no restart could help


def test_urls_that_cannot_be_read_are_refused_where_the_job_is_built(tmp_path: Path) -> None:
    env = StreamEnvironment()
    with pytest.raises(ValueError, match="no such file"):
        env.read_text((tmp_path / "missing.txt").as_uri())
    with pytest.raises(ValueError, match="nosuchprotocol"):
        env.read_text("nosuchprotocol://bucket/book.txt")
