"""Split record batches (numpy arrays) across parallel subtasks: the keyed partitioner.

The public face of the native partitioner (see :mod:`pydispatch.partition._partitioners` for
the schemes and their guarantees). Modules inside are private:

- ``_partitioners``: every public function: hashing schemes, range, round robin, rescale,
  two choices, scatter/split and broadcast;
- ``_keys``: key columns in the form the kernels take, and the checks every function shares;
- ``_flink_kafka``: key assignment exactly as Apache Flink (key groups) and Kafka do it.
"""

from __future__ import annotations

from .._exports import publish
from ._partitioners import (
    BROADCAST,
    FLINK_MAX_PARALLELISM,
    MAX_PARTITIONS,
    TwoChoices,
    broadcast,
    default_max_parallelism,
    hash_keys,
    key_group_range,
    key_groups,
    partition,
    range_boundaries,
    range_partition,
    rescale,
    rescale_targets,
    round_robin,
    scatter,
    split,
    two_choices,
)

__all__ = [
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

publish(__name__, globals(), __all__)
