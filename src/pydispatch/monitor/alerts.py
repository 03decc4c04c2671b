"""Prometheus alerting rules for a pydispatch cluster (``pydispatch alerts`` prints them).

Every threshold is a parameter of :func:`alert_rules` (and an option of the command), with the
default documented in :class:`Thresholds`. The rules read the metrics of
:mod:`pydispatch.monitor.collector`; ``promtool check rules`` and ``promtool test rules`` pass on
them (tests/monitor/test_alerts.py, with the series of tests/monitor/alerts_test.yml).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Thresholds", "alert_rules"]


@dataclass(frozen=True)
class Thresholds:
    """When each alert fires. Durations are Prometheus durations (``30s``, ``5m``, ``1h``)."""

    #: A worker removed for missing its heartbeats within this window (PydispatchWorkerLost).
    worker_lost_window: str = "5m"
    #: The queue longer than ``queue_min`` and still growing for this long
    #: (PydispatchQueueGrowing).
    queue_growing_for: str = "10m"
    queue_min: int = 100
    #: A chain's subtasks back-pressured (waiting for credit downstream) for more than this
    #: share of their time, for ``backpressure_for`` (PydispatchBackPressure).
    backpressure_ratio: float = 0.5
    backpressure_for: str = "1m"
    #: A job restarted at least this many times within ``restart_window``
    #: (PydispatchJobRestarting).
    restarts: int = 3
    restart_window: str = "15m"
    #: More than this share of the tasks ending failed, over ``failure_window``, for as long
    #: (PydispatchTaskFailures); ``failure_min_rate`` tasks/s must end for it to count.
    failure_ratio: float = 0.1
    failure_window: str = "5m"
    failure_min_rate: float = 0.1
    #: At least this many of a job's checkpoints aborted (timed out, declined, lost with a
    #: failed region) within ``checkpoint_failure_window`` (PydispatchCheckpointsFailing).
    checkpoint_failures: int = 3
    checkpoint_failure_window: str = "15m"
    #: The dispatcher not scraped successfully for this long (PydispatchDispatcherDown).
    down_for: str = "1m"


def alert_rules(thresholds: Thresholds | None = None, job: str = "pydispatch") -> str:
    """The rules file (YAML) for dispatchers scraped under the Prometheus job ``job``."""
    t = thresholds or Thresholds()
    for f in fields(t):
        value = getattr(t, f.name)
        if isinstance(value, int | float) and value < 0:
            raise ValueError(f"threshold {f.name} must be >= 0, got {value}")
    failed = f"rate(pydispatch_tasks_failed_total[{t.failure_window}])"
    ended = f"({failed} + rate(pydispatch_tasks_finished_total[{t.failure_window}]))"
    pressured = f"rate(pydispatch_chain_backpressured_seconds_total[{t.backpressure_for}])"
    rules = [
        _rule(
            "PydispatchDispatcherDown",
            f'up{{job="{job}"}} == 0',
            t.down_for,
            "critical",
            "pydispatch dispatcher {{ $labels.instance }} is not answering scrapes",
        ),
        _rule(
            "PydispatchWorkerLost",
            f'increase(pydispatch_workers_removed_total{{reason="heartbeat timeout"}}'
            f"[{t.worker_lost_window}]) > 0",
            "0s",
            "warning",
            "a worker of {{ $labels.instance }} missed its heartbeats and was removed "
            "(its running tasks were retried elsewhere)",
        ),
        _rule(
            "PydispatchQueueGrowing",
            f"pydispatch_tasks_queued > {t.queue_min} "
            f"and deriv(pydispatch_tasks_queued[{t.queue_growing_for}]) > 0",
            t.queue_growing_for,
            "warning",
            f"the queue of {{{{ $labels.instance }}}} has grown for {t.queue_growing_for} "
            "({{ $value }} tasks waiting): add workers or slots",
        ),
        _rule(
            "PydispatchBackPressure",
            f"{pressured} / on(job_id, chain, instance, job) pydispatch_chain_parallelism "
            f"> {t.backpressure_ratio}",
            t.backpressure_for,
            "warning",
            "chain {{ $labels.chain }} of job {{ $labels.job_id }} is back-pressured "
            "({{ $value | humanizePercentage }} of its time): its downstream is too slow",
        ),
        _rule(
            "PydispatchJobRestarting",
            # Not delta(): it extrapolates (3 restarts would read 3.19).
            f"max_over_time(pydispatch_job_restarts[{t.restart_window}]) "
            f"- min_over_time(pydispatch_job_restarts[{t.restart_window}]) >= {t.restarts}",
            "0s",
            "warning",
            f"job {{{{ $labels.name }}}} restarted {{{{ $value }}}} times in {t.restart_window}",
        ),
        _rule(
            "PydispatchTaskFailures",
            f"{failed} / ({ended} > {t.failure_min_rate}) > {t.failure_ratio}",
            t.failure_window,
            "warning",
            "{{ $value | humanizePercentage }} of the tasks ending on {{ $labels.instance }} "
            "fail (lost workers, impossible demands, retries used up)",
        ),
        _rule(
            "PydispatchCheckpointsFailing",
            # Not increase(): it extrapolates (as for restarts above).
            f"max_over_time(pydispatch_job_checkpoints_aborted_total"
            f"[{t.checkpoint_failure_window}]) - min_over_time("
            f"pydispatch_job_checkpoints_aborted_total[{t.checkpoint_failure_window}]) "
            f">= {t.checkpoint_failures}",
            "0s",
            "warning",
            f"job {{{{ $labels.job_id }}}} had {{{{ $value }}}} checkpoints aborted in "
            f"{t.checkpoint_failure_window}: its state is not being saved (timeouts, "
            "back-pressure, failing regions)",
        ),
    ]
    return "groups:\n  - name: pydispatch\n    rules:\n" + "".join(rules)


def _rule(name: str, expr: str, for_: str, severity: str, summary: str) -> str:
    lines = [
        f"      - alert: {name}",
        f"        expr: {_quote(expr)}",
        f"        for: {for_}",
        "        labels:",
        f"          severity: {severity}",
        "        annotations:",
        f"          summary: {_quote(summary)}",
    ]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    """A YAML single-quoted scalar (quotes doubled): safe for braces, colons and quotes."""
    return "'" + text.replace("'", "''") + "'"
