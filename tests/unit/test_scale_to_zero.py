"""Scale to zero (scaling/sleep.py), by tables: when a pipeline with `minReplicas: 0` sleeps,
stays asleep, wakes and how many replicas it wakes with. The expected numbers are worked out
here from the module's formulas with the defaults (start-up 30 s + rebalance 10 s = S = 40 s, a
decision every 15 s as the samples are spaced, a peak limit of the target less the larger of
5 % of it and S / 2 + 15 s, cycles of at least 30 minutes), not by calling its helpers; the
pure plans (`peak_limit`, `plan_sleep`, `plan_quit`) have their own tables."""

from __future__ import annotations

from dataclasses import replace

import pytest

from metricpipe_operator.scaling.model import MetricSample, PipelineScaling, PolicyConfig
from metricpipe_operator.scaling.sleep import (
    SleepPlan,
    decide_with_sleep,
    peak_limit,
    plan_quit,
    plan_sleep,
)

NOW = 100_000.0
C = 50_000.0  # one replica's capacity, records/s (status.capacityPerReplica)
CONFIG = PolicyConfig()  # start-up 30 s, rebalance 10 s, cooldown 60 s, stale after 60 s


def history(*, replicas: int, rate: float, lag: float, age: float, busy: float | None = 0.02,
            newest_age: float = 15.0, spacing: float = 15.0) -> list[MetricSample]:  # fmt: skip
    """Forty samples, one per `spacing` s, the newest `newest_age` s old."""
    processing = 0.0 if replicas == 0 else rate
    return [
        MetricSample(
            at=NOW - newest_age - spacing * i,
            replicas=replicas,
            input_rate=rate,
            processing_rate=processing,
            busy_fraction=None if replicas == 0 else busy,
            lag_records=lag,
            time_lag_seconds=age,
            freshness_seconds=age,
            partitions=4,
        )
        for i in range(40)
    ]


def pipeline(current: int, target: float = 3600.0, known: float | None = C,
             last_scale: float = 3600.0) -> PipelineScaling:  # fmt: skip
    return PipelineScaling(
        current_replicas=current, min_replicas=0, max_replicas=4, target_utilization=0.7,
        freshness_target_seconds=target, allowed_lateness_seconds=0.0,
        scale_down_stabilization_seconds=600.0, last_scale_at=NOW - last_scale,
        known_capacity=known,
    )  # fmt: skip


# -- awake: when does one replica go to sleep -------------------------------------------------
# Woken at the last decision that keeps P = W + S within the limit (3420 s at 1 h), P is at least
# limit - 15: W = limit - 15 - 40, a cycle of (W + 40) c / (c - r) that must last 1800 s. At 1 h:
# W = 3365 s
# (cycle 3474.5 s at 1,000 rec/s). At 5 min the limit is 300 - (20 + 15) = 265 s (half of S and
# a decision, more than 5 % of the target): W = 210 s, cycle 255.1 s: it stays awake.
# Records left now = lag + r x 15 - c x 15 (the newest sample is 15 s old, the replica consumed
# all along); drained (<= 0) it sleeps; else, with delta = left / (c - r) s of drain to go, it
# sleeps when (15 - delta)(1 - r/c) > (15 + left / r) x 40 / cycle (at 1,000 rec/s: delta < 9.41).
AWAKE = [
    ("1h, 1,000 rec/s, caught up: sleeps ~3365 s", 3600.0, 1_000.0, 3_000.0, 3.0, 0),
    ("5m, same input: a cycle of 255 s costs more than it saves", 300.0, 1_000.0, 3_000.0, 3.0,
     1),
    ("1h, 30,000 rec/s: over half of one replica", 3600.0, 30_000.0, 90_000.0, 3.0, 1),
    ("1h, 25,000 rec/s: half of one replica, sleeps", 3600.0, 25_000.0, 75_000.0, 3.0, 0),
    # 600,000 + 15,000 - 750,000 < 0: drained by now, though the sample (600 s behind) is older
    ("1h, seen 600 s behind, drained by now", 3600.0, 1_000.0, 600_000.0, 600.0, 0),
    # 6,000,000 + 15,000 - 750,000 = 5,265,000 left: 107 s of drain to go
    ("1h, still draining", 3600.0, 1_000.0, 6_000_000.0, 600.0, 1),
    # 441,000 left (lag 1,176,000): delta = 9 s, 5.88 idle s against (15 + 441) x 0.01151 = 5.25
    ("1h, 9 s of drain to go: sleeps now, 441,000 rec wait", 3600.0, 1_000.0, 1_176_000.0, 30.0,
     0),
    # 490,000 left (lag 1,225,000): delta = 10 s, 4.9 idle s against (15 + 490) x 0.01151 = 5.81
    ("1h, 10 s of drain to go: stays until the next decision", 3600.0, 1_000.0, 1_225_000.0,
     30.0, 1),
]  # fmt: skip


@pytest.mark.parametrize(("target", "rate", "lag", "age", "expected"),
                         [row[1:] for row in AWAKE], ids=[row[0] for row in AWAKE])  # fmt: skip
def test_one_replica_sleeps_only_when_a_sleep_pays(
    target: float, rate: float, lag: float, age: float, expected: int
) -> None:
    samples = history(replicas=1, rate=rate, lag=lag, age=age)
    decision = decide_with_sleep(samples, pipeline(1, target), CONFIG, NOW)
    assert decision.replicas == expected, decision.reason
    if expected == 0:
        assert "1 → 0 (sleeping ~3365 s: woken before freshness reaches 3420 s)" in decision.reason


@pytest.mark.parametrize(
    ("target", "rate", "events_per_hour", "expected"),
    [
        (300.0, 1_000.0, 4.0, 1),  # cycle 255.1 s < 1800 s
        (300.0, 1_000.0, 15.0, 1),  # cycles of 480 s: 255.1 s is still too short
        (300.0, 1_000.0, 30.0, 0),  # cycles of 240 s: sleeps ~210 s
        (3600.0, 1_000.0, 1.5, 1),  # cycles of 4800 s: 3474.5 s is too short
        (3600.0, 25_000.0, 1.5, 0),  # half a replica: cycle 3405 x 2 = 6810 s
    ],
)
def test_the_events_per_hour_bound_is_a_knob(
    target: float, rate: float, events_per_hour: float, expected: int
) -> None:
    """`sleep_max_events_per_hour` (2 events a cycle) sets the shortest cycle that sleeps."""
    samples = history(replicas=1, rate=rate, lag=3 * rate, age=3.0)
    config = replace(CONFIG, sleep_max_events_per_hour=events_per_hour)
    decision = decide_with_sleep(samples, pipeline(1, target), config, NOW)
    assert decision.replicas == expected, decision.reason


def test_no_sleep_within_the_cooldown_of_the_last_scale() -> None:
    samples = history(replicas=1, rate=1_000.0, lag=3_000.0, age=3.0)
    woken = pipeline(1, last_scale=30.0)
    assert decide_with_sleep(samples, woken, CONFIG, NOW).replicas == 1


def test_a_replica_not_yet_consuming_has_drained_nothing() -> None:
    """The newest sample 30 s old (a scrape missed) shows 1,519,000 records at 1,000 rec/s.
    Woken 70 s ago, the replica has consumed since 30 s ago (start-up and rebalance, 40 s):
    1,519,000 + 30,000 - 50,000 x 30 = 49,000 left, a drain of 1 s to go: it sleeps now. Woken
    61 s ago, it has consumed for 21 s only: 499,000 left, 10.2 s to go: it stays."""
    samples = history(replicas=1, rate=1_000.0, lag=1_519_000.0, age=1_519.0, newest_age=30.0)
    early = decide_with_sleep(samples, pipeline(1, last_scale=70.0), CONFIG, NOW)
    assert early.replicas == 0, early.reason
    assert "49,000 rec left now" in early.reason, early.reason
    late = decide_with_sleep(samples, pipeline(1, last_scale=61.0), CONFIG, NOW)
    assert late.replicas == 1, late.reason


def test_a_replica_too_idle_to_measure_sleeps_as_a_probe() -> None:
    """Capacity unknown (2 % busy, nothing in status): sleep as if one replica did only twice
    the input: 2 (W + 40) within 3420 - 2 x 15, W = 1655 s."""
    samples = history(replicas=1, rate=100.0, lag=300.0, age=3.0)
    decision = decide_with_sleep(samples, pipeline(1, known=None), CONFIG, NOW)
    assert decision.replicas == 0, decision.reason
    assert "sleeping ~1655 s, as if one replica did only twice the input" in decision.reason


# -- asleep: when does it wake, and with how many ---------------------------------------------
# Peak if woken at the next decision: age + (now - sample) + 15 + 40, against 3420 s.
ASLEEP = [
    ("100 s behind: asleep", 1_000.0, 100.0, 15.0, 15.0, 0),
    # 3,350 + 15 + 15 + 40 = 3,420: a wake at the next decision still peaks within 3420
    ("3,350 s behind: asleep", 1_000.0, 3_350.0, 15.0, 15.0, 0),
    ("3,355 s behind: woken", 1_000.0, 3_355.0, 15.0, 15.0, 1),
    # the newest sample 30 s old (a scrape missed): 3,335 + 30 + 15 + 40 = 3,420
    ("3,335 s behind, a scrape old: asleep", 1_000.0, 3_335.0, 30.0, 15.0, 0),
    ("3,340 s behind, a scrape old: woken", 1_000.0, 3_340.0, 30.0, 15.0, 1),
    # decisions (samples) every 30 s: 3,335 + 15 + 30 + 40 = 3,420
    ("3,340 s behind, decisions 30 s apart: woken", 1_000.0, 3_340.0, 15.0, 30.0, 1),
    ("3,335 s behind, decisions 30 s apart: asleep", 1_000.0, 3_335.0, 15.0, 30.0, 0),
    # 40,000 rec/s > c / 2: woken with ceil(40,000 / (0.7 x 50,000)) = 2
    ("input surges while asleep: woken with 2", 40_000.0, 10.0, 15.0, 15.0, 2),
]  # fmt: skip


@pytest.mark.parametrize(("rate", "age", "newest_age", "spacing", "expected"),
                         [row[1:] for row in ASLEEP], ids=[row[0] for row in ASLEEP])  # fmt: skip
def test_asleep_it_wakes_at_the_last_decision_that_keeps_the_peak_within_the_limit(
    rate: float, age: float, newest_age: float, spacing: float, expected: int
) -> None:
    samples = history(replicas=0, rate=rate, lag=rate * age, age=age, newest_age=newest_age,
                      spacing=spacing)  # fmt: skip
    decision = decide_with_sleep(samples, pipeline(0), CONFIG, NOW)
    assert decision.replicas == expected, decision.reason
    assert ("0 → " in decision.reason) == (expected > 0), decision.reason
    if expected == 0:
        peak = age + newest_age + spacing + 40.0
        assert decision.predicted_freshness_seconds == pytest.approx(peak)
        # for the status: the peak grows 1 s a second, so the wake is due when it reaches 3420
        assert decision.details == pytest.approx(
            {"peak_limit_seconds": 3420.0, "wake_in_seconds": 3420.0 - peak}
        )


def test_asleep_without_current_metrics_it_wakes() -> None:
    samples = history(replicas=0, rate=1_000.0, lag=1_000.0, age=1.0, newest_age=120.0)
    decision = decide_with_sleep(samples, pipeline(0), CONFIG, NOW)
    assert (decision.replicas, decision.metrics_available) == (1, False), decision.reason
    assert decide_with_sleep([], pipeline(0), CONFIG, NOW).replicas == 1


@pytest.mark.parametrize(("age", "expected"), [(1_640.0, 0), (1_645.0, 1)])
def test_asleep_after_a_probe_it_keeps_the_probe_s_bound(age: float, expected: int) -> None:
    """Capacity still unknown: woken when 2 (age + 15 + 15 + 40) passes 3420 s: 3,420 s at
    1,640 s behind (asleep), 3,430 s at 1,645 s (woken)."""
    samples = history(replicas=0, rate=100.0, lag=100.0 * age, age=age)
    decision = decide_with_sleep(samples, pipeline(0, known=None), CONFIG, NOW)
    assert decision.replicas == expected, decision.reason


# -- woken: one replica that drains is kept ---------------------------------------------------
# 10,000 rec/s at 20 % busy (c = 50,000), 10,000 x age records behind, woken 100 s ago
# (consuming since 60 s ago, the newest sample after that): the base policy wants catch-up
# replicas; one replica drains at 40,000 rec/s and the age falls from `age` on.
WOKEN = [
    ("3,000 s behind: one replica kept", 3_000.0, 100.0, 1),
    # the freshness already passed the target: the base policy's catch-up replicas
    ("3,700 s behind: the base policy", 3_700.0, 100.0, 2),
    # awake for an hour (no wake drains that long: 2 x 10,000 x 3,000 / 40,000 + 15 = 1,515 s)
    ("3,000 s behind an hour after the last scale: the base policy", 3_000.0, 3_600.0, 2),
]  # fmt: skip


@pytest.mark.parametrize(("age", "last_scale", "expected"), [row[1:] for row in WOKEN],
                         ids=[row[0] for row in WOKEN])  # fmt: skip
def test_woken_one_replica_is_kept_while_it_drains(
    age: float, last_scale: float, expected: int
) -> None:
    samples = history(replicas=1, rate=10_000.0, lag=10_000.0 * age, age=age, busy=0.2)
    decision = decide_with_sleep(samples, pipeline(1, last_scale=last_scale), CONFIG, NOW)
    assert (decision.replicas > 1) == (expected > 1), decision.reason
    if expected == 1:
        assert decision.replicas == 1, decision.reason
        assert "freshness falls from 3000 s, within 3600 s" in decision.reason, decision.reason


# -- the pure plans ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "lateness", "startup", "rebalance", "period", "expected"),
    [
        (3600.0, 0.0, 30.0, 10.0, 15.0, 3420.0),  # 5 % of the target: 180 s
        (3600.0, 60.0, 30.0, 10.0, 15.0, 3360.0),  # less the allowed lateness
        (300.0, 0.0, 30.0, 10.0, 15.0, 265.0),  # half of S and a decision: 20 + 15 > 15
        (150.0, 5.0, 20.0, 5.0, 5.0, 127.5),  # tests/e2e/test_scale_to_zero.py: 12.5 + 5 > 7.5
    ],
)
def test_peak_limit(
    target: float, lateness: float, startup: float, rebalance: float, period: float,
    expected: float,
) -> None:  # fmt: skip
    """The target less the allowed lateness and the larger margin: 5 % of the target, or a
    start-up and rebalance half as long again as configured plus one decision missed."""
    facts = replace(pipeline(0, target), allowed_lateness_seconds=lateness)
    config = replace(CONFIG, startup_seconds=startup, rebalance_seconds=rebalance)
    assert peak_limit(facts, config, period) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("target", "rate", "period", "expected"),
    [
        (3600.0, 1_000.0, 15.0, (3365.0, 3405.0, 3405.0 * 50 / 49)),
        (3600.0, 25_000.0, 15.0, (3365.0, 3405.0, 6810.0)),
        (3600.0, 1_000.0, 60.0, (3320.0, 3360.0, 3360.0 * 50 / 49)),
        (3600.0, 25_001.0, 15.0, None),  # over half of one replica
        (300.0, 1_000.0, 15.0, None),  # limit 265 s: a cycle of 255 s
        (90.0, 0.0, 15.0, None),  # W = 90 - 35 - 15 - 40 = 0 s: shorter than a wake's start
    ],
)
def test_plan_sleep(
    target: float, rate: float, period: float, expected: tuple[float, float, float] | None
) -> None:
    config = replace(CONFIG, sleep_max_events_per_hour=1e6) if target == 90.0 else CONFIG
    plan = plan_sleep(rate, C, pipeline(1, target), config, period)
    if expected is None:
        assert plan is None
    else:
        assert plan is not None
        got = (plan.sleep_seconds, plan.peak_seconds, plan.cycle_seconds)
        assert got == pytest.approx(expected)


CYCLE = SleepPlan(sleep_seconds=3365.0, peak_seconds=3405.0, cycle_seconds=3600.0)


@pytest.mark.parametrize(
    ("left", "rate", "expected"),
    [
        (0.0, 1_000.0, True),  # drained
        (-5_000.0, 1_000.0, True),
        (735_000.0, 1_000.0, False),  # delta = 15 s: drains until the next decision
        # delta = 1 s: 14 x 0.98 = 13.72 idle s against (15 + 49) x 40 / 3600 = 0.71
        (49_000.0, 1_000.0, True),
        # delta = 10 s: 4.9 idle s against (15 + 490) x 40 / 3600 = 5.61
        (490_000.0, 1_000.0, False),
        # delta = 9 s: 5.88 against (15 + 441) x 40 / 3600 = 5.07
        (441_000.0, 1_000.0, True),
        # 100 rec/s: 99,800 left is 2 s of drain but 998 s of input: 12.97 against 11.26
        (99_800.0, 100.0, True),
        # 124,750 left: 2.5 s of drain, 1,247.5 s of input: 12.48 against 14.03
        (124_750.0, 100.0, False),
        (1.0, 0.0, False),  # no input: the few records left are drained first
    ],
)
def test_plan_quit(left: float, rate: float, expected: bool) -> None:
    assert plan_quit(left, rate, C, plan=CYCLE, config=CONFIG, period=15.0) is expected
