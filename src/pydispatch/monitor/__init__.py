"""Seeing the cluster (internal layer, above ``wire``, below ``runtime``): the dispatcher's
Prometheus metrics (:mod:`.collector` over :mod:`.recorder`'s counters), the views its loop
hands other threads (:mod:`.view`, :mod:`.exchange`), its HTTP endpoint with the JSON API and
the dashboard (:mod:`.http`, ``static/``), alerting rules (:mod:`.alerts`) and JSON logs
(:mod:`.logs`)."""

from __future__ import annotations

__all__: list[str] = []
