"""The wire: every message pydispatch's processes exchange, and their framing (internal).

- ``protocol``: what every plane shares (the header base, blobs, errors, the protocol version,
  the codec) and the control plane: clients, the dispatcher, workers and slots (:data:`Message`);
- ``job_plane``: a job master's control socket, its slices and handles (``JobMessage``);
- ``data_plane``: micro-batches, watermarks and credits between subtasks (``DataMessage``);
- ``transport``: framing over pyzmq, apart from any logic: headers, pickled objects with numpy
  buffers as raw frames, data-plane batches as raw columns.
"""

from __future__ import annotations

__all__: list[str] = []
