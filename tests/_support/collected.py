"""Collected dataflow output in the tests: a collect sink on a stream, rows to compare."""

from __future__ import annotations

from typing import Any

from pydispatch.stream import DataStream

__all__ = ["collect_sink", "sorted_rows"]


def collect_sink(stream: DataStream) -> int:
    """Add a collect sink (columnar if the stream is) to ``stream``; its operator id."""
    return stream._sink("Collect", {"sink": "collect", "columnar": stream.schema.columnar}).id


def sorted_rows(batch: Any) -> list[Any]:
    """A collected batch (records, or columns by name) as sorted rows, to compare."""
    if isinstance(batch, dict):
        return sorted(zip(*(batch[n].tolist() for n in sorted(batch)), strict=True))
    return sorted(map(repr, batch))
