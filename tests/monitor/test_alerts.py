"""``pydispatch alerts``: rules promtool accepts, that fire on the series of alerts_test.yml
(a worker lost, the queue growing, back-pressure, a job restarting, failures, the dispatcher
down) and stay quiet on the harmless ones; thresholds are options."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _support.prometheus import PROMTOOL
from pydispatch.monitor.alerts import Thresholds, alert_rules

HERE = Path(__file__).parent


def alerts_command(*options: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pydispatch.cli", "alerts", *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def promtool(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.fail(f"{PROMTOOL} is missing: apt-get install prometheus (.ci/run does)")
    return subprocess.run(
        [PROMTOOL, *arguments], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_promtool_checks_and_tests_the_shipped_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(alerts_command())
    shutil.copy(HERE / "alerts_test.yml", tmp_path / "alerts_test.yml")
    checked = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "7 rules found" in checked.stdout
    tested = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_thresholds_change_the_rules_and_the_tests_see_it(tmp_path: Path) -> None:
    # With 4 restarts needed, the job that restarted 3 times no longer alerts: the unit test
    # file (written for the defaults) must fail, which shows it tests the thresholds.
    (tmp_path / "rules.yml").write_text(alerts_command("--restarts", "4"))
    shutil.copy(HERE / "alerts_test.yml", tmp_path / "alerts_test.yml")
    tested = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "PydispatchJobRestarting" in tested.stdout + tested.stderr


def test_thresholds_are_checked() -> None:
    assert ">= 5" in alert_rules(Thresholds(restarts=5))
    assert 'job="scraped-as"' in alert_rules(job="scraped-as")
    with pytest.raises(ValueError, match="failure_ratio"):
        alert_rules(Thresholds(failure_ratio=-1))
