"""The dataflow job plane's wire structs and batch framing, without a cluster."""

from __future__ import annotations

import contextlib
import os
import pickle

import cloudpickle
import msgspec
import numpy as np
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from _support.wire import through_zmq
from pydispatch.wire import data_plane as dp
from pydispatch.wire import job_plane as jp
from pydispatch.wire import protocol as p
from pydispatch.wire import transport


def test_every_job_message_round_trips() -> None:
    figures = jp.SubtaskFigures({1: 10}, {1: 9}, 1234, 3, 0.5, 0.25, 2)
    messages: list[jp.JobMessage] = [
        jp.SliceReady(p.PROTOCOL_VERSION, 2, 1, {3: "tcp://127.0.0.1:5000"}, os.getpid()),
        jp.SliceMetrics(2, 1, {3: figures}),
        jp.SliceFailed(2, 1, "Traceback ...\nZeroDivisionError"),
        jp.Peers({0: "tcp://a:1", 3: "tcp://b:2"}),
        jp.MasterAlive(),
        jp.MasterAck(),
        jp.JobCancel(),
        jp.JobCancelled(True),
        jp.JobStatusRequest(),
        jp.JobStatusReply("j-1-ab", "j", "RUNNING", {"records_in": {1: 5}, "restarts": 0}),
        jp.JobResultRequest(2.5),
        jp.JobResultReply("j-1-ab", "j", "FINISHED", {"status": "FINISHED"}, "", p.Blob(0)),
        jp.JobResultReply("j-1-ab", "j", "FAILED", {}, "ZeroDivisionError"),
        p.Error("version", "why"),
    ]
    for message in messages:
        assert jp.decode_job(p.encode(message)) == message


def test_a_result_reply_carries_its_records_in_frames() -> None:
    records = [("k", 1), {"x": np.arange(5000.0)}]
    frames: list[transport.FrameLike] = []
    reply = jp.JobResultReply("j", "j", "FINISHED", {}, result=transport.dumps(records, frames))
    message, received = transport.parse_job_reply(through_zmq([p.encode(reply), *frames]))
    assert isinstance(message, jp.JobResultReply)
    assert message.result is not None
    got = transport.loads(message.result, received)
    assert got[0] == records[0]
    np.testing.assert_array_equal(got[1]["x"], np.arange(5000.0))
    # Requests to a master never carry frames: its socket refuses them.
    with pytest.raises(p.ProtocolError, match="one header frame"):
        transport.parse_job(through_zmq([p.encode(jp.JobStatusRequest()), b"x"]))


def test_every_data_message_round_trips() -> None:
    blob = p.Blob(0, (p.BufferMeta(1, 80, "<f8", (10,)),))
    messages: list[dp.DataMessage] = [
        dp.BatchData(0, "columns", [dp.Column("x", "<f8", (10,), 0, 80)]),
        dp.BatchData(1, "pickled", pickled=blob),
        dp.Watermark(2, 17),
        dp.Watermark(2, 1.5),
        dp.Watermark(2, pickled=blob),
        dp.EndOfInput(3),
        dp.Credit(),
    ]
    for message in messages:
        assert dp.decode_data(p.encode(message)) == message


def test_the_planes_do_not_decode_each_others_messages() -> None:
    # A dispatcher message is refused on a job socket, and the other way round.
    with pytest.raises(p.ProtocolError):
        jp.decode_job(p.encode(p.Cancel([1])))
    with pytest.raises(p.ProtocolError):
        p.decode(p.encode(jp.JobCancel()))
    with pytest.raises(p.ProtocolError):
        dp.decode_data(p.encode(jp.MasterAlive()))


@given(st.binary(max_size=200))
def test_garbage_raises_protocol_error_only(data: bytes) -> None:
    with contextlib.suppress(p.ProtocolError):
        jp.decode_job(data)
    with contextlib.suppress(p.ProtocolError):
        dp.decode_data(data)


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch /tmp/pydispatch-pwned",))


def test_a_pickle_is_never_unpickled() -> None:
    for payload in (
        pickle.dumps(_Exploit()),
        cloudpickle.dumps(("cancel",)),
        cloudpickle.dumps(("ready", 0, 0, {}, 1)),
    ):
        with pytest.raises(p.ProtocolError):
            jp.decode_job(payload)
        with pytest.raises(p.ProtocolError):
            dp.decode_data(payload)
    with pytest.raises(p.ProtocolError, match="one header frame"):
        transport.parse_job([zmq.Frame(p.encode(jp.JobCancel())), zmq.Frame(b"x")])


def _round_trip(batch: object) -> tuple[dp.BatchData, object]:
    header, frames = transport.batch_message(5, batch)
    message, received = transport.parse_data(through_zmq([p.encode(header), *frames]))
    assert isinstance(message, dp.BatchData)
    assert message == header
    return message, transport.batch_from(message, received)


def test_columnar_batches_travel_as_raw_frames() -> None:
    batch = {
        "x": np.arange(10_000, dtype=np.float64),
        "k": np.arange(10_000, dtype=">i4"),
        "m": np.arange(12, dtype=np.int16).reshape(4, 3)[:, 1],  # not contiguous
        "t": np.arange(4).astype("datetime64[s]"),
        "s": np.array(["a", "bc", "def"]),
        "e": np.zeros(0, dtype=np.uint8),
    }
    header, received = _round_trip(batch)
    assert header.kind == "columns"
    assert header.pickled is None
    assert [(c.name, c.dtype, c.shape) for c in header.columns] == [
        (name, np.ascontiguousarray(a).dtype.str, a.shape) for name, a in batch.items()
    ]
    assert isinstance(received, dict)
    assert list(received) == list(batch)
    for name, column in batch.items():
        np.testing.assert_array_equal(received[name], column)
        assert received[name].dtype == column.dtype
    assert received["x"].flags.writeable


def test_records_and_object_columns_are_pickled_data() -> None:
    records = [(i, f"w{i}") for i in range(100)]
    header, received = _round_trip(records)
    assert header.kind == "pickled"
    assert not header.columns
    assert received == records
    with_objects = {"o": np.array([{"a": 1}, None], dtype=object), "x": np.arange(2)}
    header, received = _round_trip(with_objects)
    assert header.kind == "pickled"
    assert isinstance(received, dict)
    assert list(received["o"]) == [{"a": 1}, None]
    lambdas = [lambda x: x + 1]  # needs cloudpickle
    _, received = _round_trip(lambdas)
    assert isinstance(received, list)
    assert received[0](1) == 2


@pytest.mark.parametrize(
    "column",
    [
        dp.Column("x", "<f8", (10,), 0, 80),  # the frame holds 8 bytes
        dp.Column("x", "<f8", (1,), 3, 8),  # no frame 3
        dp.Column("x", "|O", (1,), 0, 8),  # an object dtype would dereference raw memory
        dp.Column("x", "no such dtype", (1,), 0, 8),
        dp.Column("x", "<f8", (-1,), 0, 8),
        dp.Column("x", "<f8", (2,), 0, 8),  # shape and size disagree
    ],
)
def test_a_lying_batch_header_is_a_protocol_error(column: dp.Column) -> None:
    frames = through_zmq([np.zeros(1).data])
    with pytest.raises(p.ProtocolError):
        transport.batch_from(dp.BatchData(0, "columns", [column]), frames)


def test_a_pickled_batch_without_its_blob_is_a_protocol_error() -> None:
    with pytest.raises(p.ProtocolError, match="blob"):
        transport.batch_from(dp.BatchData(0, "pickled"), [])
    with pytest.raises(p.ProtocolError):
        transport.batch_from(dp.BatchData(0, "pickled", pickled=p.Blob(4)), [])


@pytest.mark.parametrize("mark", [0, -5, 2**62, 1.5, np.int64(7), 2**70, "2024-01-01", (1, 2)])
def test_watermarks_keep_their_value_and_type(mark: object) -> None:
    header, frames = transport.watermark_message(1, mark)
    assert (header.pickled is None) == (type(mark) in (int, float) and mark != 2**70)
    message, received = transport.parse_data(through_zmq([p.encode(header), *frames]))
    assert isinstance(message, dp.Watermark)
    value = transport.watermark_from(message, received)
    assert value == mark
    assert type(value) is type(mark)


def test_subtask_figures_mirror_the_metrics() -> None:
    from pydispatch.dataflow.slice import SubtaskMetrics, figures

    metrics = SubtaskMetrics({1: 2}, {1: 1}, 10, 1, 0.5, 0.1, 3)
    assert SubtaskMetrics(**msgspec.structs.asdict(figures(metrics))) == metrics
