"""Shared test configuration."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# A profile for 2 shared cores: enough examples to find a bug, no deadline flakiness.
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")
