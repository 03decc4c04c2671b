"""The README's quick start runs as written (in a subprocess, like a user's script)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quick_start_runs() -> None:
    text = README.read_text()
    section = text[text.index("## Quick start") :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == str(sum(abs(x) for x in range(-1000, 1000)))
    assert lines[1] == "1048576.0"
    assert lines[2].startswith("worker-")
