"""How a client's tasks become ``Submit`` messages: functions pickled once, frames shared.

Split from :class:`~pydispatch.runtime.client_io.ClientIO` because this is the encoding of
what is sent, not its I/O: a function is pickled once however many tasks call it (the cache
must not keep alive a function the caller dropped), and a batch of tasks is framed so that
each distinct frame, a function's above all, goes once per message.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

import msgspec

from ..wire import protocol as p
from ..wire.transport import FrameLike, dumps, frame_sizes, rebase

_Item = TypeVar("_Item")

__all__ = ["MESSAGE_BYTES", "FunctionBlobs", "byte_bounded", "submit_batches"]

_CACHED_AT_MOST = 64  # functions kept pickled; past that the cache starts again

#: About how many payload bytes one ``Submit`` or ``Run`` carries before the next message
#: starts (a lone larger task goes alone). A multipart message is taken in only once all
#: of it has arrived: with CurveZMQ each hop decrypts and encrypts it at about 1 GB/s, so
#: 64 MiB in one message held the next hop back for tens of milliseconds per hop, where
#: 1 MiB messages let client, dispatcher and slot work at the same time (bench (d)).
MESSAGE_BYTES: Final = 1 << 20


class FunctionBlobs:
    """Functions pickled once, by identity, each with its own frames (the blob indexes from
    0): the same frame objects let a batch send a function once however many tasks use it."""

    def __init__(self) -> None:
        # id(fn) -> (a weak reference to fn, its blob, its frames): the cache must not keep a
        # function (nor a bound method's object) alive that the caller dropped.
        self._cached: dict[int, tuple[weakref.ref[Any], p.Blob, list[FrameLike]]] = {}

    def blob(self, fn: Callable[..., Any]) -> tuple[p.Blob, list[FrameLike]]:
        cached = self._cached.get(id(fn))
        if cached is None or cached[0]() is not fn:
            own: list[FrameLike] = []
            blob = dumps(fn, own, inline_limit=0)
            try:
                ref = weakref.ref(fn)
            except TypeError:  # no weak references to it: not cached rather than kept alive
                return blob, own
            if len(self._cached) > _CACHED_AT_MOST:
                self._cached.clear()
            cached = self._cached[id(fn)] = (ref, blob, own)
        return cached[1], cached[2]


def submit_batches(
    outbox: list[tuple[p.TaskSpec, list[FrameLike]]], at_most: int
) -> Iterator[tuple[list[p.TaskSpec], list[FrameLike]]]:
    """The tasks of ``outbox`` (each with its own frames) in batches of ``at_most`` tasks or
    about :data:`MESSAGE_BYTES`, each with the frames the batch shares (a frame object used
    by several tasks goes once). The specs are renumbered copies: each future keeps its
    original, to send it again."""
    for batch in byte_bounded(outbox, lambda task: task[1], at_most):
        frames: list[FrameLike] = []
        placed: dict[int, int] = {}
        specs = []
        for spec, own in batch:
            fn, args = (
                rebase(spec.fn, own, frames, placed),
                rebase(spec.args, own, frames, placed),
            )
            specs.append(msgspec.structs.replace(spec, fn=fn, args=args))
        yield specs, frames


def byte_bounded(
    items: list[_Item], frames_of: Callable[[_Item], list[FrameLike]], at_most: int
) -> Iterator[list[_Item]]:
    """``items`` in order, in runs of at most ``at_most`` whose frames add up to about
    :data:`MESSAGE_BYTES` (a run ends after the item that reaches it). A frame shared by
    items counts for each: a function's frame is small, an array's is rarely shared."""
    run: list[_Item] = []
    size = 0
    for item in items:
        run.append(item)
        size += sum(frame_sizes(frames_of(item)))
        if len(run) >= at_most or size >= MESSAGE_BYTES:
            yield run
            run, size = [], 0
    if run:
        yield run
