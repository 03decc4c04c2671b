# Declarations of the keyed hash aggregation (aggregate.pyx): the group table's struct, the
# value types its reducers are specialised for, and the inline helpers of its hot loop.
# cimported by aggregate.pyx (`from _aggregate_shared cimport ...`) like _typedefs.pxd; named
# apart from the .pyx for the reason _solver_shared.pxd gives (an `aggregate.pxd` would be taken
# for the declarations of a module `aggregate`), and holding only types and inline functions
# with their bodies, so that cimporting it costs nothing at runtime.
#
# Error contracts of aggregate.pyx's kernels (full signatures there):
#     _table_reserve(t, groups)       except -1 nogil: MemoryError (taken with the GIL), else 0
#     _table_assign(t, keys, n, out)  except -1 nogil: MemoryError from a growth, else 0
#     _reduce_sum/_min/_max(...)      noexcept nogil: inputs validated by the caller
#     _normalise_f64(src, out, n)     noexcept nogil

from _typedefs cimport int64_t, uint64_t, float64_t


# Group numbers of int64 keys: open addressing with linear probing over a power-of-two table
# kept at most half full. A slot holds its key next to its group number + 1 (0: empty, so a
# fresh table is calloc's zeros): one cache line read per probe. `keys` holds each group's key
# in group (first-seen) order.
cdef struct _slot:
    int64_t key
    int64_t group


cdef struct _group_table:
    _slot* slots
    int64_t mask             # capacity - 1
    int64_t groups
    int64_t* keys            # (key_capacity,)
    int64_t key_capacity


# The accumulator types: every value column is widened to one of them by the Python layer.
ctypedef fused acc_t:
    int64_t
    uint64_t
    float64_t


cdef inline uint64_t _mix64(uint64_t k) noexcept nogil:
    # murmur3's 64-bit finaliser: consecutive integer keys spread over the whole table.
    k ^= k >> 33
    k *= 0xff51afd7ed558ccdULL
    k ^= k >> 33
    k *= 0xc4ceb9fe1a85ec53ULL
    k ^= k >> 33
    return k
