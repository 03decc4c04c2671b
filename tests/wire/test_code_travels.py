"""Functions pickled by value keep their file name and line numbers, whatever cloudpickle does
(3.1.3 and later name every by-value function's file ``<dynamic-code>``): a remote traceback
then shows the user's file, line and source line."""

from __future__ import annotations

import pickle
import sys
import traceback

import cloudpickle

from pydispatch.wire.transport import dumps, loads

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def fails(message: str) -> None:
    raise ValueError(message)


def _round_trip(obj: object) -> object:
    frames: list[object] = []
    blob = dumps(obj, frames)  # type: ignore[arg-type]
    return loads(blob, frames)  # type: ignore[arg-type]


def test_a_by_value_function_keeps_its_file_and_lines() -> None:
    copy = _round_trip(fails)
    assert copy is not fails  # by value: a new function, rebuilt from the pickle
    assert copy.__code__.co_filename == __file__  # type: ignore[attr-defined]
    assert copy.__code__.co_firstlineno == fails.__code__.co_firstlineno  # type: ignore[attr-defined]
    try:
        copy("boom")  # type: ignore[operator]
    except ValueError:
        text = traceback.format_exc()
    assert f'File "{__file__}"' in text
    assert "raise ValueError(message)" in text  # the source line, read from the user's file


def test_closures_and_nested_code_keep_theirs_too() -> None:
    def outer(n: int) -> object:
        return lambda x: [y + n for y in x]

    copy = _round_trip(outer(1))
    assert copy([1, 2]) == [2, 3]  # type: ignore[operator]
    inner = copy.__code__  # type: ignore[attr-defined]
    assert inner.co_filename == __file__
    nested = [c for c in inner.co_consts if hasattr(c, "co_filename")]
    assert all(c.co_filename == __file__ for c in nested)


def test_plain_pickle_still_loads_what_we_write() -> None:
    # The stream needs nothing of ours to load: marshal.loads is the standard library's.
    frames: list[object] = []
    blob = dumps(fails, frames, inline_limit=1 << 20)  # type: ignore[arg-type]
    assert not frames
    assert callable(pickle.loads(blob.data))
