# Keyed hash aggregation: rows grouped by an int64 key, each group's values reduced.
#
# The Python layer (pydispatch.dataflow.aggregation) brings every key column to int64 first:
# integers widened, uint64, datetimes and float64 viewed bit for bit (floats normalised here
# first, so that -0.0 and 0.0 are one key and every NaN is one key), and str/bytes/object keys
# factorised to dense codes by a dict. It widens values to int64, uint64 or float64 and checks
# lengths; the kernels below trust it. A GroupTable gives each distinct key a group number in
# first-seen order; the reducers fold a batch of (group, value) rows into per-group
# accumulators, so a table and its accumulators may be fed batch after batch (a running
# aggregation) and merged partials carry a weight per row (their row counts).

from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcpy

from _typedefs cimport int64_t, uint64_t, float64_t
from _aggregate_shared cimport _group_table, _slot, acc_t, _mix64

cdef extern from *:
    void __builtin_prefetch(const void* address) noexcept nogil

# Rows ahead whose slot _table_assign prefetches: a table beyond the L2 cache costs a memory
# round trip per row otherwise (measured: 16 ns/row at 100k keys without, see the note).
cdef enum:
    _PREFETCH_AHEAD = 16


cdef int _table_rehash(_group_table* t, int64_t capacity) except -1 nogil:
    cdef _slot* slots = <_slot*>calloc(<size_t>capacity, sizeof(_slot))
    cdef int64_t mask = capacity - 1
    cdef int64_t g, s
    if slots == NULL:
        with gil:
            raise MemoryError(f"group table: cannot allocate {capacity} slots")
    for g in range(t.groups):
        s = <int64_t>(_mix64(<uint64_t>t.keys[g]) & <uint64_t>mask)
        while slots[s].group != 0:
            s = (s + 1) & mask
        slots[s].group = g + 1
        slots[s].key = t.keys[g]
    free(t.slots)
    t.slots = slots
    t.mask = mask
    return 0


cdef int _table_reserve(_group_table* t, int64_t groups) except -1 nogil:
    # Room for `groups` groups: the key list and a table at most half full.
    cdef int64_t capacity = t.mask + 1
    cdef int64_t key_capacity = t.key_capacity
    cdef int64_t* keys
    if groups > key_capacity:
        while key_capacity < groups:
            key_capacity *= 2
        keys = <int64_t*>realloc(t.keys, <size_t>key_capacity * sizeof(int64_t))
        if keys == NULL:
            with gil:
                raise MemoryError(f"group table: cannot hold {groups} keys")
        t.keys = keys
        t.key_capacity = key_capacity
    if 2 * groups > capacity:
        while 2 * groups > capacity:
            capacity *= 2
        _table_rehash(t, capacity)
    return 0


cdef int _table_assign(_group_table* t, const int64_t* keys, Py_ssize_t n,
                       int64_t* out) except -1 nogil:
    # out[i] = the group number of keys[i]; a key not seen before opens the next group.
    cdef Py_ssize_t i
    cdef int64_t k, s, g
    cdef int64_t mask = t.mask
    for i in range(n):
        if i + _PREFETCH_AHEAD < n:
            __builtin_prefetch(&t.slots[_mix64(<uint64_t>keys[i + _PREFETCH_AHEAD]) & <uint64_t>mask])
        k = keys[i]
        s = <int64_t>(_mix64(<uint64_t>k) & <uint64_t>mask)
        while True:
            g = t.slots[s].group
            if g == 0:
                if 2 * (t.groups + 1) > mask + 1 or t.groups == t.key_capacity:
                    _table_reserve(t, t.groups + 1)
                    mask = t.mask
                    s = <int64_t>(_mix64(<uint64_t>k) & <uint64_t>mask)
                    continue  # probe the grown table again from the start
                g = t.groups
                t.groups += 1
                t.keys[g] = k
                t.slots[s].group = g + 1
                t.slots[s].key = k
                out[i] = g
                break
            if t.slots[s].key == k:
                out[i] = g - 1
                break
            s = (s + 1) & mask
    return 0


cdef void _normalise_f64(const float64_t* src, int64_t* out, Py_ssize_t n) noexcept nogil:
    # Float keys as int64 bit patterns: -0.0 becomes 0.0 (they compare equal) and every NaN the
    # one quiet NaN (pandas and polars group all NaN keys together; so does this).
    cdef Py_ssize_t i
    cdef float64_t d
    cdef int64_t bits
    cdef int64_t nan_bits = 0x7ff8000000000000
    for i in range(n):
        d = src[i]
        if d != d:
            out[i] = nan_bits
        else:
            d = d + 0.0
            memcpy(&bits, &d, sizeof(int64_t))
            out[i] = bits


# The reducers. counts[g] == 0 marks a group not reduced yet, so its first value is taken as it
# is (min/max need no identity element); weights (NULL: 1 per row) are partial row counts.
# Sums wrap around in integers, as numpy's do; a NaN in a float group makes its sum, min and
# max NaN, as numpy's sum, np.minimum and np.maximum do.

cdef void _reduce_sum(const int64_t* groups, const acc_t* values, const int64_t* weights,
                      Py_ssize_t n, acc_t* acc, int64_t* counts) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t g
    for i in range(n):
        g = groups[i]
        if counts[g] == 0:
            acc[g] = values[i]
        else:
            acc[g] = acc[g] + values[i]
        counts[g] += 1 if weights == NULL else weights[i]


cdef void _reduce_min(const int64_t* groups, const acc_t* values, const int64_t* weights,
                      Py_ssize_t n, acc_t* acc, int64_t* counts) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t g
    cdef acc_t v
    for i in range(n):
        g = groups[i]
        v = values[i]
        if acc_t is float64_t:
            if counts[g] == 0 or v < acc[g] or v != v:
                acc[g] = v
        elif counts[g] == 0 or v < acc[g]:
            acc[g] = v
        counts[g] += 1 if weights == NULL else weights[i]


cdef void _reduce_max(const int64_t* groups, const acc_t* values, const int64_t* weights,
                      Py_ssize_t n, acc_t* acc, int64_t* counts) noexcept nogil:
    cdef Py_ssize_t i
    cdef int64_t g
    cdef acc_t v
    for i in range(n):
        g = groups[i]
        v = values[i]
        if acc_t is float64_t:
            if counts[g] == 0 or v > acc[g] or v != v:
                acc[g] = v
        elif counts[g] == 0 or v > acc[g]:
            acc[g] = v
        counts[g] += 1 if weights == NULL else weights[i]


cdef void _reduce_count(const int64_t* groups, const int64_t* weights, Py_ssize_t n,
                        int64_t* counts) noexcept nogil:
    cdef Py_ssize_t i
    if weights == NULL:
        for i in range(n):
            counts[groups[i]] += 1
    else:
        for i in range(n):
            counts[groups[i]] += weights[i]


# Reducer codes of reduce_groups (the Python layer maps names to them).
AGG_SUM = 0
AGG_MIN = 1
AGG_MAX = 2
AGG_COUNT = 3


cdef class GroupTable:
    """Distinct int64 keys -> group numbers 0, 1, ... in first-seen order (see the file's
    header). Grows as keys arrive; memory is two words per slot at most twice the groups, plus
    one word per group."""

    cdef _group_table t

    def __cinit__(self, Py_ssize_t expected=0):
        cdef int64_t capacity = 16
        while capacity < 2 * expected:
            capacity *= 2
        self.t.slots = <_slot*>calloc(<size_t>capacity, sizeof(_slot))
        self.t.keys = <int64_t*>calloc(<size_t>(capacity // 2), sizeof(int64_t))
        if self.t.slots == NULL or self.t.keys == NULL:
            raise MemoryError(f"group table: cannot allocate {capacity} slots")
        self.t.mask = capacity - 1
        self.t.key_capacity = capacity // 2
        self.t.groups = 0

    def __dealloc__(self):
        free(self.t.slots)
        free(self.t.keys)

    def __len__(self):
        return self.t.groups

    def assign(self, const int64_t[::1] keys, int64_t[::1] out):
        """out[i] = the group of keys[i] (out as long as keys: checked by the caller)."""
        cdef Py_ssize_t n = keys.shape[0]
        if n == 0:
            return
        with nogil:
            _table_assign(&self.t, &keys[0], n, &out[0])

    def keys(self, int64_t[::1] out):
        """Each group's key, in group order, into out (len(self) long)."""
        if self.t.groups:
            memcpy(&out[0], self.t.keys, <size_t>self.t.groups * sizeof(int64_t))


def normalise_float_keys(const float64_t[::1] keys, int64_t[::1] out):
    """Float keys as the int64 bit patterns GroupTable groups (see _normalise_f64)."""
    if keys.shape[0]:
        with nogil:
            _normalise_f64(&keys[0], &out[0], keys.shape[0])


def reduce_groups(int agg, const int64_t[::1] groups, const acc_t[::1] values,
                  weights, acc_t[::1] acc, int64_t[::1] counts):
    """Fold rows (groups[i], values[i]) into acc and counts (``agg``: AGG_SUM, AGG_MIN or
    AGG_MAX); ``weights``: None (each row counts 1) or an int64 array of row counts. Groups
    are < len(acc) == len(counts) and values as long as groups: checked by the caller."""
    cdef const int64_t[::1] w
    cdef const int64_t* wp = NULL
    cdef Py_ssize_t n = groups.shape[0]
    if n == 0:
        return
    if weights is not None:
        w = weights
        wp = &w[0]
    with nogil:
        if agg == 0:
            _reduce_sum(&groups[0], &values[0], wp, n, &acc[0], &counts[0])
        elif agg == 1:
            _reduce_min(&groups[0], &values[0], wp, n, &acc[0], &counts[0])
        else:
            _reduce_max(&groups[0], &values[0], wp, n, &acc[0], &counts[0])


def count_groups(const int64_t[::1] groups, weights, int64_t[::1] counts):
    """counts[groups[i]] += weights[i] (1 when weights is None)."""
    cdef const int64_t[::1] w
    cdef const int64_t* wp = NULL
    cdef Py_ssize_t n = groups.shape[0]
    if n == 0:
        return
    if weights is not None:
        w = weights
        wp = &w[0]
    with nogil:
        _reduce_count(&groups[0], wp, n, &counts[0])
