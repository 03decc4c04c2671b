# Key assignment compatible with Apache Flink's keyed streams and Kafka's default partitioner.
#
# Flink: key -> Java hashCode() -> MathUtils.murmurHash -> % maxParallelism (the key group)
#        -> keyGroup * parallelism / maxParallelism (the operator index).
# Kafka: key -> serializer bytes -> Utils.murmur2 -> (h & 0x7fffffff) % numPartitions.
#
# Java's int arithmetic wraps at 32 bits: it is done here in uint32_t (well defined in C) and
# reinterpreted as int32_t at the end. Shifts written `>>>` in Java are logical shifts, which is
# what `>>` does on an unsigned C type.

from _typedefs cimport (
    int8_t, int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t,
    float32_t, float64_t, part_t, integral_t, real_t,
)

cdef extern from "Python.h":
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    int PyUnicode_KIND(object s)
    void* PyUnicode_DATA(object s)
    uint32_t PyUnicode_READ(int kind, void* data, Py_ssize_t index) nogil


cdef inline uint32_t _rotl32(uint32_t x, int r) noexcept nogil:
    return (x << r) | (x >> (32 - r))


cdef inline int32_t _java_long_hash(int64_t v) noexcept nogil:
    # Long.hashCode: (int) (value ^ (value >>> 32))
    cdef uint64_t u = <uint64_t>v
    return <int32_t><uint32_t>(u ^ (u >> 32))


cdef inline int32_t _java_double_hash(float64_t d) noexcept nogil:
    # Double.hashCode over doubleToLongBits, which folds every NaN into 0x7ff8000000000000.
    cdef uint64_t bits
    if d != d:
        bits = 0x7ff8000000000000ULL
    else:
        memcpy(&bits, &d, 8)
    return <int32_t><uint32_t>(bits ^ (bits >> 32))


cdef inline int32_t _java_float_hash(float32_t f) noexcept nogil:
    # Float.hashCode = floatToIntBits, which folds every NaN into 0x7fc00000.
    cdef uint32_t bits
    if f != f:
        bits = 0x7fc00000U
    else:
        memcpy(&bits, &f, 4)
    return <int32_t>bits


cdef inline uint32_t _java_string_step(uint32_t h, uint32_t code_point) noexcept nogil:
    # String.hashCode runs over UTF-16 code units: a code point beyond the BMP counts as its
    # surrogate pair.
    cdef uint32_t v
    if code_point < 0x10000:
        return h * 31 + code_point
    v = code_point - 0x10000
    h = h * 31 + (0xD800 + (v >> 10))
    return h * 31 + (0xDC00 + (v & 0x3FF))


cdef inline int32_t _flink_murmur(int32_t code) noexcept nogil:
    # org.apache.flink.util.MathUtils.murmurHash: one murmur3 round, fmix32, then a non-negative
    # result (Integer.MIN_VALUE maps to 0, as Java's Math.abs would not).
    cdef uint32_t h = <uint32_t>code
    h *= 0xcc9e2d51U
    h = _rotl32(h, 15)
    h *= 0x1b873593U
    h = _rotl32(h, 13)
    h = h * 5 + 0xe6546b64U
    h ^= 4
    h ^= h >> 16
    h *= 0x85ebca6bU
    h ^= h >> 13
    h *= 0xc2b2ae35U
    h ^= h >> 16
    cdef int32_t s = <int32_t>h
    if s >= 0:
        return s
    if s != -2147483648:
        return -s
    return 0


cdef int32_t _kafka_murmur2(const unsigned char* data, Py_ssize_t length) noexcept nogil:
    # org.apache.kafka.common.utils.Utils.murmur2 (seed 0x9747b28c).
    cdef uint32_t m = 0x5bd1e995U
    cdef uint32_t h = 0x9747b28cU ^ <uint32_t>length
    cdef uint32_t k
    cdef Py_ssize_t i
    cdef Py_ssize_t blocks = length // 4
    cdef Py_ssize_t base = length & ~(<Py_ssize_t>3)
    cdef Py_ssize_t rest = length % 4
    for i in range(blocks):
        k = (<uint32_t>data[4 * i] | (<uint32_t>data[4 * i + 1] << 8)
             | (<uint32_t>data[4 * i + 2] << 16) | (<uint32_t>data[4 * i + 3] << 24))
        k *= m
        k ^= k >> 24
        k *= m
        h *= m
        h ^= k
    if rest == 3:
        h ^= (<uint32_t>data[base + 2]) << 16
    if rest >= 2:
        h ^= (<uint32_t>data[base + 1]) << 8
    if rest >= 1:
        h ^= <uint32_t>data[base]
        h *= m
    h ^= h >> 13
    h *= m
    h ^= h >> 15
    return <int32_t>h


# ---------------------------------------------------------------------------------------------
# Java hashCode() per dtype. The wrapper admits int8/int16/int32 (Byte/Short/Integer: the value),
# int64 (Long), bool (Boolean), float32/float64 (Float/Double), str (String).

def java_hash_integral(const integral_t[::1] keys, int32_t[::1] out):
    cdef Py_ssize_t i
    with nogil:
        for i in range(keys.shape[0]):
            if integral_t is int64_t or integral_t is uint64_t:
                out[i] = _java_long_hash(<int64_t>keys[i])
            else:
                out[i] = <int32_t>keys[i]


def java_hash_bool(const uint8_t[::1] keys, int32_t[::1] out):
    cdef Py_ssize_t i
    with nogil:
        for i in range(keys.shape[0]):
            out[i] = 1231 if keys[i] else 1237


def java_hash_real(const real_t[::1] keys, int32_t[::1] out):
    cdef Py_ssize_t i
    with nogil:
        for i in range(keys.shape[0]):
            if real_t is float32_t:
                out[i] = _java_float_hash(keys[i])
            else:
                out[i] = _java_double_hash(keys[i])


def java_hash_fixed_unicode(const uint32_t[::1] raw, Py_ssize_t width, int32_t[::1] out):
    cdef Py_ssize_t i, j, length
    cdef uint32_t h
    with nogil:
        for i in range(out.shape[0]):
            length = _strip_nul_ucs4(&raw[i * width], width)
            h = 0
            for j in range(length):
                h = _java_string_step(h, raw[i * width + j])
            out[i] = <int32_t>h


cdef int32_t _java_hash_object(object obj, Py_ssize_t index) except? -1:
    cdef Py_ssize_t j, length
    cdef int kind
    cdef void* data
    cdef uint32_t h = 0
    cdef int overflow = 0
    cdef long long small
    if isinstance(obj, str):
        kind = PyUnicode_KIND(obj)
        data = PyUnicode_DATA(obj)
        length = PyUnicode_GET_LENGTH(obj)
        for j in range(length):
            h = _java_string_step(h, PyUnicode_READ(kind, data, j))
        return <int32_t>h
    if isinstance(obj, bool):
        return 1231 if obj else 1237
    if isinstance(obj, int):
        small = PyLong_AsLongLongAndOverflow(obj, &overflow)
        if overflow == 0:
            return _java_long_hash(small)
        raise OverflowError(
            f"partition(scheme='flink'): int key at index {index} does not fit a Java long"
        )
    if isinstance(obj, float):
        return _java_double_hash(obj)
    raise TypeError(
        f"partition(scheme='flink'): unsupported key of type {type(obj).__name__!r} at index "
        f"{index}; object keys must be str (String), int (Long), float (Double) or bool (Boolean)"
    )


def java_hash_objects(object[::1] keys, int32_t[::1] out):
    cdef Py_ssize_t i
    for i in range(keys.shape[0]):
        out[i] = _java_hash_object(keys[i], i)


def flink_key_groups(const int32_t[::1] java_hashes, int32_t max_parallelism, int32_t[::1] out):
    """KeyGroupRangeAssignment.computeKeyGroupForKeyHash for each hash."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(java_hashes.shape[0]):
            out[i] = _flink_murmur(java_hashes[i]) % max_parallelism


def flink_operator_indexes(const int32_t[::1] key_groups, int32_t parallelism,
                           int32_t max_parallelism, part_t[::1] out):
    """KeyGroupRangeAssignment.computeOperatorIndexForKeyGroup for each key group."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(key_groups.shape[0]):
            # Java computes this in int; key_group * parallelism < 2**15 * 2**15 fits.
            out[i] = <part_t>((<int64_t>key_groups[i] * parallelism) // max_parallelism)


# ---------------------------------------------------------------------------------------------
# Kafka: murmur2 of the serialised key. int16/int32/int64 as Kafka's Short/Integer/Long
# serializers write them (big-endian two's complement); bytes as they are; str as UTF-8.

def kafka_murmur2_integral(const integral_t[::1] keys, int32_t[::1] out):
    cdef Py_ssize_t i
    cdef int b
    cdef int width = sizeof(integral_t)
    cdef unsigned char buf[8]
    cdef uint64_t v
    with nogil:
        for i in range(keys.shape[0]):
            v = <uint64_t>(<int64_t>keys[i])
            for b in range(width):
                buf[b] = <unsigned char>(v >> (8 * (width - 1 - b)))
            out[i] = _kafka_murmur2(buf, width)


def kafka_murmur2_fixed_bytes(const uint8_t[::1] raw, Py_ssize_t itemsize, int32_t[::1] out):
    cdef Py_ssize_t i
    cdef const unsigned char* p
    with nogil:
        for i in range(out.shape[0]):
            p = &raw[i * itemsize]
            out[i] = _kafka_murmur2(p, _strip_nul_bytes(p, itemsize))


def kafka_murmur2_fixed_unicode(const uint32_t[::1] raw, Py_ssize_t width, int32_t[::1] out):
    cdef Py_ssize_t i, length
    cdef unsigned char* buf = <unsigned char*>malloc(4 * width + 1)
    if buf == NULL:
        raise MemoryError("partition(scheme='kafka'): cannot allocate a UTF-8 buffer")
    try:
        with nogil:
            for i in range(out.shape[0]):
                length = _strip_nul_ucs4(&raw[i * width], width)
                length = _utf8_from_ucs4(&raw[i * width], length, buf)
                out[i] = _kafka_murmur2(buf, length)
    finally:
        free(buf)


def kafka_murmur2_objects(object[::1] keys, int32_t[::1] out):
    cdef Py_ssize_t i, size
    cdef const char* data
    for i in range(keys.shape[0]):
        obj = keys[i]
        if isinstance(obj, str):
            try:
                data = PyUnicode_AsUTF8AndSize(obj, &size)
            except UnicodeEncodeError:
                raise ValueError(
                    f"partition(scheme='kafka'): str key at index {i} is not valid UTF-8 "
                    "(a lone surrogate); Kafka's StringSerializer would alter it"
                ) from None
            out[i] = _kafka_murmur2(<const unsigned char*>data, size)
        elif isinstance(obj, bytes):
            out[i] = _kafka_murmur2(<const unsigned char*>PyBytes_AS_STRING(obj),
                                    PyBytes_GET_SIZE(obj))
        else:
            raise TypeError(
                f"partition(scheme='kafka'): unsupported key of type {type(obj).__name__!r} at "
                f"index {i}; object keys must be str or bytes (use an int16/int32/int64 array "
                "to choose Kafka's Short/Integer/Long serializer)"
            )


def kafka_partitions(const int32_t[::1] murmur, part_t n, part_t[::1] out):
    """Utils.toPositive(murmur2) % numPartitions."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(murmur.shape[0]):
            out[i] = (murmur[i] & 0x7fffffff) % n


def kafka_murmur2_bytes(const uint8_t[::1] data):
    """Kafka's murmur2 of one byte string (for tests and single keys)."""
    return _kafka_murmur2(&data[0] if data.shape[0] else NULL, data.shape[0])
