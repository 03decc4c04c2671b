"""Build of the native core, ``pydispatch._core``.

One extension built from ``src/core/_core.pyx``, which ``include``s the other ``.pyx`` files so
that they share one module and one set of typedefs (``src/core/_typedefs.pxd``, found on the
include path). Compiler directives live here and only here.

Environment switches:
  PYDISPATCH_DEBUG=1     bounds, wraparound and initialisation checks back on, -O0 -g.
  PYDISPATCH_ANNOTATE=1  write the ``cython -a`` HTML annotation next to the sources.
"""

from __future__ import annotations

import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("PYDISPATCH_DEBUG", "0") not in ("", "0")
ANNOTATE = os.environ.get("PYDISPATCH_ANNOTATE", "0") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
    "freethreading_compatible": False,
}

compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]

core = Extension(
    "pydispatch._core",
    sources=["src/core/_core.pyx"],
    include_dirs=[np.get_include(), "src/core"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=compile_args,
)

setup(
    ext_modules=cythonize(
        [core],
        include_path=["src/core"],
        compiler_directives=directives,
        annotate=ANNOTATE,
        force=DEBUG,
    ),
)
