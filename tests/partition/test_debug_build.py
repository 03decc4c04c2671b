"""The kernels under Cython's checks: the partitioner's tests pass against a debug build.

Release builds turn bounds, wraparound and initialisation checks off (setup.py); a kernel that
reads past a buffer would then corrupt memory silently. This builds ``_core`` with
``PYDISPATCH_DEBUG=1`` into a scratch copy of the sources and runs the kernel tests against it,
so such a read fails loudly as an IndexError instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNEL_TESTS = sorted(str(p) for p in (ROOT / "tests" / "partition").glob("test_partition_*.py"))

PROBE = """
import numpy as np, pydispatch._core as core
print(core.__file__)
try:
    core.reduce_hashes(np.zeros(5, np.uint64), 4, np.empty(2, np.int32))
except IndexError:
    print("bounds checked")
"""


@pytest.mark.slow
def test_kernel_tests_pass_with_bounds_checks(tmp_path: Path) -> None:
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(
        ROOT / "src",
        tmp_path / "src",
        ignore=shutil.ignore_patterns("*.so", "*.c", "*.html", "__pycache__"),
    )
    env = {**os.environ, "PYDISPATCH_DEBUG": "1", "PYTHONPATH": str(tmp_path / "src")}
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace", "--force"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "-O0" in build.stdout + build.stderr

    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    module_path, checked = probe.stdout.split("\n")[:2]
    assert Path(module_path).is_relative_to(tmp_path), module_path  # the debug build is the one
    assert checked == "bounds checked"

    assert KERNEL_TESTS
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *KERNEL_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout
