# Shared native types of pydispatch._core. Found on the Cython include path (setup.py), so every
# included .pyx cimports the same definitions. Only ctypedefs and fused types live here: nothing
# that would need a runtime module of its own.

from libc.stdint cimport (
    int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t,
)

ctypedef double float64_t
ctypedef float float32_t
ctypedef int32_t part_t      # a partition id: in [0, n), n < 2**31
ctypedef int64_t index_t     # a row index or an offset into rows

# Integer keys of every width. Kernels specialised per member: no virtual call in the hot loop.
ctypedef fused integral_t:
    int8_t
    int16_t
    int32_t
    int64_t
    uint8_t
    uint16_t
    uint32_t
    uint64_t

ctypedef fused real_t:
    float32_t
    float64_t

# Every numeric dtype that orders naturally (range partitioning).
ctypedef fused ordered_t:
    int8_t
    int16_t
    int32_t
    int64_t
    uint8_t
    uint16_t
    uint32_t
    uint64_t
    float32_t
    float64_t
