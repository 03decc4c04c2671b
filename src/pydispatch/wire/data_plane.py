"""The dataflow data plane: micro-batches, watermarks and credits between subtasks (one tagged
union, :data:`DataMessage`).

A producer subtask's DEALER sends ``[header, *frames]`` to a consumer's ROUTER, decoded with
:func:`decode_data`. Numeric columns travel as raw frames described by :class:`Column`; anything
else (records, object columns) is user data and travels pickled in a ``Blob``.
"""

from __future__ import annotations

from typing import Final, Literal, cast

import msgspec

from .protocol import Blob, Header, decode_with

__all__ = [
    "BATCH_COLUMNS",
    "BATCH_PICKLED",
    "Barrier",
    "BatchData",
    "Column",
    "Credit",
    "DataMessage",
    "EndOfInput",
    "Watermark",
    "decode_data",
]

BATCH_COLUMNS: Final = "columns"  # a columnar batch: ``columns`` describe its raw frames
BATCH_PICKLED: Final = "pickled"  # a list of records (or object columns): ``pickled``


class Column(msgspec.Struct, array_like=True):
    """One numpy column of a columnar batch, its memory in frame ``frame``."""

    name: str
    dtype: str  # numpy dtype string, e.g. "<f8" (never an object dtype)
    shape: tuple[int, ...]
    frame: int
    nbytes: int


class BatchData(Header):
    edge: int
    kind: Literal["columns", "pickled"]
    columns: list[Column] = msgspec.field(default_factory=list)
    pickled: Blob | None = None


class Watermark(Header):
    """A watermark on ``edge``: a plain number, else (a user's time type) pickled in ``pickled``."""

    edge: int
    mark: int | float = 0
    pickled: Blob | None = None


class Barrier(Header):
    """Checkpoint ``checkpoint``'s barrier on ``edge``: what the producer sent before it is in
    the checkpoint, what follows is not (Carbone et al.'s asynchronous barrier snapshots)."""

    edge: int
    checkpoint: int


class EndOfInput(Header):
    """The producer sent its last batch on ``edge``."""

    edge: int


class Credit(Header):
    """Consumer -> producer: one batch processed, one more may be sent."""


DataMessage = BatchData | Watermark | Barrier | EndOfInput | Credit

_decoder = msgspec.msgpack.Decoder(DataMessage)


def decode_data(data: bytes | memoryview) -> DataMessage:
    """Decode a data plane header (:data:`DataMessage`); raises ``ProtocolError``."""
    return cast(DataMessage, decode_with(_decoder, data))
