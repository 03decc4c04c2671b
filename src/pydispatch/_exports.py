"""Public names carry their public module (as trio's ``fixup_module_metadata`` does).

A class or function is defined in a private module (``pydispatch.solver._result``) and re-exported
by a public one (``pydispatch.solver``). :func:`publish` relabels what a public module re-exports,
so that reprs, tracebacks, documentation and pickles name ``pydispatch.solver.Placement``, the
name users import, not where it happens to live today.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["publish"]

#: Modules whose names are public: an object defined in one of them keeps its label.
PUBLIC_MODULES = frozenset(
    {
        "pydispatch",
        "pydispatch.errors",
        "pydispatch.partition",
        "pydispatch.plan",
        "pydispatch.solver",
        "pydispatch.stream",
        "pydispatch.stream.functions",
        "pydispatch.stream.state",
        "pydispatch.table",
    }
)


def publish(module_name: str, namespace: Mapping[str, Any], names: Iterable[str]) -> None:
    """Relabel each of ``names`` in ``namespace`` (and its methods) as defined in ``module_name``.

    Only objects defined inside pydispatch, outside its public modules, are relabelled: a name a
    public module re-exports from another public module (``JobFailedError`` from ``errors``)
    keeps the label of the module that defines it.
    """
    for name in names:
        obj = namespace[name]
        origin = getattr(obj, "__module__", None)
        if not isinstance(origin, str) or not origin.startswith("pydispatch."):
            continue  # constants, and objects not of ours
        if origin in PUBLIC_MODULES:
            continue
        _relabel(obj, origin, module_name)


def _relabel(obj: Any, origin: str, module_name: str) -> None:
    try:
        obj.__module__ = module_name
    except (AttributeError, TypeError):  # a builtin-like object: its label is fixed
        return
    if isinstance(obj, type):
        for member in vars(obj).values():
            inner = getattr(member, "__func__", member)  # classmethod, staticmethod
            if getattr(inner, "__module__", None) == origin:
                _relabel(inner, origin, module_name)
