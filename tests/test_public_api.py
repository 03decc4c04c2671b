"""Pins the public API: a change here is a deliberate change of what users may import."""

from __future__ import annotations

import pydispatch
import pydispatch.partition


def test_package_exports() -> None:
    assert sorted(pydispatch.__all__) == ["__version__", "partition"]


def test_partition_exports() -> None:
    assert sorted(pydispatch.partition.__all__) == sorted(
        [
            "BROADCAST",
            "FLINK_MAX_PARALLELISM",
            "MAX_PARTITIONS",
            "TwoChoices",
            "broadcast",
            "default_max_parallelism",
            "hash_keys",
            "key_group_range",
            "key_groups",
            "partition",
            "range_boundaries",
            "range_partition",
            "rescale",
            "rescale_targets",
            "round_robin",
            "scatter",
            "split",
            "two_choices",
        ]
    )
    for name in pydispatch.partition.__all__:
        assert hasattr(pydispatch.partition, name), name
