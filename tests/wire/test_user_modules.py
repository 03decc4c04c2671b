"""The user's own modules travel: a script beside ``mymod.py`` submits ``mymod``'s functions
and instances of its classes to workers that run in another directory (so cannot import it),
and they run. A module that does not travel (not under the script's working directory) fails
its task with an error that names it, the worker's process, and the ways to make it travel.

The cluster's workers run with this test process's working directory; the scripts run in a
temporary directory of their own, as a user's would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from pydispatch.runtime.cluster import LocalCluster
from pydispatch.wire.transport import FrameLike, dumps, loads, travels_by_value

CLUSTER: dict[str, Any] = {"workers": 1}

MYMOD = """
import math

SCALE = 2


class Point:
    def __init__(self, x):
        self.x = x


def double(x):
    return SCALE * x


def norm(point):
    return math.fabs(point.x)


def fails():
    raise ValueError("from mymod")
"""


def _run(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_functions_and_classes_of_a_module_beside_the_script_run_on_workers(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "mymod.py").write_text(MYMOD)
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "helpers.py").write_text("def triple(x):\n    return 3 * x\n")
    assert Path.cwd() != project  # the workers' directory holds no mymod
    script = """
        import sys, traceback
        from pydispatch import Client
        from mymod import Point, double, fails, norm
        from pkg.helpers import triple

        with Client(sys.argv[1]) as client:
            print(client.submit(double, 21).result())
            print(client.submit(norm, Point(-4)).result())
            print(list(client.map(triple, [1, 2])))
            try:
                client.submit(fails).result()
            except ValueError:
                print(traceback.format_exc().count("mymod.py"))
    """
    result = _run(script, project, cluster.address)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["42", "4.0", "[3, 6]"]
    assert int(lines[3]) >= 1  # the remote traceback names the user's file


def test_a_module_that_does_not_travel_fails_its_task_naming_it_and_the_way_out(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "othermod.py").write_text("def inc(x):\n    return x + 1\n")
    project = tmp_path / "project"
    project.mkdir()
    script = """
        import sys
        sys.path.insert(0, sys.argv[2])
        from pydispatch import Client
        from othermod import inc

        with Client(sys.argv[1]) as client:
            future = client.submit(inc, 1)
            try:
                future.result()
            except ModuleNotFoundError as error:
                print(error.name)
                print(future.worker)
                print(error)
    """
    result = _run(script, project, cluster.address, str(elsewhere))
    assert result.returncode == 0, result.stderr
    name, worker, message = result.stdout.splitlines()
    assert name == "othermod"
    assert worker == "worker-0"
    assert "module 'othermod' is not importable on this worker (process" in message
    assert "cloudpickle.register_pickle_by_value(othermod)" in message
    assert "working directory" in message


def test_only_the_users_own_modules_go_by_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).parent)
    assert travels_by_value(__name__)  # this file is under the working directory
    assert not travels_by_value("json")  # the standard library
    assert not travels_by_value("cloudpickle")  # site-packages
    assert not travels_by_value("pydispatch.wire.transport")  # pydispatch itself
    assert not travels_by_value("__main__")  # cloudpickle's own rule already


def test_a_module_whose_functions_cannot_go_by_value_goes_by_reference_as_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A function that refers to a lock at module level cannot be pickled by value; by
    # reference it still runs wherever the module is importable (a LocalCluster's workers
    # started from the same directory, say).
    (tmp_path / "locked_mod.py").write_text(
        "import threading\nLOCK = threading.Lock()\n\ndef guarded(x):\n"
        "    with LOCK:\n        return x + 1\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import locked_mod  # type: ignore[import-not-found]

    frames: list[FrameLike] = []
    blob = dumps(locked_mod.guarded, frames)
    assert loads(blob, frames) is locked_mod.guarded  # by reference: the very function
    assert not travels_by_value("locked_mod")
    assert "locked_mod" not in cloudpickle.list_registry_pickle_by_value()
