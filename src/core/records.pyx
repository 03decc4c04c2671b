# The record (Python object) path's hot loops: chained stateless operators fused into one pass
# per batch, and the keyed fold of a record combiner.
#
# Profiled (the note of issue 18): in a word count, every record went through a list
# comprehension per operator (a list built and dropped per stage) and then a Python loop of the
# combiner (an itemgetter call, a dict get, an operator.add call and a list store per record).
# Here a record goes depth first through every stage and straight into the fold: per record
# what remains is the user's function calls and one dict lookup.
#
# Semantics are those of pydispatch.dataflow.operators.transform and combiners.RecordCombiner
# (the Python versions, which the tests compare against): map, flat_map (any iterable) and
# filter (truthiness); sum is `acc + value`, min/max keep the first of equal values (the
# builtins' rule), count counts. Exceptions of the user's functions and of the key/value
# getters propagate unchanged. Every cdef here holds the GIL and returns -1 with an exception
# set (`except -1`).

from cpython.dict cimport PyDict_GetItemWithError, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.mem cimport PyMem_Realloc, PyMem_Free

from _typedefs cimport int64_t

FOLD_SUM = 0
FOLD_MIN = 1
FOLD_MAX = 2
FOLD_COUNT = 3

STAGE_MAP = 0
STAGE_FLAT_MAP = 1
STAGE_FILTER = 2


cdef inline object _field(object record, Py_ssize_t index, object getter):
    # record[index] for a tuple or list in range (the common case, no call); otherwise the
    # Python getter, which gives negative indices, dicts and errors their usual meaning.
    cdef type t = type(record)
    if index >= 0:
        if t is tuple and index < PyTuple_GET_SIZE(record):
            return <object>PyTuple_GET_ITEM(record, index)
        if t is list and index < PyList_GET_SIZE(record):
            return <object>PyList_GET_ITEM(record, index)
    return getter(record)


cdef class RecordFold:
    """Records folded per key into ``(accumulator, records)``, keys in first-seen order.

    ``key_of``/``value_of`` are the getters; ``key_index``/``value_index`` (-1: none) say that
    they are ``itemgetter(i)``, which tuple and list records then skip. ``agg`` is one of the
    ``FOLD_*`` codes; a count ignores ``value_of``."""

    cdef dict _groups  # key -> group number
    cdef list _keys, _accs
    cdef int64_t* _counts
    cdef Py_ssize_t _capacity
    cdef int _agg
    cdef object _key_of, _value_of
    cdef Py_ssize_t _key_index, _value_index

    def __cinit__(
        self,
        int agg,
        object key_of,
        object value_of,
        Py_ssize_t key_index=-1,
        Py_ssize_t value_index=-1,
    ):
        if agg < FOLD_SUM or agg > FOLD_COUNT:
            raise ValueError(f"RecordFold: unknown aggregation code {agg}")
        self._agg = agg
        self._key_of = key_of
        self._value_of = value_of
        self._key_index = key_index
        self._value_index = value_index
        self._groups = {}
        self._keys = []
        self._accs = []
        self._counts = NULL
        self._capacity = 0

    def __dealloc__(self):
        PyMem_Free(self._counts)

    def __len__(self):
        return len(self._keys)

    cdef int _grow(self) except -1:
        cdef Py_ssize_t capacity = self._capacity * 2 if self._capacity else 1024
        cdef int64_t* counts = <int64_t*>PyMem_Realloc(self._counts, capacity * sizeof(int64_t))
        if counts == NULL:
            raise MemoryError(f"RecordFold: cannot hold {capacity} keys")
        self._counts = counts
        self._capacity = capacity
        return 0

    cdef int fold(self, object record) except -1:
        cdef object key = _field(record, self._key_index, self._key_of)
        cdef object value
        cdef PyObject* found = PyDict_GetItemWithError(self._groups, key)
        cdef Py_ssize_t group
        cdef PyObject* acc
        if found == NULL:
            # (An error of the lookup, an unhashable key, propagates from here.)
            value = 1 if self._agg == FOLD_COUNT else _field(record, self._value_index, self._value_of)
            group = PyList_GET_SIZE(self._keys)
            if group == self._capacity:
                self._grow()
            PyDict_SetItem(self._groups, key, group)
            self._keys.append(key)
            self._accs.append(value)
            self._counts[group] = 1
            return 0
        group = <Py_ssize_t><object>found
        self._counts[group] += 1
        if self._agg == FOLD_COUNT:
            return 0
        value = _field(record, self._value_index, self._value_of)
        acc = PyList_GET_ITEM(self._accs, group)
        if self._agg == FOLD_SUM:
            value = <object>acc + value
        elif self._agg == FOLD_MIN:
            if not (value < <object>acc):
                return 0
        elif not (value > <object>acc):
            return 0
        self._accs[group] = value
        return 0

    def push(self, list records):
        """Fold ``records`` in."""
        cdef Py_ssize_t i
        for i in range(PyList_GET_SIZE(records)):
            self.fold(<object>PyList_GET_ITEM(records, i))

    def partial(self):
        """``[(key, accumulator, records), ...]`` in first-seen order (a count's accumulator
        is its records); the fold starts empty again."""
        cdef Py_ssize_t i, n = PyList_GET_SIZE(self._keys)
        cdef list out = []
        for i in range(n):
            count = self._counts[i]
            acc = count if self._agg == FOLD_COUNT else <object>PyList_GET_ITEM(self._accs, i)
            out.append((<object>PyList_GET_ITEM(self._keys, i), acc, count))
        self._groups = {}
        self._keys = []
        self._accs = []
        return out


cdef class RecordChain:
    """Stateless stages run depth first over a batch: one pass, no list per stage.

    ``kinds`` holds a ``STAGE_*`` code per stage, ``functions`` its function. ``run`` returns
    the last stage's records, or folds them into ``fold`` (and returns an empty list);
    ``counts`` holds, per stage, the records it has emitted since the chain was made."""

    cdef tuple _functions
    cdef int* _kinds
    cdef Py_ssize_t _stages
    cdef int64_t* _emitted
    cdef list _out
    cdef RecordFold _fold

    def __cinit__(self, kinds, tuple functions):
        cdef Py_ssize_t i, n = len(functions)
        if len(kinds) != n or n == 0:
            raise ValueError("RecordChain: one kind per function, at least one stage")
        self._kinds = <int*>PyMem_Realloc(NULL, n * sizeof(int))
        self._emitted = <int64_t*>PyMem_Realloc(NULL, n * sizeof(int64_t))
        if self._kinds == NULL or self._emitted == NULL:
            raise MemoryError("RecordChain: no memory for its stages")
        self._stages = n
        for i in range(n):
            self._kinds[i] = kinds[i]
            self._emitted[i] = 0
            if self._kinds[i] < STAGE_MAP or self._kinds[i] > STAGE_FILTER:
                raise ValueError(f"RecordChain: unknown stage kind {kinds[i]}")
        self._functions = functions

    def __dealloc__(self):
        PyMem_Free(self._kinds)
        PyMem_Free(self._emitted)

    @property
    def counts(self):
        return [self._emitted[i] for i in range(self._stages)]

    cdef int _emit(self, object record, Py_ssize_t stage) except -1:
        cdef int kind
        cdef object f
        while stage < self._stages:
            kind = self._kinds[stage]
            f = <object>PyTuple_GET_ITEM(self._functions, stage)
            if kind == STAGE_MAP:
                record = f(record)
            elif kind == STAGE_FILTER:
                if not f(record):
                    return 0
            else:
                for item in f(record):
                    self._emitted[stage] += 1
                    self._emit(item, stage + 1)
                return 0
            self._emitted[stage] += 1
            stage += 1
        if self._fold is not None:
            return self._fold.fold(record)
        self._out.append(record)
        return 0

    def run(self, list records, RecordFold fold=None):
        cdef Py_ssize_t i
        cdef list out = []
        self._out = out
        self._fold = fold
        try:
            for i in range(PyList_GET_SIZE(records)):
                self._emit(<object>PyList_GET_ITEM(records, i), 0)
        finally:
            self._out = None
            self._fold = None
        return out
