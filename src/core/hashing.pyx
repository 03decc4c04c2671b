# Native key hashing: pydispatch's own 64-bit hash of keys of every supported dtype.
#
# Invariants (the tests hold the kernels to them, against a pure-Python reference):
# - Equal integer values hash alike whatever their width or signedness: an integer v in the int64
#   range hashes as fmix64(uint64(v) ^ key). A uint64 above 2**63-1 is tagged so that it does not
#   meet the negative int64 with the same bits (2**64-1 is not -1).
# - A float that equals an integer in the 64-bit range hashes as that integer (so 1.0 meets 1, and
#   0.0 meets -0.0); every NaN hashes alike; other floats hash by their IEEE bits, tagged.
# - str hashes its UTF-8 bytes (lone surrogates as 'surrogatepass' writes them), bytes its bytes,
#   each with its own tag, so "a" and b"a" differ. Numpy's fixed-width S and U items lose their
#   trailing NULs first, as numpy itself does when it reads them.
# - Multi-byte loads are little-endian by construction, so hashes agree across architectures.
# - Each kernel reads its input through a `const T[::1]` view: contiguous, possibly read-only,
#   never copied.

from libc.string cimport memcpy
from libc.stdlib cimport malloc, free
from cpython.unicode cimport PyUnicode_Check
from cpython.bytes cimport PyBytes_Check, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_Check, PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_Check

from _typedefs cimport (
    int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t,
    float32_t, float64_t, part_t, integral_t, real_t,
)

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    long long PyLong_AsLongLongAndOverflow(object v, int* overflow) except? -1
    unsigned long long PyLong_AsUnsignedLongLong(object v) except? -1

# Tags keep kinds of value apart; odd 64-bit constants with no structure.
cdef uint64_t _TAG_BIG_UINT = 0xd6e8feb86659fd93ULL
cdef uint64_t _TAG_FLOAT = 0xa0761d6478bd642fULL
cdef uint64_t _TAG_BYTES = 0xe7037ed1a0b428dbULL
cdef uint64_t _TAG_STR = 0x8ebc6af09c88c6e3ULL
cdef uint64_t _TAG_BIG_INT = 0x589965cc75374cc3ULL
cdef uint64_t _NAN_BITS = 0x7ff8000000000000ULL
cdef uint64_t _GOLDEN = 0x9e3779b97f4a7c15ULL
cdef uint64_t _M3_C1 = 0x87c37b91114253d5ULL
cdef uint64_t _M3_C2 = 0x4cf5ad432745937fULL


cdef inline uint64_t _fmix64(uint64_t k) noexcept nogil:
    # MurmurHash3's 64-bit finaliser: a bijection with full avalanche.
    k ^= k >> 33
    k *= 0xff51afd7ed558ccdULL
    k ^= k >> 33
    k *= 0xc4ceb9fe1a85ec53ULL
    k ^= k >> 33
    return k


cdef inline uint64_t _rotl64(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t _seed_key(uint64_t seed) noexcept nogil:
    return _fmix64(seed + _GOLDEN)


cdef inline uint64_t _hash_i64(int64_t v, uint64_t key) noexcept nogil:
    return _fmix64(<uint64_t>v ^ key)


cdef inline uint64_t _hash_u64(uint64_t v, uint64_t key) noexcept nogil:
    if v >> 63:
        return _fmix64(v ^ key ^ _TAG_BIG_UINT)
    return _fmix64(v ^ key)


cdef inline uint64_t _hash_f64(float64_t d, uint64_t key) noexcept nogil:
    cdef uint64_t bits
    if d != d:
        return _fmix64(_NAN_BITS ^ key ^ _TAG_FLOAT)
    # The range test comes first: casting an out-of-range double to an integer is undefined.
    if -9.223372036854775808e18 <= d < 9.223372036854775808e18:
        if <float64_t>(<int64_t>d) == d:
            return _hash_i64(<int64_t>d, key)
    elif 9.223372036854775808e18 <= d < 1.8446744073709551616e19:
        if <float64_t>(<uint64_t>d) == d:
            return _hash_u64(<uint64_t>d, key)
    memcpy(&bits, &d, 8)
    return _fmix64(bits ^ key ^ _TAG_FLOAT)


cdef inline uint64_t _load_le64(const unsigned char* p) noexcept nogil:
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
            | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))


cdef uint64_t _hash_bytes(const unsigned char* p, Py_ssize_t n, uint64_t key) noexcept nogil:
    # One lane of MurmurHash3 x64 over 8-byte words, then the length, then fmix64.
    cdef uint64_t h = key
    cdef uint64_t k
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t j
    while i + 8 <= n:
        k = _load_le64(p + i)
        k *= _M3_C1
        k = _rotl64(k, 31)
        k *= _M3_C2
        h ^= k
        h = _rotl64(h, 27) * 5 + 0x52dce729
        i += 8
    if i < n:
        k = 0
        for j in range(n - i):
            k |= (<uint64_t>p[i + j]) << (8 * j)
        k *= _M3_C1
        k = _rotl64(k, 31)
        k *= _M3_C2
        h ^= k
    h ^= <uint64_t>n
    return _fmix64(h)


cdef inline Py_ssize_t _strip_nul_bytes(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    while n > 0 and p[n - 1] == 0:
        n -= 1
    return n


cdef inline Py_ssize_t _strip_nul_ucs4(const uint32_t* p, Py_ssize_t n) noexcept nogil:
    while n > 0 and p[n - 1] == 0:
        n -= 1
    return n


cdef Py_ssize_t _utf8_from_ucs4(const uint32_t* src, Py_ssize_t n, unsigned char* dst) noexcept nogil:
    # Writes at most 4 * n bytes (the caller sizes dst so). Surrogates are written as three bytes,
    # as Python's 'surrogatepass' does, so a numpy U item and the equal str object agree.
    cdef Py_ssize_t i
    cdef Py_ssize_t o = 0
    cdef uint32_t c
    for i in range(n):
        c = src[i]
        if c < 0x80:
            dst[o] = <unsigned char>c
            o += 1
        elif c < 0x800:
            dst[o] = <unsigned char>(0xC0 | (c >> 6))
            dst[o + 1] = <unsigned char>(0x80 | (c & 0x3F))
            o += 2
        elif c < 0x10000:
            dst[o] = <unsigned char>(0xE0 | (c >> 12))
            dst[o + 1] = <unsigned char>(0x80 | ((c >> 6) & 0x3F))
            dst[o + 2] = <unsigned char>(0x80 | (c & 0x3F))
            o += 3
        else:
            dst[o] = <unsigned char>(0xF0 | ((c >> 18) & 0x07))
            dst[o + 1] = <unsigned char>(0x80 | ((c >> 12) & 0x3F))
            dst[o + 2] = <unsigned char>(0x80 | ((c >> 6) & 0x3F))
            dst[o + 3] = <unsigned char>(0x80 | (c & 0x3F))
            o += 4
    return o


cdef inline part_t _reduce(uint64_t h, uint64_t n) noexcept nogil:
    # Lemire's multiply-shift reduction of the high 32 bits into [0, n): no division, and for
    # n < 2**31 it is as even as a modulo.
    return <part_t>(((h >> 32) * n) >> 32)


# ---------------------------------------------------------------------------------------------
# Per-dtype hashing into a uint64 output (out[i] = hash(keys[i])).

cdef void _hash_integral(const integral_t[::1] keys, uint64_t key, uint64_t[::1] out) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(keys.shape[0]):
        if integral_t is uint64_t:
            out[i] = _hash_u64(keys[i], key)
        else:
            out[i] = _hash_i64(<int64_t>keys[i], key)


cdef void _hash_real(const real_t[::1] keys, uint64_t key, uint64_t[::1] out) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(keys.shape[0]):
        out[i] = _hash_f64(<float64_t>keys[i], key)


def hash_integral(const integral_t[::1] keys, uint64_t seed, uint64_t[::1] out):
    """out[i] = hash of the integer keys[i] (any width): see the module's invariants."""
    with nogil:
        _hash_integral(keys, _seed_key(seed), out)


def hash_real(const real_t[::1] keys, uint64_t seed, uint64_t[::1] out):
    """out[i] = hash of the float keys[i]."""
    with nogil:
        _hash_real(keys, _seed_key(seed), out)


def hash_fixed_bytes(const uint8_t[::1] raw, Py_ssize_t itemsize, uint64_t seed,
                     uint64_t[::1] out):
    """Hash numpy 'S<itemsize>' items given as their raw bytes (len(raw) == itemsize * len(out))."""
    cdef Py_ssize_t i
    cdef Py_ssize_t length
    cdef uint64_t key = _seed_key(seed) ^ _TAG_BYTES
    cdef const unsigned char* p
    with nogil:
        for i in range(out.shape[0]):
            p = &raw[i * itemsize]
            length = _strip_nul_bytes(p, itemsize)
            out[i] = _hash_bytes(p, length, key)


def hash_fixed_unicode(const uint32_t[::1] raw, Py_ssize_t width, uint64_t seed,
                       uint64_t[::1] out):
    """Hash numpy 'U<width>' items given as UCS4 code points (len(raw) == width * len(out))."""
    cdef Py_ssize_t i
    cdef Py_ssize_t length
    cdef uint64_t key = _seed_key(seed) ^ _TAG_STR
    cdef unsigned char* buf = <unsigned char*>malloc(4 * width + 1)
    if buf == NULL:
        raise MemoryError("hash_keys: cannot allocate a UTF-8 buffer")
    try:
        with nogil:
            for i in range(out.shape[0]):
                length = _strip_nul_ucs4(&raw[i * width], width)
                length = _utf8_from_ucs4(&raw[i * width], length, buf)
                out[i] = _hash_bytes(buf, length, key)
    finally:
        free(buf)


cdef uint64_t _hash_object(object obj, uint64_t key, Py_ssize_t index) except? 0:
    """Hash one element of an object array; raises TypeError naming the element otherwise."""
    cdef Py_ssize_t size
    cdef const char* data
    cdef int overflow = 0
    cdef long long small
    if PyUnicode_Check(obj):
        try:
            data = PyUnicode_AsUTF8AndSize(obj, &size)
        except UnicodeEncodeError:
            as_bytes = (<str>obj).encode("utf-8", "surrogatepass")
            return _hash_bytes(<const unsigned char*>PyBytes_AS_STRING(as_bytes),
                               PyBytes_GET_SIZE(as_bytes), key ^ _TAG_STR)
        return _hash_bytes(<const unsigned char*>data, size, key ^ _TAG_STR)
    if PyBytes_Check(obj):
        return _hash_bytes(<const unsigned char*>PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj),
                           key ^ _TAG_BYTES)
    if PyLong_Check(obj):
        small = PyLong_AsLongLongAndOverflow(obj, &overflow)
        if overflow == 0:
            return _hash_i64(small, key)
        if overflow > 0 and obj < 18446744073709551616:
            return _hash_u64(PyLong_AsUnsignedLongLong(obj), key)
        # Beyond 64 bits: the two's-complement bytes, tagged.
        as_bytes = (<object>obj).to_bytes(((<object>obj).bit_length() + 8) // 8, "little",
                                          signed=True)
        return _hash_bytes(<const unsigned char*>PyBytes_AS_STRING(as_bytes),
                           PyBytes_GET_SIZE(as_bytes), key ^ _TAG_BIG_INT)
    if PyFloat_Check(obj):
        return _hash_f64(PyFloat_AS_DOUBLE(obj), key)
    if hasattr(obj, "dtype") and hasattr(obj, "item") and type(obj).__module__ == "numpy":
        # A numpy scalar stored in an object array: hash the equal Python value.
        return _hash_object(obj.item(), key, index)
    raise TypeError(
        f"hash_keys: unsupported key of type {type(obj).__name__!r} at index {index}; "
        "object keys must be str, bytes, int or float"
    )


def hash_objects(object[::1] keys, uint64_t seed, uint64_t[::1] out):
    """Hash an object array of str, bytes, int or float (holding the GIL: they are objects)."""
    cdef Py_ssize_t i
    cdef uint64_t key = _seed_key(seed)
    for i in range(keys.shape[0]):
        out[i] = _hash_object(keys[i], key, i)


def combine_hashes(uint64_t[::1] acc, const uint64_t[::1] column):
    """acc[i] = combine(acc[i], column[i]): order-sensitive, so (a, b) and (b, a) differ."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(acc.shape[0]):
            acc[i] = _fmix64(_rotl64(acc[i], 23) * _GOLDEN + column[i])


def reduce_hashes(const uint64_t[::1] hashes, part_t n, part_t[::1] out):
    """out[i] = the partition in [0, n) of hashes[i]."""
    cdef Py_ssize_t i
    cdef uint64_t un = <uint64_t>n
    with nogil:
        for i in range(hashes.shape[0]):
            out[i] = _reduce(hashes[i], un)


def hash_partition_integral(const integral_t[::1] keys, uint64_t seed, part_t n, part_t[::1] out):
    """Fused hash + reduce for integer keys: no intermediate hash array."""
    cdef Py_ssize_t i
    cdef uint64_t key = _seed_key(seed)
    cdef uint64_t un = <uint64_t>n
    with nogil:
        for i in range(keys.shape[0]):
            if integral_t is uint64_t:
                out[i] = _reduce(_hash_u64(keys[i], key), un)
            else:
                out[i] = _reduce(_hash_i64(<int64_t>keys[i], key), un)


def hash_partition_real(const real_t[::1] keys, uint64_t seed, part_t n, part_t[::1] out):
    """Fused hash + reduce for float keys."""
    cdef Py_ssize_t i
    cdef uint64_t key = _seed_key(seed)
    cdef uint64_t un = <uint64_t>n
    with nogil:
        for i in range(keys.shape[0]):
            out[i] = _reduce(_hash_f64(<float64_t>keys[i], key), un)
