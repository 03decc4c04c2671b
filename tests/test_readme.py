"""The README runs as written: every Python block, each in a fresh process (like a user's
script) in an empty directory of its own (a block creates the files it reads)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


QUICK_START = next(block for block in BLOCKS if "LocalCluster(" in block)
DATAFLOW = next(block for block in BLOCKS if "read_text(" in block)
SEED_SQL = next(block for block in BLOCKS if "StreamTableEnvironment" in block)
OTHERS = [block for block in BLOCKS if block not in (QUICK_START, DATAFLOW, SEED_SQL)]


def test_the_readme_has_its_examples() -> None:
    # The quick start, the dataflow job, and the partitioner's and the solver's.
    assert len(OTHERS) >= 2
    assert QUICK_START.lstrip().startswith("import numpy")


@pytest.mark.parametrize("index", range(len(OTHERS)))
def test_every_other_python_block_runs(index: int, tmp_path: Path) -> None:
    _run(OTHERS[index], tmp_path)


def test_the_pyflink_seed_example_prints_two_to_six(tmp_path: Path) -> None:
    assert _run(SEED_SQL, tmp_path).stdout == "(2,)\n(3,)\n(4,)\n(5,)\n(6,)\n"


def test_quick_start_runs(tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## Quick start") :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code == QUICK_START
    result = _run(code, tmp_path)
    lines = result.stdout.split()
    assert lines[0] == str(sum(abs(x) for x in range(-1000, 1000)))
    assert lines[1] == "1048576.0"
    assert lines[2].startswith("worker-")


def test_the_dataflow_example_counts_the_words_of_its_book(tmp_path: Path) -> None:
    _run(DATAFLOW, tmp_path)
    words = (tmp_path / "book.txt").read_text().split()
    written = "".join(
        path.read_text() for path in sorted((tmp_path / "counts").rglob("*")) if path.is_file()
    )
    for word in set(words):
        assert f"('{word}', {words.count(word)})" in written


def test_the_first_command_installs_the_product_and_the_tests_not_the_peers() -> None:
    first = re.findall(r"^```bash\n(.*?)\n", README.read_text(), re.M)[0]
    assert first.startswith('python -m pip install -e ".[test]"'), first
    extras = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]
    test_extra = " ".join(extras["optional-dependencies"]["test"] + extras["dependencies"])
    for peer in ("ray", "dask", "ipyparallel", "pandas"):
        assert peer not in test_extra
        assert any(peer in d for d in extras["optional-dependencies"]["bench"])
