"""The job master's lifecycle and restart strategies, without processes or clocks."""

from __future__ import annotations

import pytest

from pydispatch.dataflow import lifecycle as jm


def _run_to_peers(master: jm.JobMaster, attempt: int) -> None:
    for index in range(master.slices):
        out = master.slice_ready(attempt, index, {index: f"tcp://x:{index}"})
    assert out == [jm.SendPeers(attempt, {i: f"tcp://x:{i}" for i in range(master.slices)})]


def test_a_job_runs_to_finished() -> None:
    master = jm.JobMaster(2)
    assert master.state == jm.CREATED
    assert master.start() == [jm.Deploy(1, (0, 1))]
    assert master.state == jm.RUNNING
    assert master.slice_ready(1, 0, {0: "a"}) == []
    assert master.slice_ready(1, 1, {1: "b", 2: "c"}) == [jm.SendPeers(1, {0: "a", 1: "b", 2: "c"})]
    assert master.slice_finished(1, 1, "r1") == []
    assert master.slice_finished(1, 0, "r0") == [jm.Finish({0: "r0", 1: "r1"})]
    assert master.state == jm.FINISHED
    assert master.cancel() == []
    with pytest.raises(RuntimeError):
        master.start()


def test_a_failure_restarts_after_the_delay_and_stale_attempts_are_ignored() -> None:
    master = jm.JobMaster(2, jm.FixedDelay(attempts=2, delay=0.5))
    master.start()
    _run_to_peers(master, 1)
    master.slice_finished(1, 0, "old result")
    out = master.slice_failed(1, 1, "worker lost", now=10.0)
    assert out == [jm.CancelAttempt(1), jm.StartTimer(1, 0.5)]
    assert master.state == jm.RESTARTING
    # The cancelled slices of attempt 1 report too: nothing happens.
    assert master.slice_failed(1, 0, "cancelled", now=10.1) == []
    assert master.timer_fired(1) == [jm.Deploy(2, (0, 1))]
    assert master.state == jm.RUNNING
    assert master.timer_fired(1) == []  # fired once only
    assert master.slice_ready(1, 0, {0: "stale"}) == []
    assert master.slice_finished(1, 1, "stale") == []
    _run_to_peers(master, 2)
    master.slice_finished(2, 0, "new 0")
    # Results never mix attempts: attempt 1's slice 0 result is gone.
    assert master.slice_finished(2, 1, "new 1") == [jm.Finish({0: "new 0", 1: "new 1"})]
    assert master.restarts == 1


def test_the_strategy_gives_up_and_the_job_fails() -> None:
    master = jm.JobMaster(1, jm.FixedDelay(attempts=1, delay=0.0))
    master.start()
    master.slice_failed(1, 0, "first", now=0.0)
    master.timer_fired(1)
    out = master.slice_failed(2, 0, "second", now=1.0)
    assert out == [jm.CancelAttempt(2), jm.Fail("second")]
    assert master.state == jm.FAILED
    assert len(master.failures) == 2


def test_cancel_while_running_and_while_restarting() -> None:
    master = jm.JobMaster(1)
    master.start()
    assert master.cancel() == [jm.CancelAttempt(1)]
    assert master.state == jm.CANCELED
    assert master.slice_finished(1, 0, "late") == []
    restarting = jm.JobMaster(1, jm.FixedDelay(attempts=5, delay=1.0))
    restarting.start()
    restarting.slice_failed(1, 0, "x", now=0.0)
    assert restarting.cancel() == []  # attempt 1 is being cancelled already
    assert restarting.timer_fired(1) == []
    assert restarting.state == jm.CANCELED


def test_fixed_delay_defaults_are_flinks() -> None:
    strategy = jm.FixedDelay()
    assert strategy.next_delay(0.0) == 1.0
    assert strategy.next_delay(1.0) is None


def test_exponential_delay_grows_caps_and_resets() -> None:
    strategy = jm.ExponentialDelay(initial=1.0, max=4.0, multiplier=2.0, jitter=0.0)
    delays = [strategy.next_delay(float(t)) for t in range(5)]
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert strategy.next_delay(10_000.0) == 1.0  # quiet for longer than reset_after
    jittered = jm.ExponentialDelay(jitter=0.1, seed=3)
    first = jittered.next_delay(0.0)
    assert first is not None
    assert 0.9 <= first <= 1.1
    limited = jm.ExponentialDelay(attempts=1)
    assert limited.next_delay(0.0) is not None
    assert limited.next_delay(1.0) is None
    with pytest.raises(ValueError, match="multiplier"):
        jm.ExponentialDelay(multiplier=0.5)


def test_failure_rate_counts_failures_within_the_interval() -> None:
    strategy = jm.FailureRate(max_failures=2, interval=10.0, delay=0.25)
    assert strategy.next_delay(0.0) == 0.25
    assert strategy.next_delay(5.0) == 0.25
    assert strategy.next_delay(9.0) is None  # three within 10 s
    spread = jm.FailureRate(max_failures=1, interval=10.0)
    assert spread.next_delay(0.0) == 1.0
    assert spread.next_delay(20.0) == 1.0  # the first is out of the interval


def test_no_restart() -> None:
    master = jm.JobMaster(1, jm.NoRestart())
    master.start()
    assert master.slice_failed(1, 0, "boom", now=0.0) == [jm.CancelAttempt(1), jm.Fail("boom")]


def test_regions_restart_alone_and_keep_the_others_results() -> None:
    master = jm.JobMaster(3, jm.FixedDelay(attempts=2, delay=0.5), regions=[[0, 2], [1]])
    assert master.start() == [jm.Deploy(1, (0, 2)), jm.Deploy(2, (1,))]
    assert master.regions == [(0, 2), (1,)]
    assert master.slice_ready(1, 0, {0: "a"}) == []
    assert master.slice_ready(1, 2, {2: "c"}) == [jm.SendPeers(1, {0: "a", 2: "c"})]
    assert master.slice_ready(2, 1, {1: "b"}) == [jm.SendPeers(2, {1: "b"})]
    assert master.slice_finished(2, 1, "b done") == []
    assert master.state == jm.RUNNING
    # Region {0, 2} fails: only its attempt is cancelled and redeployed.
    assert master.slice_failed(1, 2, "lost", now=1.0) == [
        jm.CancelAttempt(1),
        jm.StartTimer(1, 0.5),
    ]
    assert master.state == jm.RESTARTING
    assert master.running_attempts() == []  # region {1} is finished, {0, 2} restarting
    assert master.timer_fired(1) == [jm.Deploy(3, (0, 2))]
    assert master.attempt_of(0) == master.attempt_of(2) == 3
    assert master.attempt_of(1) == 2
    assert master.slice_finished(1, 0, "stale") == []
    master.slice_ready(3, 0, {0: "a2"})
    master.slice_ready(3, 2, {2: "c2"})
    master.slice_finished(3, 0, "a done")
    assert master.slice_finished(3, 2, "c done") == [
        jm.Finish({0: "a done", 1: "b done", 2: "c done"})
    ]
    assert master.state == jm.FINISHED


def test_giving_up_cancels_every_running_region() -> None:
    master = jm.JobMaster(2, jm.NoRestart(), regions=[[0], [1]])
    master.start()
    out = master.slice_failed(1, 0, "boom", now=0.0)
    assert out == [jm.CancelAttempt(1), jm.CancelAttempt(2), jm.Fail("boom")]
    assert master.state == jm.FAILED
    assert master.cancel() == []
    with pytest.raises(ValueError, match="partition"):
        jm.JobMaster(2, regions=[[0]])


def test_regions_of_channels() -> None:
    assert jm.regions_of([(0, 0), (1, 1)], 2) == [[0], [1]]
    assert jm.regions_of([(0, 0), (0, 1), (1, 0), (1, 1)], 3) == [[0, 1], [2]]
    assert jm.regions_of([(2, 0), (1, 2)], 3) == [[0, 1, 2]]
