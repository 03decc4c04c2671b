"""The ``client`` label of the task metrics: a client's name, from a bounded set of values.

A client's identity is random per process, so as a label it would start a new time series for
every client process that ever connected (a cron job every minute: 1,440 more a day, each kept
for Prometheus's whole retention). Tasks are therefore counted by the client's *name*
(``Client(name=...)``; by default its script or ``-m`` module name), and only the first
``limit`` distinct names a dispatcher hears get a label value of their own; later ones are
counted as ``other``. All job masters (``job master <job id>``, one per dataflow job) count as
``job-master``: a job's own figures are its per-operator metrics. A client that names itself
nothing (an older client, a raw hello) counts as ``unnamed``.

The limit is :data:`DEFAULT_LIMIT`, or the ``PYDISPATCH_CLIENT_LABELS`` environment variable
of the dispatcher's process (a positive integer; 0 counts every named client as ``other``).
"""

from __future__ import annotations

import os
from typing import Final

__all__ = [
    "DEFAULT_LIMIT",
    "JOB_MASTER",
    "LIMIT_ENV",
    "OTHER",
    "UNNAMED",
    "ClientLabels",
    "label_limit",
    "normal_name",
]

DEFAULT_LIMIT: Final = 20
LIMIT_ENV: Final = "PYDISPATCH_CLIENT_LABELS"
JOB_MASTER: Final = "job-master"
OTHER: Final = "other"  # names past the limit, and clients not (or no longer) known
UNNAMED: Final = "unnamed"
_MAX_LENGTH: Final = 64  # a label value, not a paragraph


def label_limit(environ: dict[str, str] | None = None) -> int:
    """The limit the environment sets (``ValueError`` naming the variable if it is not a
    non-negative integer)."""
    text = (os.environ if environ is None else environ).get(LIMIT_ENV, "")
    if not text:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = -1
    if limit < 0:
        raise ValueError(f"{LIMIT_ENV} must be a non-negative integer, not {text!r}")
    return limit


def normal_name(name: str) -> str:
    """The label value a name asks for: job masters as one, whitespace collapsed, unprintable
    characters replaced, at most 64 characters."""
    name = " ".join(name.split())
    if not name:
        return UNNAMED
    if name.startswith("job master"):
        return JOB_MASTER
    return "".join(c if c.isprintable() else "?" for c in name[:_MAX_LENGTH])


class ClientLabels:
    """The label of each client the dispatcher knows (by identity), within ``limit`` names."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._named: set[str] = set()  # names given a label value of their own (not reserved)
        #: Per client identity, its label value (read on the hot path, hence public).
        self.of: dict[bytes, str] = {}

    def hello(self, client: bytes, name: str) -> None:
        """``client`` said hello with ``name``. A repeated hello keeps the client's label
        (clients name themselves in their first hello; later ones may leave it out)."""
        if not name and client in self.of:
            return
        label = normal_name(name)
        if label not in (UNNAMED, JOB_MASTER) and label not in self._named:
            if len(self._named) >= self.limit:
                label = OTHER
            else:
                self._named.add(label)
        self.of[client] = label

    def label(self, client: bytes) -> str:
        return self.of.get(client, OTHER)

    def forget(self, client: bytes) -> None:
        """The client left (its name keeps its label value: a client back under the same name
        counts where it did)."""
        self.of.pop(client, None)
