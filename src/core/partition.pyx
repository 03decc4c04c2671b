# Kernels that turn keys or positions into partition ids, and ids into a grouping of rows.
#
# Invariants:
# - partition ids are part_t (int32) in [0, n); offsets and row indexes are index_t (int64).
# - scatter is a stable counting sort: rows of one partition keep their input order.
# - every kernel is O(rows) (two_choices: O(rows * log n)) and reads its inputs through const
#   contiguous views; it never copies them.

from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

from _typedefs cimport (
    int64_t, uint8_t, uint32_t, uint64_t, float32_t, float64_t, part_t, index_t, ordered_t,
)


cdef Py_ssize_t _histogram(const part_t[::1] ids, part_t n, index_t* offsets) noexcept nogil:
    # offsets[p + 1] += rows in partition p. Returns the first row whose id is out of range,
    # or -1 when every id is in [0, n).
    cdef Py_ssize_t i
    cdef part_t p
    for i in range(ids.shape[0]):
        p = ids[i]
        if p < 0 or p >= n:
            return i
        offsets[p + 1] += 1
    return -1


# Rows staged per partition before a write to order: one 64-byte cache line of int64s.
cdef enum:
    _STAGE = 8
# Above this many partitions the staging area (n cache lines) would spill out of L1/L2.
cdef part_t _STAGED_SCATTER_MAX_N = 1024


cdef int _scatter_staged(const part_t[::1] ids, part_t n, index_t* cursor,
                         index_t* order) noexcept nogil:
    # The placement pass with software write-combining: each partition's row numbers gather in
    # a cache-line buffer and go to order a whole line at a time, so the pass does not touch
    # one cache line of order per row. Same result as the plain loop (rows stay in input
    # order). Returns -1 (and writes nothing) when the buffers cannot be allocated.
    cdef index_t* stage = <index_t*>malloc(<size_t>n * _STAGE * sizeof(index_t))
    cdef uint8_t* fill = <uint8_t*>calloc(<size_t>n, sizeof(uint8_t))
    cdef Py_ssize_t i
    cdef part_t p
    cdef uint8_t f
    if stage == NULL or fill == NULL:
        free(stage)
        free(fill)
        return -1
    for i in range(ids.shape[0]):
        p = ids[i]
        f = fill[p]
        stage[p * _STAGE + f] = i
        f += 1
        if f == _STAGE:
            memcpy(&order[cursor[p]], &stage[p * _STAGE], _STAGE * sizeof(index_t))
            cursor[p] += _STAGE
            f = 0
        fill[p] = f
    for p in range(n):
        if fill[p]:
            memcpy(&order[cursor[p]], &stage[p * _STAGE], fill[p] * sizeof(index_t))
            cursor[p] += fill[p]
    free(stage)
    free(fill)
    return 0


def scatter_ids(const part_t[::1] ids, part_t n, index_t[::1] order, index_t[::1] offsets):
    """Fill order (len(ids)) and offsets (n + 1, zeroed) so that partition p's rows are
    order[offsets[p]:offsets[p + 1]], in input order. Raises ValueError on an id out of range."""
    cdef Py_ssize_t i, bad
    cdef part_t p
    cdef index_t* cursor
    with nogil:
        bad = _histogram(ids, n, &offsets[0])
        if bad < 0 and ids.shape[0] > 0:
            for p in range(n):
                offsets[p + 1] += offsets[p]
            # offsets[:n] becomes the write cursor; it is restored by the shift below.
            cursor = &offsets[0]
            if n > _STAGED_SCATTER_MAX_N or _scatter_staged(ids, n, cursor, &order[0]) != 0:
                for i in range(ids.shape[0]):
                    p = ids[i]
                    order[cursor[p]] = i
                    cursor[p] += 1
            # After the pass cursor[p] == the end of p == the start of p + 1: shift back.
            for p in range(n, 0, -1):
                offsets[p] = offsets[p - 1]
            offsets[0] = 0
    if bad >= 0:
        raise ValueError(
            f"scatter: partition id {ids[bad]} at index {bad} is out of range [0, {n})"
        )


def range_partition_kernel(const ordered_t[::1] keys, const ordered_t[::1] boundaries,
                           part_t[::1] out):
    """out[i] = number of boundaries <= keys[i] (bisect right); NaN keys go to the last range.

    boundaries are sorted and NaN-free (the wrapper checks), so each search is O(log n).
    """
    cdef Py_ssize_t i, lo, hi, mid
    cdef Py_ssize_t nb = boundaries.shape[0]
    cdef ordered_t key
    with nogil:
        for i in range(keys.shape[0]):
            key = keys[i]
            if ordered_t is float32_t or ordered_t is float64_t:
                if key != key:
                    out[i] = <part_t>nb
                    continue
            lo = 0
            hi = nb
            while lo < hi:
                mid = (lo + hi) >> 1
                if boundaries[mid] <= key:
                    lo = mid + 1
                else:
                    hi = mid
            out[i] = <part_t>lo


def cyclic_ids(int64_t start, part_t first, part_t width, part_t[::1] out):
    """out[j] = first + (start + j) % width: round-robin (first=0, width=n) and rescale."""
    cdef Py_ssize_t j
    cdef part_t cur = <part_t>(start % width)
    with nogil:
        for j in range(out.shape[0]):
            out[j] = first + cur
            cur += 1
            if cur == width:
                cur = 0


# ---------------------------------------------------------------------------------------------
# Two choices with hot-key spreading (partial key grouping; the hottest keys may go anywhere).

cdef inline bint _lighter(const int64_t* loads, part_t a, part_t b) noexcept nogil:
    # The order of the heap: by load, then by index, so that ties break deterministically.
    return loads[a] < loads[b] or (loads[a] == loads[b] and a < b)


cdef void _sift_down(part_t* heap, part_t* position, const int64_t* loads, part_t n,
                     part_t k) noexcept nogil:
    # Restores the heap after loads[heap[k]] grew (loads only ever grow).
    cdef part_t child, item = heap[k]
    while True:
        child = 2 * k + 1
        if child >= n:
            break
        if child + 1 < n and _lighter(loads, heap[child + 1], heap[child]):
            child += 1
        if not _lighter(loads, heap[child], item):
            break
        heap[k] = heap[child]
        position[heap[k]] = k
        k = child
    heap[k] = item
    position[item] = k


cdef int _two_choices(const uint64_t* hashes, Py_ssize_t rows, part_t n, double hot_fraction,
                      Py_ssize_t warmup, part_t* out, int64_t* loads) except -1 nogil:
    cdef Py_ssize_t i
    cdef int row
    cdef part_t a, b, pick
    cdef uint64_t h, est, cell
    cdef Py_ssize_t width = 1024
    # Count-min sketch of key frequencies, sized so that its over-count (about e * rows / width)
    # stays well under the hot threshold (hot_fraction * rows).
    while width < 64.0 / hot_fraction and width < (1 << 22):
        width <<= 1
    cdef uint64_t mask = <uint64_t>(width - 1)
    cdef uint32_t* sketch = <uint32_t*>calloc(4 * width, sizeof(uint32_t))
    cdef part_t* heap = <part_t*>calloc(n, sizeof(part_t))
    cdef part_t* position = <part_t*>calloc(n, sizeof(part_t))
    if sketch == NULL or heap == NULL or position == NULL:
        free(sketch)
        free(heap)
        free(position)
        with gil:
            raise MemoryError("two_choices: cannot allocate the frequency sketch")
    for a in range(n):
        heap[a] = a
        position[a] = a
    for i in range(rows):
        h = hashes[i]
        est = 0xFFFFFFFFULL
        for row in range(4):
            cell = <uint64_t>row * <uint64_t>width + (_fmix64(h + (<uint64_t>row + 1) * _GOLDEN) & mask)
            if sketch[cell] < 0xFFFFFFFFU:
                sketch[cell] += 1
            if sketch[cell] < est:
                est = sketch[cell]
        if i >= warmup and <double>est > hot_fraction * <double>(i + 1):
            pick = heap[0]          # a hot key: the least loaded partition of all
        else:
            a = _reduce(h, <uint64_t>n)
            b = _reduce(_fmix64(h ^ _TAG_BIG_UINT), <uint64_t>n)
            pick = b if _lighter(loads, b, a) else a
        out[i] = pick
        loads[pick] += 1
        _sift_down(heap, position, loads, n, position[pick])
    free(sketch)
    free(heap)
    free(position)
    return 0


def two_choices_kernel(const uint64_t[::1] hashes, part_t n, double hot_fraction,
                       Py_ssize_t warmup, part_t[::1] out, int64_t[::1] loads):
    """Assign rows by the power of two choices; loads (n, zeroed) receives the row counts."""
    cdef Py_ssize_t rows = hashes.shape[0]
    if rows == 0:
        return
    with nogil:
        _two_choices(&hashes[0], rows, n, hot_fraction, warmup, &out[0], &loads[0])


# ---------------------------------------------------------------------------------------------
# Gathering rows into partition order (split). Rows are moved as opaque words or byte runs:
# the dtype does not matter, only the width of a row.

ctypedef fused word_t:
    uint8_t
    uint16_t
    uint32_t
    uint64_t


def gather_words(const word_t[::1] src, const index_t[::1] order, word_t[::1] out):
    """out[j] = src[order[j]] for rows one word wide. order holds valid row numbers (it comes
    from scatter_ids), which is why no check is made here."""
    cdef Py_ssize_t j
    with nogil:
        for j in range(order.shape[0]):
            out[j] = src[order[j]]


def gather_bytes(const uint8_t[::1] src, Py_ssize_t width, const index_t[::1] order,
                 uint8_t[::1] out):
    """The same for rows of any width in bytes (len(src) == width * rows)."""
    cdef Py_ssize_t j
    if order.shape[0] == 0 or width == 0:
        return
    with nogil:
        for j in range(order.shape[0]):
            memcpy(&out[j * width], &src[order[j] * width], width)
