# Native key hashing.
from _typedefs cimport uint64_t, int64_t

cdef inline uint64_t _fmix64(uint64_t k) noexcept nogil:
    k ^= k >> 33
    k *= 0xff51afd7ed558ccdULL
    k ^= k >> 33
    k *= 0xc4ceb9fe1a85ec53ULL
    k ^= k >> 33
    return k

def fmix64_scalar(uint64_t k):
    return _fmix64(k)
