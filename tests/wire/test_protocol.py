"""Protocol structs and framing helpers, without sockets."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from _support.wire import through_zmq
from pydispatch.wire import protocol as p
from pydispatch.wire import transport


def test_every_message_kind_round_trips() -> None:
    blob = p.Blob(0, (p.BufferMeta(1, 80, "<f8", (10,)),))
    messages: list[p.Message] = [
        p.ClientHello(p.PROTOCOL_VERSION, "me"),
        p.Welcome(p.PROTOCOL_VERSION, 4),
        p.Register(p.PROTOCOL_VERSION, "w", "node", 12, 2, {"cpu": 4.0}, {"zone": "a"}),
        p.Registered(1.0, 10.0),
        p.Error("bad", "why"),
        p.Submit([p.TaskSpec(1, p.KIND_CALL, blob, blob, {"gpu": 1.0}, {}, 3, 2)]),
        p.Started([1, 2]),
        p.Results([p.TaskResult(1, "ok", blob), p.TaskResult(2, "failed", None, "no")]),
        p.Cancel([1], force=True),
        p.ClientBye(),
        p.StatusRequest(),
        p.Heartbeat(b"\x00id"),
        p.Reregister(),
        p.Run([p.RunSpec(7, p.KIND_CHUNK, blob, blob)]),
        p.Kill([7]),
        p.Done([p.AttemptResult(7, "error", blob, "ValueError", "tb")]),
        p.Drain(),
        p.Goodbye(),
        p.JobUpdate(p.JobInfo("j-1-ab", "j", "RUNNING", "tcp://127.0.0.1:9", 1, 2)),
        p.JobsRequest(),
        p.JobsReply([p.JobInfo("j-1-ab", "j", "FINISHED", "", 1, 2)]),
        p.SubmitJob("word count", 5, blob),
        p.JobAccepted("word count-1-ab12cd", "tcp://127.0.0.1:4000"),
        p.JobPayloadRequest("word count-1-ab12cd", "0f" * 16),
        p.JobPayload("word count", 5, blob),
        p.JobHostReport("word count-1-ab12cd", "0f" * 16, "tcp://127.0.0.1:4000"),
        p.JobHostReport("word count-1-ab12cd", "0f" * 16, code="unfit", error="9 slots"),
    ]
    for message in messages:
        assert p.decode(p.encode(message)) == message


@given(st.binary(max_size=200))
@example(b"\x91\xa5\x00\x00\x00\x00\x80")  # invalid UTF-8 in the tag
@example(b"\x93\xa5Error\xa1\xff\xa0")
def test_garbage_raises_protocol_error_only(data: bytes) -> None:
    with contextlib.suppress(p.ProtocolError):
        p.decode(data)


def test_unknown_tag_and_wrong_types_are_protocol_errors() -> None:
    import msgspec

    with pytest.raises(p.ProtocolError, match="malformed"):
        p.decode(msgspec.msgpack.encode(["NoSuchKind", 1]))
    with pytest.raises(p.ProtocolError):
        p.decode(msgspec.msgpack.encode(["Cancel", "not a list"]))
    truncated = p.encode(p.Submit([]))[:-1]
    with pytest.raises(p.ProtocolError):
        p.decode(truncated)


def test_blob_checks_indices_and_sizes() -> None:
    with pytest.raises(p.ProtocolError, match="frame 3"):
        p.check_blob(p.Blob(3), [10])
    with pytest.raises(p.ProtocolError, match="truncated"):
        p.check_blob(p.Blob(0, (p.BufferMeta(1, 100, "B", (100,)),)), [10, 99])


def test_numpy_buffers_travel_out_of_band() -> None:
    big = np.arange(100_000, dtype=np.float64)
    small = np.arange(3)
    frames: list[transport.FrameLike] = []
    blob = transport.dumps({"big": big, "small": small, "f": lambda x: x + 1}, frames)
    assert len(blob.buffers) == 1
    (meta,) = blob.buffers
    assert meta.nbytes == big.nbytes
    assert meta.shape == (100_000,)
    assert "d" in meta.format
    # The small pickle stream travels inline; the array is the only frame, not pickled.
    assert blob.frame == p.INLINE
    assert len(blob.data) < 2000
    assert len(frames) == 1
    assert meta.frame == 0
    received = through_zmq(frames)
    value = transport.loads(blob, received)
    np.testing.assert_array_equal(value["big"], big)
    assert value["big"].flags.writeable
    assert value["f"](1) == 2


def test_small_objects_travel_inline_and_large_ones_in_frames() -> None:
    frames: list[transport.FrameLike] = []
    small = transport.dumps({"a": 1}, frames)
    large = transport.dumps(b"x" * 100_000, frames)
    assert small.frame == p.INLINE
    assert large.frame == 0
    received = through_zmq(frames)
    assert transport.loads(small, received) == {"a": 1}
    assert transport.loads(large, received) == b"x" * 100_000


def test_rebase_shares_frames() -> None:
    frames: list[transport.FrameLike] = []
    fn = transport.dumps(len, frames, inline_limit=0)
    a = transport.dumps(np.ones(10_000), frames)
    out: list[transport.FrameLike] = []
    placed: dict[int, int] = {}
    first = transport.rebase(fn, frames, out, placed)
    second = transport.rebase(fn, frames, out, placed)
    moved = transport.rebase(a, frames, out, placed)
    assert first == second
    assert len(out) == 2  # one function frame, one array buffer (its pickle is inline)
    assert moved.buffers[0].frame == 1
