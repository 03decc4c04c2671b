"""The dispatcher's Prometheus metrics: a ``prometheus_client`` custom collector that reads a
:class:`~.view.DispatcherView` at scrape time.

Nothing is computed for a metric until Prometheus asks (the hot path only bumps the
:class:`~.recorder.Recorder`'s integers); each scrape takes one view from the dispatcher's loop
and, for the dataflow jobs running, asks their masters for their operators' figures. Every
dispatcher has a registry of its own (:func:`make_registry`): two dispatchers in one process
(the tests start several) never share a metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final

import zmq
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..wire import job_plane as jp
from .masters import ask_job_status
from .recorder import Buckets
from .view import DispatcherView

__all__ = ["ACTIVE_JOB_STATES", "DispatcherCollector", "JobFigures", "make_registry"]

#: Job states whose master is asked for operator figures at each scrape.
ACTIVE_JOB_STATES: Final = frozenset({"CREATED", "RUNNING", "RESTARTING"})
_JOB_STATES: Final = ("CREATED", "RUNNING", "RESTARTING", "FINISHED", "FAILED", "CANCELED")
_MAX_JOBS_ASKED: Final = 32  # a scrape asks this many running jobs' masters at most
_ASK_TIMEOUT: Final = 1.0  # seconds each master gets to answer a scrape


class JobFigures:
    """Running jobs' figures, asked of their masters (from the HTTP threads; own context)."""

    def __init__(self) -> None:
        self._context: zmq.Context[Any] = zmq.Context()

    def ask(self, endpoint: str, timeout: float = _ASK_TIMEOUT) -> jp.JobStatusReply | None:
        return ask_job_status(self._context, endpoint, timeout)

    def close(self) -> None:
        self._context.term()


def _histogram(name: str, documentation: str, buckets: Buckets) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=buckets.cumulative(), sum_value=buckets.total
    )


def _client_tasks(view: DispatcherView) -> Iterator[Metric]:
    """Tasks by client (its name's label: a bounded set, see client_labels) and priority."""
    key = ["client", "priority"]
    submitted = CounterMetricFamily(
        "pydispatch_tasks_submitted", "Tasks submitted, by client and priority.", labels=key
    )
    families = [
        CounterMetricFamily(f"pydispatch_client_tasks_{name}", doc, labels=key)
        for name, doc in (
            ("finished", "Tasks that ran to the end, by client and priority."),
            ("failed", "Tasks failed by the cluster, by client and priority."),
            ("cancelled", "Tasks cancelled (as their client was told), by client and priority."),
            ("retried", "Attempts placed again (a worker or slot lost), by client and priority."),
        )
    ]
    queued = GaugeMetricFamily(
        "pydispatch_client_tasks_queued", "Tasks waiting, by client and priority.", labels=key
    )
    running = GaugeMetricFamily(
        "pydispatch_client_tasks_running", "Tasks placed, by client and priority.", labels=key
    )
    for row in view.clients:
        labels = [row.client, str(row.priority)]
        if row.submitted:
            submitted.add_metric(labels, row.submitted)
        for family, value in zip(
            families, (row.finished, row.failed, row.cancelled, row.retried), strict=True
        ):
            family.add_metric(labels, value)
        queued.add_metric(labels, row.queued)
        running.add_metric(labels, row.running)
    yield from (submitted, *families, queued, running)


class DispatcherCollector(Collector):
    """``collect()`` yields the metric families of one view (see the module docstring)."""

    def __init__(self, view: Callable[[], DispatcherView], jobs: JobFigures | None) -> None:
        self._view = view
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        view = self._view()
        yield from self._tasks(view)
        yield from self._workers(view)
        yield from self._dispatcher(view)
        yield from self._job_states(view)
        if self._jobs is not None:
            yield from self._operators(view, self._jobs)

    @staticmethod
    def _tasks(view: DispatcherView) -> Iterator[Metric]:
        t, r = view.tasks, view.recorder
        yield from _client_tasks(view)
        for name, value, doc in (
            ("finished", t.finished, "Tasks that ran to the end (a result or the user's error)."),
            ("failed", t.failed, "Tasks failed by the cluster (lost too often, impossible, ...)."),
            ("cancelled", t.cancelled, "Tasks cancelled."),
            ("retried", t.retried, "Attempts run again after their worker or slot was lost."),
            ("late_results_discarded", t.discarded_late_results, "Late results discarded."),
        ):
            yield CounterMetricFamily(f"pydispatch_tasks_{name}", doc, value=value)
        yield GaugeMetricFamily("pydispatch_tasks_queued", "Tasks waiting for a slot.", t.queued)
        yield GaugeMetricFamily(
            "pydispatch_tasks_running", "Attempts placed on slots.", value=t.running
        )
        yield _histogram(
            "pydispatch_task_queue_wait_seconds",
            "From a task's submission to the placement of each of its attempts.",
            r.queue_wait,
        )
        yield _histogram(
            "pydispatch_task_run_seconds", "How long attempts ran, as slots measured.", r.run_time
        )
        placed = CounterMetricFamily(
            "pydispatch_placements", "Attempts placed, by method.", labels=["method"]
        )
        by_solver = view.solver.placed_by_solver
        placed.add_metric(["solver"], by_solver)
        placed.add_metric(["greedy"], max(0, r.placed - by_solver))
        yield placed
        s = view.solver
        yield CounterMetricFamily(
            "pydispatch_placer_rounds", "Placement rounds with constrained tasks.", value=s.rounds
        )
        yield CounterMetricFamily("pydispatch_solver_solves", "Exact solves.", value=s.solves)
        yield CounterMetricFamily(
            "pydispatch_solver_seconds", "Seconds spent in exact solves.", value=s.solve_seconds
        )
        yield GaugeMetricFamily(
            "pydispatch_solver_gap", "Optimality gap the last solve reported.", value=s.last_gap
        )

    @staticmethod
    def _workers(view: DispatcherView) -> Iterator[Metric]:
        workers = view.workers
        yield GaugeMetricFamily("pydispatch_workers", "Registered workers.", value=len(workers))
        yield GaugeMetricFamily(
            "pydispatch_slots",
            "Slots of the registered workers.",
            sum(w.worker.slots for w in workers),
        )
        yield GaugeMetricFamily(
            "pydispatch_slots_busy",
            "Slots holding attempts.",
            value=sum(w.worker.slots_used for w in workers),
        )
        yield GaugeMetricFamily(
            "pydispatch_workers_draining",
            "Workers draining.",
            value=sum(1 for w in workers if w.worker.draining),
        )
        removed = CounterMetricFamily(
            "pydispatch_workers_removed", "Workers removed, by reason.", labels=["reason"]
        )
        for reason, count in sorted(view.recorder.workers_removed.items()):
            removed.add_metric([reason], count)
        yield removed
        labels = ["worker", "node"]
        slots = GaugeMetricFamily("pydispatch_worker_slots", "Slots of a worker.", labels=labels)
        busy = GaugeMetricFamily(
            "pydispatch_worker_slots_busy", "A worker's slots holding attempts.", labels=labels
        )
        beat = GaugeMetricFamily(
            "pydispatch_worker_heartbeat_age_seconds",
            "Seconds since a worker was last heard from.",
            labels=labels,
        )
        cpu = CounterMetricFamily(
            "pydispatch_worker_cpu_seconds",
            "CPU seconds of a worker's processes (it and its slots), per its last heartbeat.",
            labels=labels,
        )
        rss = GaugeMetricFamily(
            "pydispatch_worker_resident_memory_bytes",
            "Resident memory of a worker's processes, per its last heartbeat.",
            labels=labels,
        )
        draining = GaugeMetricFamily(
            "pydispatch_worker_draining", "1 while a worker drains.", labels=labels
        )
        resource = ["worker", "node", "resource"]
        total = GaugeMetricFamily(
            "pydispatch_worker_resource", "Resources a worker offers.", labels=resource
        )
        free = GaugeMetricFamily(
            "pydispatch_worker_resource_free", "Resources of a worker not held.", labels=resource
        )
        for w in workers:
            snap = w.worker
            key = [snap.name, snap.node]
            slots.add_metric(key, snap.slots)
            busy.add_metric(key, snap.slots_used)
            beat.add_metric(key, snap.seconds_since_heartbeat)
            cpu.add_metric(key, w.cpu_seconds)
            rss.add_metric(key, w.rss_bytes)
            draining.add_metric(key, 1.0 if snap.draining else 0.0)
            for name, amount in snap.resources.items():
                total.add_metric([*key, name], amount)
                free.add_metric([*key, name], snap.free_resources.get(name, 0.0))
        yield from (slots, busy, beat, cpu, rss, draining, total, free)

    @staticmethod
    def _dispatcher(view: DispatcherView) -> Iterator[Metric]:
        r = view.recorder
        yield _histogram(
            "pydispatch_dispatcher_loop_seconds",
            "Time one iteration of the dispatcher's loop took (messages, a round, sends).",
            r.loop,
        )
        yield CounterMetricFamily(
            "pydispatch_messages_received", "Messages the dispatcher received.", r.messages_in
        )
        yield CounterMetricFamily(
            "pydispatch_messages_sent", "Messages the dispatcher sent.", value=r.messages_out
        )
        yield CounterMetricFamily(
            "pydispatch_payload_received_bytes",
            "Bytes of the frames after the headers of messages received.",
            value=r.payload_bytes_in,
        )
        yield CounterMetricFamily(
            "pydispatch_payload_sent_bytes",
            "Bytes of the frames after the headers of messages sent.",
            value=r.payload_bytes_out,
        )
        yield CounterMetricFamily(
            "pydispatch_peer_messages_refused",
            "Messages refused (malformed, unknown, wrong version or inconsistent).",
            value=view.tasks.protocol_errors,
        )
        yield GaugeMetricFamily(
            "pydispatch_dispatcher_uptime_seconds", "Seconds since start.", value=view.uptime
        )

    @staticmethod
    def _job_states(view: DispatcherView) -> Iterator[Metric]:
        by_state = GaugeMetricFamily(
            "pydispatch_jobs", "Dataflow jobs the dispatcher lists, by state.", labels=["state"]
        )
        counts = dict.fromkeys(_JOB_STATES, 0)
        for job in view.jobs:
            counts[job.state] = counts.get(job.state, 0) + 1
        for state, count in counts.items():
            by_state.add_metric([state], count)
        yield by_state
        # "job_id", not "job": Prometheus gives every scraped series its target's "job".
        attempt = GaugeMetricFamily(
            "pydispatch_job_restarts",
            "Restarts of a listed job so far (its attempt number minus one).",
            labels=["job_id", "name", "state"],
        )
        for job in view.jobs:
            attempt.add_metric([job.job_id, job.name, job.state], max(0, job.attempt - 1))
        yield attempt

    @staticmethod
    def _operators(view: DispatcherView, jobs: JobFigures) -> Iterator[Metric]:
        op_labels = ["job_id", "operator", "name"]
        chain_labels = ["job_id", "chain"]
        records_in = CounterMetricFamily(
            "pydispatch_operator_records_in", "Records into an operator.", labels=op_labels
        )
        records_out = CounterMetricFamily(
            "pydispatch_operator_records_out", "Records out of an operator.", labels=op_labels
        )
        bytes_in = CounterMetricFamily(
            "pydispatch_operator_bytes_in",
            "Bytes of the batches an operator received from other subtasks.",
            labels=op_labels,
        )
        bytes_out = CounterMetricFamily(
            "pydispatch_operator_bytes_out",
            "Bytes of the batches an operator sent to other subtasks.",
            labels=op_labels,
        )
        watermark = GaugeMetricFamily(
            "pydispatch_operator_watermark",
            "A time window's watermark (event time, the job's own unit).",
            labels=op_labels,
        )
        lag = GaugeMetricFamily(
            "pydispatch_operator_watermark_lag",
            "How far a time window's watermark trails the newest mark of its inputs (event "
            "time, the job's own unit).",
            labels=op_labels,
        )
        # A gauge: a subtask's busy time is its time so far less its waits, and a wait is
        # counted once it ends, so the figure can step back while one is under way.
        busy = GaugeMetricFamily(
            "pydispatch_chain_busy_seconds",
            "Seconds a chain's subtasks were busy, summed over them (may step back while "
            "a subtask waits for input).",
            labels=chain_labels,
        )
        parallelism = GaugeMetricFamily(
            "pydispatch_chain_parallelism", "Subtasks of a chain.", labels=chain_labels
        )
        pressured = CounterMetricFamily(
            "pydispatch_chain_backpressured_seconds",
            "Seconds a chain's subtasks waited for credit downstream (back-pressure).",
            labels=chain_labels,
        )
        shuffled = CounterMetricFamily(
            "pydispatch_job_shuffled_bytes", "Bytes exchanged between subtasks.", labels=["job_id"]
        )
        per_operator: list[tuple[CounterMetricFamily | GaugeMetricFamily, str]] = [
            (bytes_in, "bytes_in"),
            (bytes_out, "bytes_out"),
            (watermark, "watermark"),
            (lag, "watermark_lag"),
        ]
        checkpoints = CounterMetricFamily(
            "pydispatch_job_checkpoints",
            "Checkpoints a job completed (env.enable_checkpointing).",
            labels=["job_id"],
        )
        checkpoints_aborted = CounterMetricFamily(
            "pydispatch_job_checkpoints_aborted",
            "Checkpoints of a job aborted (timed out, declined, or lost with a failed region).",
            labels=["job_id"],
        )
        checkpoint_seconds = GaugeMetricFamily(
            "pydispatch_job_checkpoint_duration_seconds",
            "How long a job's last checkpoint took, trigger to last acknowledgement.",
            labels=["job_id"],
        )
        checkpoint_bytes = GaugeMetricFamily(
            "pydispatch_job_checkpoint_size_bytes",
            "The stored size of a job's last checkpoint.",
            labels=["job_id"],
        )
        active = [j for j in view.jobs if j.state in ACTIVE_JOB_STATES and j.endpoint]
        for job in active[:_MAX_JOBS_ASKED]:
            reply = jobs.ask(job.endpoint)
            if reply is None:
                continue
            m = reply.metrics
            names = _operator_names(m)
            for op, count in _items(m.get("records_in")):
                records_in.add_metric([job.job_id, op, names.get(op, "")], count)
            for op, count in _items(m.get("records_out")):
                records_out.add_metric([job.job_id, op, names.get(op, "")], count)
            for target, key in per_operator:
                for op, value in _items(m.get(key)):
                    target.add_metric([job.job_id, op, names.get(op, "")], value)
            for chain, seconds in _items(m.get("busy_seconds")):
                busy.add_metric([job.job_id, chain], seconds)
            for chain, seconds in _items(m.get("backpressured_seconds")):
                pressured.add_metric([job.job_id, chain], seconds)
            shuffled.add_metric([job.job_id], float(m.get("bytes_shuffled") or 0))
            for chain_name, subtasks in _chains(m):
                parallelism.add_metric([job.job_id, chain_name], subtasks)
            figures = m.get("checkpoints")
            if isinstance(figures, dict):
                checkpoints.add_metric([job.job_id], float(figures.get("completed") or 0))
                aborted = float(figures.get("aborted") or 0)
                checkpoints_aborted.add_metric([job.job_id], aborted)
                seconds = float(figures.get("last_duration") or 0)
                checkpoint_seconds.add_metric([job.job_id], seconds)
                checkpoint_bytes.add_metric([job.job_id], float(figures.get("last_size") or 0))
        yield from (records_in, records_out, bytes_in, bytes_out, watermark, lag)
        yield from (busy, pressured, parallelism, shuffled)
        yield from (checkpoints, checkpoints_aborted, checkpoint_seconds, checkpoint_bytes)


def _items(figures: object) -> list[tuple[str, float]]:
    if not isinstance(figures, dict):
        return []
    return [(str(k), float(v)) for k, v in figures.items() if isinstance(v, int | float)]


def _chains(metrics: dict[str, Any]) -> list[tuple[str, int]]:
    graph = metrics.get("graph")
    if not isinstance(graph, dict):
        return []
    return [(str(c.get("name", "")), int(c.get("parallelism", 1))) for c in graph.get("chains", [])]


def _operator_names(metrics: dict[str, Any]) -> dict[str, str]:
    graph = metrics.get("graph")
    if not isinstance(graph, dict):
        return {}
    return {str(op.get("id")): str(op.get("name", "")) for op in graph.get("operators", [])}


def make_registry(view: Callable[[], DispatcherView], jobs: JobFigures | None) -> CollectorRegistry:
    """A registry of its own for one dispatcher: its collector, and this process's standard
    process metrics (CPU, memory, open files) from ``prometheus_client``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DispatcherCollector(view, jobs))
    ProcessCollector(namespace="pydispatch_dispatcher", registry=registry)
    return registry
