"""Dataflow jobs: describe a job as parallel operators over streams of records.

Each call on a :class:`StreamEnvironment` or a stream appends to the environment's
:class:`JobGraph` (a new frozen graph each time); nothing runs until a sink's ``collect()`` or
the environment's ``execute()``. ``pydispatch.plan`` turns the graph into chained subtasks.

Modes. ``execute()`` returns a ``JobHandle`` in every mode (``status()``, ``result()``,
``cancel()``), so the same code runs in both. ``StreamEnvironment()`` (no target) runs jobs in
this process, single-threaded, with the reference executor, before ``execute()`` returns; with a
target (a dispatcher's address, a client or a cluster) ``execute()`` submits the job to the
dispatcher and returns at once: the dispatcher runs the job's master
in a process of its own (``pydispatch.dataflow.master_process``), so the job goes on if the
submitting process exits; subtasks run on the workers and exchange micro-batches directly (see
``pydispatch.dataflow.slice``). ``StreamEnvironment.local()``'s embedded cluster lives and dies with
this process, and so do its jobs: their masters run in this process (as in Flink's MiniCluster),
behind the same ``JobHandle``. A job whose sources are all bounded runs in batch mode (Flink's
``AUTOMATIC`` runtime mode): keyed aggregations emit one final result per key at the end of input.
With an unbounded source they are rolling: one updated result per input record.

Paths. A relative path given to ``read_text``, ``read_csv`` or ``write_text`` is made absolute
when the operator is added, against this process's working directory: where the user wrote it,
not where the job's master or a worker runs. On a cluster every worker must see the same path (a
shared file system); a worker that cannot fails the job at once, naming itself and the path.

Records and results.

- Records are any Python objects; ``from_arrays`` starts the columnar path: records travel as
  dicts of numpy columns and keyed ``sum``/``min``/``max``/``count`` on a column stay columnar
  (a Python ``map``/``filter``/``flat_map`` turns the rows into ``dict`` records).
- Keys: ``key_by(function)``, ``key_by(i)`` (``record[i]``), ``key_by("name")`` (a dict field or a
  column). Equal keys meet in one subtask: a key's key group (of the operator's max
  parallelism) comes from pydispatch's hash, or Flink's with ``scheme="flink"``, and each
  subtask owns a contiguous range of key groups as in Flink.
- Keyed ``sum``/``min``/``max`` (of ``record[field]``, or of the record itself when ``field``
  is None) and ``count`` emit ``(key, value)`` (Flink's keep the first record with the field
  replaced); on the columnar path, columns ``{key_column: keys, field: values}`` (``"count"``
  for a count). ``reduce`` emits records, as Flink's does.
- Tumbling windows: ``count_window(n)`` fires every ``n`` records of a key, emitting
  ``(key, value)``; as in Flink, a last incomplete window of a bounded input is not fired.
  ``time_window(size, timestamp=...)`` groups by event time into ``[k * size, (k + 1) * size)``
  and emits ``(key, window_start, value)``, all windows firing at the end of input (the
  watermark of a bounded input reaches +inf then).
- Order: Flink gives no global order across parallel subtasks. The in-process executor is
  deterministic: ``collect()`` returns sink subtask 0's records, then subtask 1's, ...; each
  subtask reads its input channels in upstream subtask order. With parallelism 1 throughout, the
  input order is kept. Batch aggregations emit keys in first-seen order per subtask (sorted on
  the columnar path).

On a cluster (``StreamEnvironment(address_cluster_or_client)``, ``StreamEnvironment.local()``).

- Same results as in process, up to order: ``collect()`` still concatenates sink subtask 0's
  records, then 1's...; but a subtask with several input channels sees them interleaved as they
  arrive (as in Flink), so what depends on the order of one key's records across channels (count
  windows, a non-commutative ``reduce``) may differ. With one channel per consumer it does not.
- The job belongs to the dispatcher, not to the process that submitted it: any process gets a
  handle to it by id (``JobHandle.attach(address, job_id)``; ``pydispatch jobs`` lists them).
  Its master keeps the outcome after the job ends until a handle fetched it or for
  ``set_result_retention`` seconds (10 minutes by default), then exits.
- Each slice of slot sharing (subtask ``i`` of every chain) runs as one task in one worker slot,
  placed by the solver from the plan's traffic estimates; data moves between subtasks directly,
  in micro-batches with credit-based flow control (``set_network``).
- A failure (a lost worker, an exception) restarts its pipelined region (the slices joined by
  channels: the whole job as soon as it has a keyed or rebalance exchange) from its replayable
  sources under the restart strategy (``set_restart_strategy``; Flink's fixed delay by
  default): collected results come from each region's successful attempt only, so nothing is
  missing or twice; ``write_text`` rewrites its files; ``for_each`` side effects of failed
  attempts are not undone.
- Streaming mode (an unbounded source): a time window fires when its watermark passes the
  window's end: each producer marks every channel into the window with the largest event time
  it sent (timestamps taken to ascend per channel, Flink's ``forMonotonousTimestamps``), and the
  window's watermark is the least mark over its input channels; a record older than a window
  already fired is dropped, as Flink drops late data. A channel that never carries anything
  holds the watermark back (Flink's idle sources), and those windows fire at end of input.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy.typing as npt

from ..dataflow.handle import JobHandle
from ..dataflow.lifecycle import (
    RestartStrategy,
)
from ..dataflow.positions import SplitSource
from ..dataflow.result import JobResult
from ..plan import ExecutionGraph, _files, _sources, execution_graph
from ..plan._job_graph import Edge, JobGraph, Operator, Schema
from ._checks import check_callable, check_parallelism

# import cycle: ``_datastream`` names this module's StreamEnvironment for type checking only
from ._datastream import DataStream, DataStreamSink, KeyedStream, StreamInput, WindowedStream

log = logging.getLogger(__name__)

__all__ = ["StreamEnvironment", "StreamExecutionEnvironment"]

#: ``pydispatch submit ... --from-savepoint PATH`` runs the job's script with this set: its
#: ``execute()`` starts from that savepoint.
_SAVEPOINT_ENV = "PYDISPATCH_FROM_SAVEPOINT"


# What a slot imports to run a slice (the modules of a slice's operators come with it).
_SLICE_MODULES = ("pydispatch.dataflow.slice",)


class StreamEnvironment:
    """The context a job is built in; see the module docstring.

    ``target``: where jobs run: None (in this process), a :class:`~pydispatch.Client`,
    a :class:`~pydispatch.LocalCluster` or a dispatcher address; see :meth:`local`.
    ``parallelism``: the default parallelism of new operators. ``keys`` and ``identity``: as
    for :class:`~pydispatch.Client` (by default a Client's or a LocalCluster's own keys, else
    ``PYDISPATCH_KEYS`` / ``PYDISPATCH_IDENTITY``); jobs then belong to that key.
    """

    def __init__(
        self,
        target: object | None = None,
        *,
        parallelism: int = 1,
        keys: str | None = None,
        identity: str | None = None,
    ) -> None:
        self._target = target
        self._keys = keys
        self._identity = identity
        self._parallelism = check_parallelism(parallelism, "StreamEnvironment")
        self._graph = JobGraph()
        self._chaining = True
        self._executed: set[int] = set()
        self._restart_factory: Callable[[], RestartStrategy] | None = None
        self._batch_records = 4096
        self._credits = 8
        self._master_timeout = 60.0
        self._host = ""  # "": where the dispatcher's clients reach it (see set_network)
        self._retention = 600.0
        self._checkpoint: Any = None  # a CheckpointConfig (enable_checkpointing)
        self._owned: object | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        # Job masters run here, not under the dispatcher (see local()): each with its client.
        self._masters: list[tuple[Any, Any]] | None = None

    @property
    def target(self) -> object | None:
        return self._target

    @property
    def parallelism(self) -> int:
        return self._parallelism

    def set_parallelism(self, parallelism: int) -> StreamEnvironment:
        """The default parallelism of operators created from now on."""
        self._parallelism = check_parallelism(parallelism, "set_parallelism")
        return self

    def disable_operator_chaining(self) -> StreamEnvironment:
        self._chaining = False
        return self

    @property
    def chaining_enabled(self) -> bool:
        return self._chaining

    @property
    def job_graph(self) -> JobGraph:
        return self._graph

    def _replace_operator(self, op_id: int, **changes: Any) -> None:
        self._graph = self._graph.replace(op_id, **changes)

    # -- building ---------------------------------------------------------------------------

    def _add(self, inputs: Sequence[StreamInput], **fields: Any) -> int:
        op_id = len(self._graph.operators)
        fields.setdefault("parallelism", self._parallelism)
        op = Operator(id=op_id, **fields)
        edges = tuple(
            Edge(i.op, op_id, i.partitioning, i.explicit, i.key, i.partitioner) for i in inputs
        )
        self._graph = self._graph.with_operator(op, edges)
        return op_id

    def _source(
        self, name: str, params: dict[str, Any], schema: Schema, **fields: Any
    ) -> DataStream:
        op_id = self._add(
            (),
            name=f"Source: {name}",
            kind="source",
            chaining="head",
            params=params,
            schema=schema,
            **fields,
        )
        return DataStream(self, (StreamInput(op_id),), op=op_id)

    def from_elements(self, elements: Iterable[Any], *, name: str | None = None) -> DataStream:
        """A non-parallel bounded source of ``elements`` (copied now): parallelism 1, like
        Flink's ``fromElements``. ``env.from_elements([1, 2, 3])`` has three records."""
        if isinstance(elements, str | bytes) or not isinstance(elements, Iterable):
            raise TypeError(
                f"from_elements takes one iterable of records, not {type(elements).__name__}"
            )
        params = {"source": "elements", "elements": tuple(elements), "bounded": True}
        return self._source(name or "Elements", params, Schema(), parallelism=1, parallel=False)

    def from_collection(
        self, collection: Collection[Any], *, name: str | None = None
    ) -> DataStream:
        """A parallel bounded source of ``collection`` (copied now), each subtask reading a
        contiguous slice (Flink's ``fromParallelCollection``)."""
        if isinstance(collection, str | bytes) or not isinstance(collection, Collection):
            raise TypeError(
                f"from_collection takes a sized collection, not {type(collection).__name__}"
            )
        params = {"source": "elements", "elements": tuple(collection), "bounded": True}
        return self._source(name or "Collection", params, Schema())

    def from_arrays(
        self, columns: Mapping[str, npt.NDArray[Any]], *, name: str | None = None
    ) -> DataStream:
        """A parallel bounded columnar source: a dict of equal-length 1-D numpy columns, each
        subtask reading a contiguous range of rows. The arrays are kept, not copied."""
        checked = _sources.check_columns(columns)
        row_bytes = float(sum(c.dtype.itemsize for c in checked.values()))
        schema = Schema(columnar=True, fields=tuple(checked), row_bytes=row_bytes)
        params = {"source": "arrays", "columns": checked, "bounded": True}
        return self._source(name or "Arrays", params, schema)

    def read_text(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        encoding: str = "utf-8",
        monitor: float | None = None,
        name: str | None = None,
    ) -> DataStream:
        """A parallel bounded source of the lines of text files (line ends stripped). Each file
        is cut into byte ranges, one per subtask; a line belongs to the range of its first
        byte.

        ``monitor=seconds``: ``paths`` is ONE directory, read as an unbounded source (Flink's
        continuously monitored file source): its files (names not starting with ".") are
        read, and it is listed again every ``seconds`` for new files and for lines appended
        to those read (whole lines only); each file goes to one subtask (by its name's
        hash); the position a checkpoint keeps is the offset reached in each file. In process
        (no target) the directory's files are read once, as they are."""
        if monitor is not None:
            return self._monitored(paths, monitor, encoding, name)
        files = _paths(paths, "read_text")
        params = {
            "source": "text",
            "paths": files,
            "sizes": _sizes(files),
            "encoding": encoding,
            "bounded": True,
        }
        return self._source(name or f"Text {os.path.basename(files[0])}", params, Schema())

    def _monitored(
        self, path: object, monitor: float, encoding: str, name: str | None
    ) -> DataStream:
        if not isinstance(path, str | os.PathLike):
            raise TypeError("read_text(monitor=...): paths must be one directory")
        directory = os.path.abspath(os.fspath(path))
        if not isinstance(monitor, int | float) or not monitor > 0:
            raise ValueError(f"read_text: monitor must be a number of seconds > 0: {monitor!r}")
        if not os.path.isdir(directory):
            raise ValueError(f"read_text(monitor=...): {directory} is not a directory")
        params = {
            "source": "monitor",
            "path": directory,
            "monitor": float(monitor),
            "encoding": encoding,
            "bounded": False,
        }
        return self._source(name or f"Monitored {os.path.basename(directory)}", params, Schema())

    def read_csv(
        self,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        header: bool = False,
        columns: Sequence[str] | None = None,
        delimiter: str = ",",
        encoding: str = "utf-8",
        name: str | None = None,
    ) -> DataStream:
        """A parallel bounded source of CSV rows, split like :meth:`read_text` (one record per
        line). Rows are dicts of str when field names are known (``header=True`` reads them
        from the first file's first line; ``columns`` names them), else tuples of str. With
        ``header=True`` every file's first line is a header and is skipped."""
        files = _paths(paths, "read_csv")
        fields: tuple[str, ...] | None = None
        if columns is not None:
            if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
                raise TypeError("read_csv: columns must be a sequence of str")
            fields = tuple(columns)
        elif header:
            fields = _sources.csv_header(files[0], encoding, delimiter)
        if fields is not None and len(set(fields)) != len(fields):
            raise ValueError(f"read_csv: duplicate column names in {fields}")
        params = {
            "source": "csv",
            "paths": files,
            "sizes": _sizes(files),
            "encoding": encoding,
            "bounded": True,
            "delimiter": delimiter,
            "fields": fields,
            "header": header,
        }
        return self._source(
            name or f"CSV {os.path.basename(files[0])}", params, Schema(fields=fields)
        )

    def from_source(
        self,
        factory: Callable[..., Iterable[Any]] | SplitSource,
        *,
        bounded: bool = True,
        parallel: bool = False,
        estimated_records: float | None = None,
        name: str | None = None,
    ) -> DataStream:
        """A replayable source: ``factory()`` (or ``factory(index, parallelism)`` when
        ``parallel``) returns an iterable of the records from the beginning, on every call, so a
        failed subtask can be replayed. ``bounded=False`` marks an unbounded source: the job
        runs in streaming mode (until cancelled, on a cluster; the in-process mode reads the
        iterable to its end, so give it one there).

        ``factory`` may instead be a :class:`SplitSource`: a source read by splits, each with
        its own position in checkpoints (``bounded`` and ``parallel`` then come from it: it is
        parallel, its ``bounded`` attribute says)."""
        if isinstance(factory, SplitSource):
            split_params = {
                "source": "split",
                "split_source": factory,
                "bounded": bool(factory.bounded),
                "estimated_records": estimated_records,
            }
            return self._source(name or type(factory).__name__, split_params, Schema())
        check_callable(factory, "from_source")
        if estimated_records is not None and not estimated_records >= 0:
            raise ValueError(f"from_source: estimated_records must be >= 0: {estimated_records}")
        params = {
            "source": "factory",
            "factory": factory,
            "parallel": bool(parallel),
            "bounded": bool(bounded),
            "estimated_records": estimated_records,
        }
        fields: dict[str, Any] = {} if parallel else {"parallelism": 1, "parallel": False}
        return self._source(name or "Source", params, Schema(), **fields)

    # -- running ----------------------------------------------------------------------------

    def execution_graph(self) -> ExecutionGraph:
        """The chained plan of everything built so far (see :mod:`pydispatch.plan`)."""
        return execution_graph(self._graph, chaining=self._chaining)

    def execute(
        self, name: str | None = None, *, priority: int = 0, from_savepoint: str = ""
    ) -> JobHandle:
        """Run every sink not run yet (and what feeds them) as one job; its :class:`JobHandle`
        (``status()``, ``result()``, ``cancel()``, ``metrics()``; ``collected`` and the other
        attributes of the :class:`JobResult` wait for the result), whatever the target.

        With a target: submitted to the dispatcher, returning once the job's master has planned
        and deployed it; a job that can never fit the cluster raises ``ValueError`` with the
        reason, and a failure while it runs is raised by ``result()`` (``JobFailedError``).
        Without a target: run in this process before returning (the handle is FINISHED), and
        an exception of the job (the user's functions, a bad partitioner) is raised here, as
        itself, with its traceback.
        ``priority``: the job's slices are queued at the dispatcher with it (higher first; jobs
        of equal priority share the slots fairly: each job's master is a client of its own).
        ``from_savepoint``: a savepoint's directory (``JobHandle.savepoint``) the job starts
        from, its keyed state redistributed to this job's parallelism (on a cluster, with
        checkpointing enabled)."""
        from_savepoint = from_savepoint or os.environ.get(_SAVEPOINT_ENV, "")
        if from_savepoint and (self._target is None or self._checkpoint is None):
            raise ValueError("from_savepoint needs a cluster target and enable_checkpointing")
        pending = {op.id for op in self._graph.sinks()} - self._executed
        if not pending:
            raise RuntimeError("execute: no sinks to run; add collect/write_text/for_each first")
        keep = sorted(self._graph.ancestors(pending))
        job = self._graph.subgraph(set(keep))
        if self._target is not None:
            from ..dataflow.handle import dispatcher_address, submit_job, target_keys
            from ..dataflow.job_run import JobOptions

            options = JobOptions(
                chaining=self._chaining,
                batch_records=self._batch_records,
                credits=self._credits,
                master_timeout=self._master_timeout,
                host=self._host,
                priority=priority,
                restart=self._restart_factory() if self._restart_factory else None,
                result_retention=self._retention,
                checkpoint=self._checkpoint,
                from_savepoint=from_savepoint,
            )
            address = dispatcher_address(self._target)
            if self._masters is not None:
                options.host = options.host or "127.0.0.1"  # a LocalCluster's: this host
                handle = self._run_master_here(address, job, name or "job", options, keep)
            else:
                keys = target_keys(self._target, self._keys, self._identity)
                handle = submit_job(address, job, name or "job", options, keep, keys=keys)
            self._executed |= pending
            return handle
        from ..dataflow.local import run_local

        started = time.monotonic()
        result = run_local(job, name=name or "job", chaining=self._chaining)
        self._executed |= pending

        def old(ids: dict[int, Any]) -> dict[int, Any]:
            return {keep[new]: value for new, value in ids.items()}

        finished = JobResult(
            result.name,
            result.runtime_mode,
            old(result.collected),
            old(result.records_in),
            old(result.records_out),
        )
        return JobHandle.finished(
            finished,
            job,
            self._chaining,
            old(result.subtask_results),
            time.monotonic() - started,
        )

    # -- cluster ----------------------------------------------------------------------------

    @classmethod
    def local(
        cls,
        workers: int = 2,
        *,
        slots: int = 1,
        parallelism: int = 1,
        **cluster_options: Any,
    ) -> StreamEnvironment:
        """An environment on an embedded :class:`~pydispatch.LocalCluster` of
        ``workers`` processes with ``slots`` slots each, ended by :meth:`close` (or at exit)."""
        from ..runtime.cluster import LocalCluster

        # The cluster lives and dies with this process, and so do its jobs, wherever their
        # masters run: here (Flink's MiniCluster does the same) rather than in the launcher
        # a dispatcher keeps for jobs that must outlive their submitter, which would compete
        # with the workers for the CPU while the cluster starts.
        # (With keys, the dispatcher hosts them: it issues each job's credentials.)
        keyed = bool(cluster_options.get("keys"))
        hosted = bool(cluster_options.setdefault("job_masters", keyed))
        # Every slot of the cluster runs slices: forked from a cluster host that imported
        # their modules (numpy, the plan, the operators), none imports them itself.
        cluster_options.setdefault("preload", _SLICE_MODULES)
        cluster = LocalCluster(workers=workers, slots=slots, **cluster_options)
        cluster._launch()
        if not hosted:  # the masters run here: import theirs while the cluster starts
            from ..dataflow import job_run  # noqa: F401
        cluster.start()
        env = cls(cluster, parallelism=parallelism)
        env._owned = cluster
        masters: list[tuple[Any, Any]] = []
        env._masters = None if hosted else masters
        env._finalizer = weakref.finalize(env, _close_local, masters, cluster)
        return env

    def _run_master_here(
        self, address: str, job: JobGraph, name: str, options: Any, keep: list[int]
    ) -> JobHandle:
        from ..dataflow.handle import spill_sources
        from ..dataflow.job_run import JobRun
        from ..runtime.client import Client

        assert self._masters is not None
        # Masters whose outcome was fetched a while ago have nothing left to serve (the
        # handle keeps the outcome): end them, as a dispatcher-hosted master ends itself.
        now = time.monotonic()
        for entry in list(self._masters):
            run, old = entry
            fetched = run.fetched_at is not None and now - run.fetched_at >= 1.0
            if run.done() and (fetched or run.status() == "CANCELED"):
                self._masters.remove(entry)
                run.close()
                old.shutdown(wait=False)
        spilled: list[str] = []
        if address.startswith("ipc://"):  # as submit_job does: the run's close removes them
            job, spilled = spill_sources(job, address)
        # A client of its own per job; no keys (this runs for a cluster without them only,
        # whatever the environment names: see local()).
        client = Client(address, name=f"job master of {name}", keys="")
        try:
            run = JobRun(client, job, name, options, keep)
        except BaseException:
            client.shutdown(wait=False, cancel_futures=True)
            for directory in spilled:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        self._masters.append((run, client))
        return JobHandle(address, run.job_id, name, run.endpoint, job, options.chaining)

    def enable_checkpointing(
        self,
        seconds: float,
        *,
        timeout: float = 600.0,
        min_pause: float = 0.0,
        retained: int = 1,
        storage: str = "",
        retain_on_cancellation: bool = False,
    ) -> StreamEnvironment:
        """Take a consistent snapshot of the job's state every ``seconds`` on a cluster
        (asynchronous barrier snapshots: sources record their positions, keyed operators and
        sinks their state); a failed region restarts from the latest complete one, so an
        unbounded job's results are exactly once. ``timeout``: a checkpoint not complete by
        then is aborted (the next one goes ahead); ``min_pause``: seconds between the end of one
        and the start of the next; ``retained``: completed checkpoints kept; ``storage``: a
        directory or an fsspec URL (default: ``checkpoints/`` under the dispatcher's state
        directory; use a directory every host sees when masters and workers are apart).
        When the job ends, as Flink's externalized checkpoints: FINISHED removes its
        checkpoints, CANCELED too unless ``retain_on_cancellation`` (PyFlink's
        ``ExternalizedCheckpointRetention.RETAIN_ON_CANCELLATION``: restart it with
        ``from_savepoint=`` a kept ``chk-<n>`` directory), FAILED keeps them; savepoints are
        never removed. ``write_text`` becomes a two-phase sink (see ``DataStream.write_text``)."""
        from ..dataflow.checkpoints import CheckpointConfig

        if storage and "://" not in storage:  # resolved here, as write_text's paths are
            storage = os.path.abspath(storage)
        self._checkpoint = CheckpointConfig(
            seconds, timeout, min_pause, retained, storage, retain_on_cancellation
        )
        return self

    def set_restart_strategy(self, strategy: Callable[[], RestartStrategy]) -> StreamEnvironment:
        """How a job on a cluster restarts after a failure: a factory of a fresh strategy per
        job, e.g. ``lambda: FixedDelay(attempts=3, delay=0.5)`` (default: Flink's fixed delay,
        1 restart after 1 s); see :mod:`pydispatch.dataflow.lifecycle`."""
        check_callable(strategy, "set_restart_strategy")
        self._restart_factory = strategy
        return self

    def set_network(
        self,
        *,
        batch_records: int = 4096,
        credits: int = 8,
        master_timeout: float = 60.0,
        host: str = "",
    ) -> StreamEnvironment:
        """Micro-batch size (records; columnar batches hold 8 times more rows, and at least
        2 MiB of columns) and credits (the
        batches a producer may have in flight per downstream subtask) on a cluster;
        ``master_timeout``: seconds after which a job's slices end themselves if the job's
        master process is gone (killed); ``host``: an override of the address the job master
        binds on the dispatcher's machine (it runs there) and workers and job handles reach it
        at (default: the dispatcher's ``--advertise-host``, else its bind address, else the
        address this client reached it by). Slices bind on their worker's own address (its
        route to the dispatcher, or ``PYDISPATCH_DATA_HOST`` on that worker)."""
        if batch_records < 1 or credits < 1 or not master_timeout > 0:
            raise ValueError("set_network: batch_records, credits, master_timeout must be > 0")
        self._batch_records = batch_records
        self._credits = credits
        self._master_timeout = master_timeout
        self._host = host
        return self

    def set_result_retention(self, seconds: float) -> StreamEnvironment:
        """How long a finished job's master keeps its outcome for a handle to fetch (by id,
        from any process: ``JobHandle.attach``) if nobody has; once fetched it is kept one
        second more. Default 600 s."""
        if not seconds >= 0:
            raise ValueError(f"set_result_retention: seconds must be >= 0: {seconds}")
        self._retention = float(seconds)
        return self

    def close(self) -> None:
        """End what this environment started: its embedded cluster (and the jobs on it)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def __enter__(self) -> StreamEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamExecutionEnvironment(StreamEnvironment):
    """PyFlink's name for the environment, for jobs ported by changing their imports
    (``pyflink.datastream`` -> ``pydispatch.stream``); see :meth:`get_execution_environment`."""

    @classmethod
    def get_execution_environment(cls) -> StreamExecutionEnvironment:
        """The cluster named by the ``PYDISPATCH_ADDRESS`` environment variable (a
        dispatcher's address), else an embedded :meth:`local` cluster of two workers that
        lives as long as the environment (ended by ``close()`` or at interpreter exit), as
        PyFlink's ``get_execution_environment`` starts a MiniCluster when run locally."""
        address = os.environ.get("PYDISPATCH_ADDRESS", "").strip()
        if address:
            return cls(address)
        env = cls.local(workers=2)
        assert isinstance(env, cls)
        return env

    def from_collection(
        self, collection: Collection[Any], type_info: object = None, *, name: str | None = None
    ) -> DataStream:
        """As :meth:`StreamEnvironment.from_collection`; PyFlink's ``type_info`` is accepted
        and not needed (records are Python objects)."""
        return super().from_collection(collection, name=name)


def _close_local(masters: list[tuple[Any, Any]], cluster: Any) -> None:
    """End an embedded environment: its jobs' masters (cancelling jobs still running), then
    the cluster."""
    try:
        for run, client in masters:
            try:
                run.cancel()
                run.close()
            except Exception:  # one stuck master must not keep the others (or the cluster)
                log.exception("could not end the master of job %s", run.job_id)
            finally:
                client.shutdown(wait=False, cancel_futures=True)
        masters.clear()
    finally:
        cluster.close()


def _paths(paths: object, func: str) -> tuple[str, ...]:
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if not isinstance(paths, Sequence) or not paths:
        raise TypeError(f"{func}: paths must be a path or a non-empty list of paths")
    if not all(isinstance(p, str | os.PathLike) for p in paths):
        raise TypeError(f"{func}: paths must be str or path-like")
    # Resolved here, where the user wrote them: the job's master and workers run elsewhere.
    # fsspec URLs stay as they are: each worker opens its split through fsspec.
    files = tuple(
        p if _files.is_url(p) else os.path.abspath(p) for p in (os.fspath(x) for x in paths)
    )
    for f in files:
        reason = _files.unreadable(f)
        if reason is not None:
            raise ValueError(f"{func}: cannot read {f!r}: {reason}")
    return files


def _sizes(files: tuple[str, ...]) -> tuple[int, ...]:
    """The files' sizes now, for the plan's traffic estimates: the job's master plans where
    the files may not be."""
    return tuple(_files.file_size(f) for f in files)


# The stream classes live in a private module; they are documented and pickled under this one.
for _cls in (DataStream, DataStreamSink, KeyedStream, WindowedStream):
    _cls.__module__ = __name__
