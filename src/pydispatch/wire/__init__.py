"""The wire: every message pydispatch's processes exchange, and their framing (internal).

- ``protocol``: each message kind a tagged msgspec struct, one union per plane (control, job,
  data), and the protocol version;
- ``transport``: framing over pyzmq, apart from any logic: headers, pickled objects with numpy
  buffers as raw frames, data-plane batches as raw columns.
"""

from __future__ import annotations

__all__: list[str] = []
