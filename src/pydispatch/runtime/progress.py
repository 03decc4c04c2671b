"""Progress bars: :func:`progress` over futures or a dataflow job, drawn by ``tqdm``.

``tqdm.auto`` draws a text bar in a terminal and a widget in Jupyter. For futures the bar
counts those done (with their rate and the time left); for a job there is a bar per operator
counting the records it has put out (a streaming job has no total: count and rate), refreshed
from the job's metrics until the job ends. :func:`job_progress_lines` says the same in plain
lines, for logs and pipes (``pydispatch submit`` uses it when stderr is not a terminal).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterable
from typing import IO, Any, Final, Protocol, runtime_checkable

from .._exports import publish

__all__ = ["JobLike", "job_progress_lines", "operator_figures", "progress"]

_ENDED: Final = frozenset({"FINISHED", "FAILED", "CANCELED"})


@runtime_checkable
class JobLike(Protocol):
    """What :func:`progress` needs of a job: its id and its metrics (a ``JobHandle``)."""

    job_id: str

    def metrics(self) -> dict[str, Any]: ...


def progress(
    target: JobLike | Iterable[concurrent.futures.Future[Any]],
    *,
    file: IO[str] | None = None,
    interval: float = 0.5,
    timeout: float | None = None,
) -> None:
    """Draw progress until every future is done, or the job has ended (or ``timeout``
    seconds pass: then ``TimeoutError``). ``file``: where the bars go (tqdm's default,
    stderr, if None)."""
    from tqdm.auto import tqdm

    end = None if timeout is None else time.monotonic() + timeout
    if isinstance(target, JobLike):
        _job_bars(target, tqdm, file, interval, end)
        return
    futures = list(target)
    with tqdm(total=len(futures), unit="task", file=file) as bar:
        left = None if end is None else max(0.0, end - time.monotonic())
        for _ in concurrent.futures.as_completed(futures, timeout=left):
            bar.update(1)


def operator_figures(metrics: dict[str, Any]) -> list[tuple[str, int]]:
    """``(operator name, records out)`` for each operator of a job's metrics, in graph order
    (a sink's records in: it puts none out)."""
    graph = metrics.get("graph") or {}
    out_counts = metrics.get("records_out") or {}
    in_counts = metrics.get("records_in") or {}
    operators = graph.get("operators") or [{"id": k, "name": str(k)} for k in out_counts]
    figures = []
    for op in operators:
        key = op["id"]
        count = int(out_counts.get(key, out_counts.get(str(key), 0)) or 0)
        if count == 0 and op.get("kind") == "sink":
            count = int(in_counts.get(key, in_counts.get(str(key), 0)) or 0)
        figures.append((str(op["name"]), count))
    return figures


def _job_bars(
    job: JobLike, tqdm: Any, file: IO[str] | None, interval: float, end: float | None
) -> None:
    bars: dict[str, Any] = {}
    try:
        while True:
            metrics = job.metrics()
            for position, (name, count) in enumerate(operator_figures(metrics)):
                bar = bars.get(name)
                if bar is None:
                    bar = bars[name] = tqdm(
                        desc=name, unit="rec", position=position, file=file, leave=True
                    )
                bar.update(max(0, count - bar.n))
            if metrics.get("status") in _ENDED:
                return
            _wait(interval, end, job.job_id)
    finally:
        for bar in bars.values():
            bar.close()


def job_progress_lines(
    job: JobLike,
    write: Callable[[str], object],
    *,
    interval: float = 5.0,
    done: Callable[[], bool] | None = None,
) -> str:
    """Write one line about the job every ``interval`` seconds until it ends (or ``done()``);
    returns its last state. ``write`` gets each line (no newline)."""
    started = time.monotonic()
    while True:
        metrics = job.metrics()
        state = str(metrics.get("status", ""))
        figures = ", ".join(f"{name} {count}" for name, count in operator_figures(metrics))
        seconds = time.monotonic() - started
        write(f"{job.job_id} {state} after {seconds:.0f} s: records out: {figures}")
        if state in _ENDED or (done is not None and done()):
            return state
        time.sleep(interval)


def _wait(interval: float, end: float | None, job_id: str) -> None:
    if end is not None and time.monotonic() + interval > end:
        raise TimeoutError(f"job {job_id} has not ended in time")
    time.sleep(interval)


# Users call it as pydispatch.progress.
publish("pydispatch", globals(), ["progress"])
