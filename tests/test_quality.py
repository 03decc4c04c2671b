"""The code is lint-clean (ruff) and type-clean (mypy --strict): checked as part of the tests so
that a green run means a clean tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_ruff_check_is_clean() -> None:
    ruff = shutil.which("ruff")
    assert ruff, "ruff is part of the test extra: pip install -e '.[test]'"
    result = _run(ruff, "check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    ruff = shutil.which("ruff")
    assert ruff, "ruff is part of the test extra: pip install -e '.[test]'"
    result = _run(ruff, "format", "--check", "src", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_is_clean() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_modules_and_classes_stay_small() -> None:
    # The layout issue's limits: a module over ~800 lines or a class over ~500 is doing more
    # than one thing; split it by responsibility (ARCHITECTURE.md) rather than raise these.
    import ast

    too_big = []
    for path in sorted((ROOT / "src" / "pydispatch").rglob("*.py")):
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        if text.count("\n") > 800:
            too_big.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > 500:
                    too_big.append(f"{name}: class {node.name} {length} lines")
    assert too_big == []
