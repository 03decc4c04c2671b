"""Pure-Python reference implementations of the partitioner, written from the algorithms'
published descriptions (and, for pydispatch's own hash, from its documented definition), so that
the native kernels can be checked value for value.

Slow on purpose: clarity over speed. Used only by the tests.
"""

from __future__ import annotations

import bisect
import math
import struct

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1

# --- pydispatch's hash ------------------------------------------------------------------------

TAG_BIG_UINT = 0xD6E8FEB86659FD93
TAG_FLOAT = 0xA0761D6478BD642F
TAG_BYTES = 0xE7037ED1A0B428DB
TAG_STR = 0x8EBC6AF09C88C6E3
TAG_BIG_INT = 0x589965CC75374CC3
NAN_BITS = 0x7FF8000000000000
GOLDEN = 0x9E3779B97F4A7C15
C1 = 0x87C37B91114253D5
C2 = 0x4CF5AD432745937F


def fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M64
    k ^= k >> 33
    return k


def rotl64(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & M64


def seed_key(seed: int) -> int:
    return fmix64((seed + GOLDEN) & M64)


def hash_bytes(data: bytes, key: int) -> int:
    h = key
    full = len(data) - len(data) % 8
    for i in range(0, full, 8):
        k = int.from_bytes(data[i : i + 8], "little")
        k = (k * C1) & M64
        k = rotl64(k, 31)
        k = (k * C2) & M64
        h ^= k
        h = (rotl64(h, 27) * 5 + 0x52DCE729) & M64
    if full < len(data):
        k = int.from_bytes(data[full:], "little")
        k = (k * C1) & M64
        k = rotl64(k, 31)
        k = (k * C2) & M64
        h ^= k
    h ^= len(data)
    return fmix64(h)


def hash_int(v: int, key: int) -> int:
    if -(1 << 63) <= v < (1 << 63):
        return fmix64((v & M64) ^ key)
    if (1 << 63) <= v < (1 << 64):
        return fmix64(v ^ key ^ TAG_BIG_UINT)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return hash_bytes(raw, key ^ TAG_BIG_INT)


def hash_float(d: float, key: int) -> int:
    if math.isnan(d):
        return fmix64(NAN_BITS ^ key ^ TAG_FLOAT)
    if math.isfinite(d) and d == int(d) and -(2.0**63) <= d < 2.0**64:
        return hash_int(int(d), key)
    bits = struct.unpack("<Q", struct.pack("<d", d))[0]
    return fmix64(bits ^ key ^ TAG_FLOAT)


def hash_value(v: object, seed: int = 0) -> int:
    """The hash of one Python value, as hash_keys defines it."""
    key = seed_key(seed)
    if isinstance(v, str):
        return hash_bytes(v.encode("utf-8", "surrogatepass"), key ^ TAG_STR)
    if isinstance(v, bytes):
        return hash_bytes(v, key ^ TAG_BYTES)
    if isinstance(v, bool | int):
        return hash_int(int(v), key)
    if isinstance(v, float):
        return hash_float(v, key)
    raise TypeError(type(v))


def combine(acc: int, column: int) -> int:
    return fmix64((rotl64(acc, 23) * GOLDEN + column) & M64)


def reduce(h: int, n: int) -> int:
    return ((h >> 32) * n) >> 32


# --- Java / Flink -----------------------------------------------------------------------------


def to_int32(x: int) -> int:
    x &= M32
    return x - (1 << 32) if x >= 1 << 31 else x


def java_string_hash(s: str) -> int:
    """String.hashCode: s[0]*31^(n-1) + ... over UTF-16 code units."""
    units = s.encode("utf-16-le", "surrogatepass")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "little")) & M32
    return to_int32(h)


def java_long_hash(v: int) -> int:
    u = v & M64
    return to_int32(u ^ (u >> 32))


def java_double_hash(d: float) -> int:
    bits = NAN_BITS if math.isnan(d) else struct.unpack("<Q", struct.pack("<d", d))[0]
    return to_int32(bits ^ (bits >> 32))


def java_float_hash(f: float) -> int:
    bits = 0x7FC00000 if math.isnan(f) else struct.unpack("<I", struct.pack("<f", f))[0]
    return to_int32(bits)


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 as Austin Appleby published it (unsigned result)."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & M32
    full = len(data) - len(data) % 4
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * c1) & M32
        k = ((k << 15) | (k >> 17)) & M32
        k = (k * c2) & M32
        h ^= k
        h = ((h << 13) | (h >> 19)) & M32
        h = (h * 5 + 0xE6546B64) & M32
    if full < len(data):
        k = int.from_bytes(data[full:], "little")
        k = (k * c1) & M32
        k = ((k << 15) | (k >> 17)) & M32
        k = (k * c2) & M32
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def flink_murmur(code: int) -> int:
    """MathUtils.murmurHash(int): murmur3 of the int's four bytes, then made non-negative."""
    h = to_int32(murmur3_x86_32((code & M32).to_bytes(4, "little")))
    if h >= 0:
        return h
    return -h if h != -(1 << 31) else 0


def flink_key_group(java_hash: int, max_parallelism: int) -> int:
    return flink_murmur(java_hash) % max_parallelism


def flink_operator_index(key_group: int, parallelism: int, max_parallelism: int) -> int:
    return key_group * parallelism // max_parallelism


def flink_key_group_range(index: int, parallelism: int, max_parallelism: int) -> range:
    start = (index * max_parallelism + parallelism - 1) // parallelism
    end = ((index + 1) * max_parallelism - 1) // parallelism
    return range(start, end + 1)


def flink_default_max_parallelism(p: int) -> int:
    target = p + p // 2
    power = 1
    while power < target:
        power <<= 1
    return min(max(power, 128), 1 << 15)


def flink_pointwise_targets(source: int, sources: int, targets: int) -> list[int]:
    """The targets a source feeds in Flink's pointwise connection (looping as Flink does)."""
    if sources == targets:
        return [source]
    if sources > targets:
        return [
            t
            for t in range(targets)
            if t * sources // targets <= source < (t + 1) * sources // targets
        ]
    start = (source * targets + sources - 1) // sources
    end = ((source + 1) * targets + sources - 1) // sources
    return list(range(start, end))


# --- Kafka ------------------------------------------------------------------------------------


def kafka_murmur2(data: bytes) -> int:
    """org.apache.kafka.common.utils.Utils.murmur2, in Java's wrapping int arithmetic."""
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & M32
    full = len(data) - len(data) % 4
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & M32
        k ^= k >> r
        k = (k * m) & M32
        h = (h * m) & M32
        h ^= k
    rest = len(data) % 4
    if rest == 3:
        h ^= data[full + 2] << 16
    if rest >= 2:
        h ^= data[full + 1] << 8
    if rest >= 1:
        h ^= data[full]
        h = (h * m) & M32
    h ^= h >> 13
    h = (h * m) & M32
    h ^= h >> 15
    return to_int32(h)


def kafka_partition(key_bytes: bytes, n: int) -> int:
    return (kafka_murmur2(key_bytes) & 0x7FFFFFFF) % n


# --- Layout -----------------------------------------------------------------------------------


def stable_scatter(ids: list[int], n: int) -> tuple[list[int], list[int]]:
    order = sorted(range(len(ids)), key=lambda i: ids[i])  # sorted() is stable
    offsets = [0] * (n + 1)
    for p in ids:
        offsets[p + 1] += 1
    for p in range(n):
        offsets[p + 1] += offsets[p]
    return order, offsets


def range_ids(keys: list[float], boundaries: list[float]) -> list[int]:
    return [len(boundaries) if k != k else bisect.bisect_right(boundaries, k) for k in keys]


def two_choices(
    hashes: list[int], n: int, hot_fraction: float, warmup: int
) -> tuple[list[int], list[int]]:
    """The two-choices assignment as documented: count-min sketch (4 rows), hot keys to the
    least loaded partition (ties to the lowest index), others to the lighter of two candidates."""
    width = 1024
    while width < 64.0 / hot_fraction and width < (1 << 22):
        width <<= 1
    sketch = [[0] * width for _ in range(4)]
    loads = [0] * n
    ids = []
    for i, h in enumerate(hashes):
        est = M32
        for row in range(4):
            cell = fmix64((h + (row + 1) * GOLDEN) & M64) & (width - 1)
            sketch[row][cell] = min(sketch[row][cell] + 1, M32)
            est = min(est, sketch[row][cell])
        if i >= warmup and est > hot_fraction * (i + 1):
            pick = min(range(n), key=lambda p: (loads[p], p))
        else:
            a = reduce(h, n)
            b = reduce(fmix64(h ^ TAG_BIG_UINT), n)
            pick = b if (loads[b], b) < (loads[a], a) else a
        ids.append(pick)
        loads[pick] += 1
    return ids, loads
