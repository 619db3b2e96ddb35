"""Scale to zero (scaling/sleep.py), by tables: when a pipeline with `minReplicas: 0` sleeps,
stays asleep, wakes and how many replicas it wakes with. The expected numbers are worked out
here from the module's formulas with the defaults (start-up 30 s + rebalance 10 s, a 30 s wake
lead, 90 % of the target, cycles of at least 30 minutes), not by calling its helpers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from metricpipe_operator.scaling.model import MetricSample, PipelineScaling, PolicyConfig
from metricpipe_operator.scaling.sleep import decide_with_sleep

NOW = 100_000.0
C = 50_000.0  # one replica's capacity, records/s (status.capacityPerReplica)
CONFIG = PolicyConfig()  # start-up 30 s, rebalance 10 s, cooldown 60 s, stale after 60 s


def history(*, replicas: int, rate: float, lag: float, age: float, busy: float | None = 0.02,
            newest_age: float = 15.0) -> list[MetricSample]:  # fmt: skip
    """Ten minutes of samples, one per 15 s, the newest `newest_age` s old."""
    processing = 0.0 if replicas == 0 else rate
    return [
        MetricSample(
            at=NOW - newest_age - 15.0 * i,
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


def pipeline(current: int, target: float = 3600.0, known: float | None = C) -> PipelineScaling:
    return PipelineScaling(
        current_replicas=current, min_replicas=0, max_replicas=4, target_utilization=0.7,
        freshness_target_seconds=target, allowed_lateness_seconds=0.0,
        scale_down_stabilization_seconds=600.0, last_scale_at=NOW - 3600.0, known_capacity=known,
    )  # fmt: skip


# -- awake: when does one replica go to sleep -------------------------------------------------
# A sleep W = 0.9 T (c - r)/c - 40 - 30 must exceed the start-up, and its cycle (W + 40) c/(c - r)
# must last 1800 s. At 1 h and r = 1,000: W = 3240 x 0.98 - 70 = 3105.2 s, cycle 3209 s: sleeps.
# At 5 min: W = 270 x 0.98 - 70 = 194.6 s, cycle 239 s: stays awake.
AWAKE = [
    ("1h, 1,000 rec/s, caught up: sleeps ~3105 s", 3600.0, 1_000.0, 3_000.0, 3.0, 0, "~3105 s"),
    ("5m, same input: a cycle of 239 s costs more than it saves", 300.0, 1_000.0, 3_000.0, 3.0, 1,
     None),
    ("1h, 30,000 rec/s: over half of one replica", 3600.0, 30_000.0, 90_000.0, 3.0, 1, None),
    # 10,000 rec/s: W = 3240 x 0.8 - 70 = 2522 s, cycle (2562) x 1.25 = 3202.5 s
    ("1h, 10,000 rec/s: sleeps ~2522 s", 3600.0, 10_000.0, 30_000.0, 3.0, 0, "~2522 s"),
    # 600 s behind and 600,000 left: 15 s at 49,000 rec/s drain 735,000 -> caught up by now
    ("1h, seen 600 s behind, drained by now", 3600.0, 1_000.0, 600_000.0, 600.0, 0, "~3105 s"),
    # 6,000,000 left: 15 s drain 735,000, 5,265,000 > 30 s of input: not yet
    ("1h, still draining", 3600.0, 1_000.0, 6_000_000.0, 600.0, 1, None),
]  # fmt: skip


@pytest.mark.parametrize(("target", "rate", "lag", "age", "expected", "note"),
                         [row[1:] for row in AWAKE], ids=[row[0] for row in AWAKE])  # fmt: skip
def test_one_replica_sleeps_only_when_a_sleep_pays(
    target: float, rate: float, lag: float, age: float, expected: int, note: str | None
) -> None:
    samples = history(replicas=1, rate=rate, lag=lag, age=age)
    decision = decide_with_sleep(samples, pipeline(1, target), CONFIG, NOW)
    assert decision.replicas == expected, decision.reason
    if note:
        assert f"1 → 0 (sleeping {note}" in decision.reason, decision.reason


def test_no_sleep_within_the_cooldown_of_the_last_scale() -> None:
    samples = history(replicas=1, rate=1_000.0, lag=3_000.0, age=3.0)
    woken = replace(pipeline(1), last_scale_at=NOW - 30.0)
    assert decide_with_sleep(samples, woken, CONFIG, NOW).replicas == 1


def test_a_replica_too_idle_to_measure_sleeps_as_a_probe() -> None:
    """Capacity unknown (2 % busy, nothing in status): sleep as if one replica did only twice
    the input: W = 3240 / 2 - 40 - 30 = 1550 s."""
    samples = history(replicas=1, rate=100.0, lag=300.0, age=3.0)
    decision = decide_with_sleep(samples, pipeline(1, known=None), CONFIG, NOW)
    assert decision.replicas == 0, decision.reason
    assert "sleeping ~1550 s, as if one replica did only twice the input" in decision.reason


# -- asleep: when does it wake, and with how many ---------------------------------------------
# Peak if woken one decision later: age + 30 + 40 + (backlog + r x 70) / (c - r), against 3240 s.
ASLEEP = [
    # 100 + 70 + (100,000 + 70,000) / 49,000 = 173.5 s
    ("100 s behind: asleep", 1_000.0, 100_000.0, 100.0, 0),
    # 3,100 + 70 + (3,100,000 + 70,000) / 49,000 = 3234.7 s: still within 3240
    ("3,100 s behind: asleep", 1_000.0, 3_100_000.0, 3_100.0, 0),
    # 3,150 + 70 + (3,150,000 + 70,000) / 49,000 = 3285.7 s: past 3240
    ("3,150 s behind: woken", 1_000.0, 3_150_000.0, 3_150.0, 1),
    # 40,000 rec/s > c / 2: woken with ceil(40,000 / (0.7 x 50,000)) = 2
    ("input surges while asleep: woken with 2", 40_000.0, 400_000.0, 10.0, 2),
]  # fmt: skip


@pytest.mark.parametrize(("rate", "lag", "age", "expected"), [row[1:] for row in ASLEEP],
                         ids=[row[0] for row in ASLEEP])  # fmt: skip
def test_asleep_it_wakes_before_freshness_reaches_ninety_percent_of_the_target(
    rate: float, lag: float, age: float, expected: int
) -> None:
    samples = history(replicas=0, rate=rate, lag=lag, age=age)
    decision = decide_with_sleep(samples, pipeline(0), CONFIG, NOW)
    assert decision.replicas == expected, decision.reason
    assert ("0 → " in decision.reason) == (expected > 0), decision.reason


def test_asleep_without_current_metrics_it_wakes() -> None:
    samples = history(replicas=0, rate=1_000.0, lag=1_000.0, age=1.0, newest_age=120.0)
    decision = decide_with_sleep(samples, pipeline(0), CONFIG, NOW)
    assert (decision.replicas, decision.metrics_available) == (1, False), decision.reason
    assert decide_with_sleep([], pipeline(0), CONFIG, NOW).replicas == 1


@pytest.mark.parametrize(("age", "expected"), [(1_000.0, 0), (1_600.0, 1)])
def test_asleep_after_a_probe_it_keeps_the_probe_s_bound(age: float, expected: int) -> None:
    """Capacity still unknown: woken when 2 (age + 30 + 40) reaches 3240 s: 2,140 s at 1,000 s
    behind (asleep), 3,340 s at 1,600 s (woken)."""
    samples = history(replicas=0, rate=100.0, lag=100.0 * age, age=age)
    decision = decide_with_sleep(samples, pipeline(0, known=None), CONFIG, NOW)
    assert decision.replicas == expected, decision.reason


# -- woken: one replica that drains in time is kept ---------------------------------------------
@pytest.mark.parametrize(("age", "keeps_one"), [(2_000.0, True), (3_000.0, False)])
def test_woken_one_replica_is_kept_when_it_drains_in_time(age: float, keeps_one: bool) -> None:
    """10,000 rec/s at 20 % busy (c = 50,000) and 10,000 x age records behind: one replica
    drains them at 40,000 rec/s,
    by age + age / 4 = 2,500 s of freshness (within 3240: kept) or 3,750 s (not: the base
    policy's catch-up replicas)."""
    samples = history(replicas=1, rate=10_000.0, lag=10_000.0 * age, age=age, busy=0.2)
    decision = decide_with_sleep(samples, pipeline(1), CONFIG, NOW)
    assert (decision.replicas == 1) == keeps_one, decision.reason
    if keeps_one:
        assert "one replica drains by 2500 s of freshness" in decision.reason, decision.reason
