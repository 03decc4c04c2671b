"""A failure no restart can mend (a worker that cannot see a job's file) fails the job at once:
the restart strategy is not asked, and other regions' running attempts are cancelled."""

from __future__ import annotations

from pydispatch.dataflow import lifecycle as jm


def test_a_fatal_failure_skips_the_restart_strategy() -> None:
    strategy = jm.FixedDelay(attempts=5, delay=1.0)
    master = jm.JobMaster(2, strategy, regions=[[0], [1]])
    master.start()
    out = master.slice_failed(1, 0, "worker w cannot read /data: no such file", 0.0, fatal=True)
    assert master.state == jm.FAILED
    fail = jm.Fail("worker w cannot read /data: no such file")
    assert out == [jm.CancelAttempt(1), jm.CancelAttempt(2), fail]
    assert strategy._used == 0  # not one of its restarts was spent
    assert master.restarts == 0


def test_an_ordinary_failure_still_restarts() -> None:
    master = jm.JobMaster(1, jm.FixedDelay(attempts=1, delay=0.5))
    master.start()
    out = master.slice_failed(1, 0, "ZeroDivisionError", 0.0)
    assert out == [jm.CancelAttempt(1), jm.StartTimer(1, 0.5)]
    assert master.state == jm.RESTARTING
