"""The scaling policy and its baselines, on fake metric histories in virtual time (no clock).

Every history has one sample per 15 s, the newest one scrape (15 s) old, of a consumer group
whose replicas each process C records/s when busy. Unless a test says otherwise the pipeline's
freshness target is 5 minutes: budget_fraction 0.5 leaves 150 s, start-up (30 s) and rebalance
(10 s) take their share, so a backlog must drain in what is left.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import pytest

from metricpipe_operator.scaling.baselines import KedaConfig, decide_fixed, decide_keda
from metricpipe_operator.scaling.model import Decision, MetricSample, PipelineScaling, PolicyConfig
from metricpipe_operator.scaling.policy import decide, decide_step_pays

C = 1000.0  # records/s one busy replica processes
NOW = 1_000_000.0
CONFIG = PolicyConfig()
PIPE = PipelineScaling(
    current_replicas=3, min_replicas=1, max_replicas=20, target_utilization=0.7,
    freshness_target_seconds=300.0, allowed_lateness_seconds=60.0,
    scale_down_stabilization_seconds=600.0,
)  # fmt: skip


def series(
    rate: float | Callable[[float], float], replicas: int = 3, *, minutes: float = 20,
    lag: float = 0.0, age: float = 0.0, partitions: int = 32,
) -> list[MetricSample]:  # fmt: skip
    """`replicas` running for a while, input `rate` (or rate(seconds before NOW)). With a
    backlog, every replica is busy and the backlog shrinks (or grows) by the difference, to
    `lag` records in the newest sample, whose oldest record is then `age` s old."""
    samples = []
    capacity = C * min(replicas, partitions)
    for i in range(int(minutes * 4), 0, -1):
        at = NOW - 15.0 * i
        arriving = rate(NOW - at) if callable(rate) else rate
        backlog = max(0.0, lag + (capacity - arriving) * 15.0 * (i - 1)) if lag > 0 else 0.0
        processing = capacity if backlog > 0 else min(arriving, capacity)
        sample = MetricSample(
            at=at, replicas=replicas, input_rate=arriving, processing_rate=processing,
            busy_fraction=processing / (C * replicas), lag_records=backlog,
            time_lag_seconds=age, freshness_seconds=age + 3.0, partitions=partitions,
        )  # fmt: skip
        samples.append(sample)
    return samples


def surge(history: list[MetricSample], rate: float, growth: float) -> list[MetricSample]:
    """The last two samples see `rate` arriving and the backlog growing `growth` records/s."""
    *older, before, last = history
    capacity = (last.processing_rate or 0.0) / (last.busy_fraction or 1.0)
    busy = replace(
        before,
        input_rate=rate,
        processing_rate=capacity,
        busy_fraction=1.0,
        lag_records=growth * 15,
        time_lag_seconds=10.0,
        freshness_seconds=13.0,
    )
    return [*older, busy, replace(busy, at=last.at, lag_records=growth * 30,
                                  time_lag_seconds=25.0, freshness_seconds=28.0)]  # fmt: skip


def run(history: list[MetricSample], pipeline: PipelineScaling = PIPE, **config: int) -> Decision:
    return decide(history, pipeline, replace(CONFIG, **config), NOW)


# -- sizing ---------------------------------------------------------------------------------


def test_steady_load_sized_right_is_left_alone() -> None:
    # 2,000 rec/s on 3 replicas of 1,000: a steady input 2 replicas carry, but removing one of
    # three does not pay for its rebalance and scale event (hysteresis)
    decision = run(series(2000.0))
    assert (decision.replicas, decision.limited_by, decision.metrics_available) == (
        3, "hysteresis", True,
    )  # fmt: skip
    assert decision.per_replica_rate == pytest.approx(C)
    assert decision.reason.endswith(": 3 → 3 (wants 2: removes 33% or less of the replicas)")


def test_capacity_is_processing_over_busy_over_replicas() -> None:
    # half busy, 1,500 rec/s over 3 replicas: a replica could do 1,000 rec/s
    history = [replace(s, processing_rate=1500.0, busy_fraction=0.5) for s in series(1500.0)]
    assert run(history).per_replica_rate == pytest.approx(1000.0)


def test_rising_load_scales_up_at_once_and_says_why_with_numbers() -> None:
    # input jumps to 6,000 rec/s on 3 replicas: the backlog grows 3,000 rec/s
    decision = run(surge(series(2000.0), rate=6000.0, growth=3000.0))
    # when new replicas work (45 s on, after a 10 s pause) 285,000 records wait, 47 s of lag:
    # 7 replicas drain them and keep the lag within the hold (82.5 s) even if the input rose
    # to 6,000 / 70 %; 6 would not
    assert decision.details["backlog_ahead_records"] == pytest.approx(285_000.0)
    assert decision.replicas == 7
    assert decision.reason == (
        "input 6,000 rec/s (plan 6,000), capacity 1,000 rec/s/replica at 70%, "
        "backlog 90,000 rec (28 s), budget 82 s: 3 → 7"
    )
    assert decision.predicted_freshness_seconds == pytest.approx(28.0 + 195_000 / 6000)


def test_a_1_minute_rate_that_trails_the_surge_is_corrected_by_the_backlog() -> None:
    # the 1-minute rate still says 3,000, but the backlog grows 3,000 rec/s on a full group
    history = surge(series(2000.0), rate=3000.0, growth=3000.0)
    assert run(history).details["planned_input_rate"] == pytest.approx(6000.0)


def test_a_shrinking_backlog_is_no_surge() -> None:
    # a drain has just ended: the 1-minute processing rate still counts it (12,000 rec/s) while
    # the last 15,000 records went in the last 15 s; the input is what arrives, 500 rec/s, not
    # 12,000 - 1,000
    *older, before, last = series(500.0, replicas=17)
    drained = [
        *older,
        replace(before, lag_records=15_000.0),
        replace(last, processing_rate=12_000.0, busy_fraction=12_000.0 / (C * 17)),
    ]
    assert run(drained, replace(PIPE, current_replicas=17)).details["planned_input_rate"] == 500.0


def test_small_backlog_drains_inside_the_budget_without_scaling() -> None:
    # 60,000 records (30 s at the input rate) and a 1,000 rec/s surplus: drains in time
    decision = run(series(2000.0, lag=60_000.0, age=30.0))
    assert decision.replicas == 3
    assert decision.predicted_drain_seconds is not None
    assert decision.predicted_drain_seconds <= 150.0


def test_backlog_beyond_the_hold_scales_to_drain_inside_the_budget() -> None:
    # 100 s behind (the hold is 82.5 s): the budget is down to its 30 s floor
    # (150 - 103 - 30 - 10 < 30); 175,000 records will wait: ceil(2.86 + 5.83) = 9
    decision = run(series(2000.0, lag=200_000.0, age=100.0))
    assert decision.details["budget_seconds"] == pytest.approx(30.0)
    assert decision.details["backlog_ahead_records"] == pytest.approx(175_000.0)
    assert decision.replicas == 9
    assert decision.predicted_drain_seconds == pytest.approx(175_000.0 / 7000.0)


def test_a_long_freshness_budget_lets_replicas_run_full() -> None:
    # 2,500 rec/s on 4 replicas, caught up for 20 minutes: with 5 minutes to spare 2 replicas
    # would let the lag pass half the hold within the stabilisation window; with an hour the
    # policy lets 2 replicas run full and a backlog build
    history = series(2500.0, replicas=4)
    four = replace(PIPE, current_replicas=4)
    assert run(history, replace(four, freshness_target_seconds=300.0)).replicas >= 3
    hour = run(history, replace(four, freshness_target_seconds=3600.0))
    assert hour.replicas == 2
    assert hour.reason.endswith(": 4 → 2")


# -- bounds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partitions", "max_replicas", "replicas", "limited_by"),
    [(8, 20, 8, "partitions"), (32, 6, 6, "max_replicas"), (6, 6, 6, "max_replicas")],
)
def test_partition_count_and_max_bound_the_target(
    partitions: int, max_replicas: int, replicas: int, limited_by: str
) -> None:
    history = surge(series(2000.0, partitions=partitions), rate=30_000.0, growth=27_000.0)
    decision = run(history, replace(PIPE, max_replicas=max_replicas), max_step_up=32)
    assert (decision.replicas, decision.limited_by) == (replicas, limited_by)
    assert f"(limited by {limited_by})" in decision.reason


def test_at_the_cap_it_says_which_bound_holds_it() -> None:
    history = surge(series(2000.0, replicas=8, partitions=8), rate=30_000.0, growth=22_000.0)
    decision = run(history, replace(PIPE, current_replicas=8))
    assert (decision.replicas, decision.limited_by) == (8, "partitions")


def test_max_step_up_limits_one_decision() -> None:
    history = surge(series(2000.0), rate=30_000.0, growth=27_000.0)
    decision = run(history, max_step_up=4)
    assert (decision.replicas, decision.limited_by) == (7, "max_step")


@pytest.mark.parametrize("min_replicas", [1, 2])
def test_never_below_min_and_never_zero(min_replicas: int) -> None:
    idle = [replace(s, busy_fraction=0.0, processing_rate=0.0) for s in series(0.0, replicas=4)]
    pipeline = replace(PIPE, current_replicas=4, min_replicas=min_replicas)
    decision = run(idle, pipeline, max_step_down=4)
    assert decision.replicas == min_replicas
    assert decision.metrics_available


def test_replicas_outside_the_spec_bounds_come_back_at_once() -> None:
    decision = run(series(100.0, replicas=1), replace(PIPE, current_replicas=0, min_replicas=2))
    assert (decision.replicas, decision.limited_by) == (2, "min_replicas")


# -- scaling down ---------------------------------------------------------------------------


def dropped(minutes_ago: float, minutes: float = 30) -> list[MetricSample]:
    """8 replicas; input fell from 6,000 to 1,000 rec/s `minutes_ago`."""
    return series(lambda ago: 1000.0 if ago <= minutes_ago * 60 else 6000.0, replicas=8,
                  minutes=minutes)  # fmt: skip


@pytest.mark.parametrize(
    ("minutes_ago", "replicas", "limited_by", "variability"),
    [
        # the 20-minute window still holds 18 minutes at 6,000 rec/s: replayed through 5
        # replicas, its last record would wait 1,080,000 / 5,000 = 216 s, past 70 % of the
        # target (210 s); 6 keep up. 8 -> 6 removes too little
        (2, 8, "hysteresis", 6),
        # 8 minutes at 6,000 in the window: 5 replicas would have held it (96 s), 4 not (240 s)
        (12, 5, None, 5),
        # all of the window at 1,000 rec/s: one replica's worth, in one step
        (21, 1, None, 1),
    ],
)  # fmt: skip
def test_scale_down_goes_to_what_the_windows_input_needs_in_one_step(
    minutes_ago: float, replicas: int, limited_by: str | None, variability: int
) -> None:
    decision = run(dropped(minutes_ago), replace(PIPE, current_replicas=8))
    assert (decision.replicas, decision.limited_by) == (replicas, limited_by)
    assert decision.details["variability_replicas"] == variability


def test_max_step_down_limits_one_decision() -> None:
    decision = run(dropped(21), replace(PIPE, current_replicas=8), max_step_down=1)
    assert (decision.replicas, decision.limited_by) == (7, "max_step")


def test_a_drained_spike_is_left_in_one_step_to_what_its_replay_needs() -> None:
    # 16,000 rec/s for one minute 12 minutes ago, 500 otherwise; 17 replicas, caught up.
    # Replayed through 4 replicas, the spike's last record waits 720,000 / 4,000 = 180 s (within
    # 70 % of the target, 210 s), through 3 260 s: 17 -> 4 at once, not one replica a minute
    spike = series(lambda ago: 16000.0 if 720 <= ago < 780 else 500.0, replicas=17)
    decision = run(spike, replace(PIPE, current_replicas=17))
    assert (decision.replicas, decision.details["variability_replicas"]) == (4, 4)


def test_noisy_input_is_absorbed_by_the_backlog_not_by_headroom() -> None:
    # 1,500 and 2,500 rec/s in turn, 5 minutes each (the newest at 1,500): the old policy kept
    # 2,500 / 70 % = 4 replicas; replayed, 2 replicas hold each 2,500 phase's lag under 60 s
    noisy = series(lambda ago: 2500.0 if (ago // 300) % 2 else 1500.0, replicas=4)
    decision = run(noisy, replace(PIPE, current_replicas=4))
    assert (decision.replicas, decision.details["variability_replicas"]) == (2, 2)


@pytest.mark.parametrize(
    ("current", "target", "pays"),
    [(3, 2, False), (3, 1, True), (8, 6, False), (8, 5, True), (2, 1, True), (4, 2, True)],
)
def test_a_scale_down_pays_when_it_removes_more_than_a_third(
    current: int, target: int, pays: bool
) -> None:
    assert decide_step_pays(current, target, CONFIG) is pays


def test_never_scale_down_while_draining() -> None:
    history = series(1000.0, replicas=8, lag=100_000.0, age=100.0)
    decision = run(history, replace(PIPE, current_replicas=8))
    assert decision.replicas == 8
    assert "no scale-down while draining" in decision.reason


def test_cooldown_holds_back_a_scale_down_but_not_a_group_falling_behind() -> None:
    recently = replace(PIPE, current_replicas=8, last_scale_at=NOW - 30)
    down = run(dropped(21), recently)
    assert (down.replicas, down.limited_by) == (8, "cooldown")
    behind = surge(series(2000.0), rate=6000.0, growth=3000.0)
    assert run(behind, replace(PIPE, last_scale_at=NOW - 30)).replicas > 3


def test_a_group_that_keeps_up_is_not_scaled_up_for_headroom_alone() -> None:
    # 2,900 rec/s on 3 replicas, caught up: a 30 % utilisation target wants 10, but 3 hold the
    # lag; the headroom sizes a scale-up once one is needed
    wary = replace(PIPE, target_utilization=0.3)
    assert run(series(2900.0, replicas=3), wary).replicas == 3


def test_replicas_still_starting_are_counted_before_adding_more() -> None:
    # 7 set 20 s ago, 3 observed: the newest samples cannot show them yet
    history = surge(series(2000.0), rate=6000.0, growth=3000.0)
    again = run(history, replace(PIPE, current_replicas=7, last_scale_at=NOW - 20))
    first = run(history)
    assert again.replicas <= first.replicas + 1


# -- fail static ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "why"),
    [
        ([], "no metric samples yet"),
        ([replace(s, at=s.at - 120) for s in series(2000.0)], "metrics stale: newest sample 135 s"),
        ([*series(2000.0)[:-1], replace(series(2000.0)[-1], input_rate=None)], "input rate"),
        ([*series(2000.0)[:-1], replace(series(2000.0)[-1], lag_records=None)], "consumer lag"),
        (
            [*series(2000.0)[:-1],
             replace(series(2000.0)[-1], time_lag_seconds=None, freshness_seconds=None)],
            "time lag and freshness",
        ),
        ([replace(s, busy_fraction=None) for s in series(2000.0)], "capacity unknown"),
        ([replace(s, busy_fraction=0.0) for s in series(2000.0)], "capacity unknown"),
    ],
)  # fmt: skip
def test_unknown_or_stale_metrics_change_nothing(history: list[MetricSample], why: str) -> None:
    decision = run(history, replace(PIPE, current_replicas=5))
    assert (decision.replicas, decision.metrics_available) == (5, False)
    assert why in decision.reason
    assert decision.reason.endswith("no change (fail static)")


def test_one_bad_sample_does_not_move_the_capacity() -> None:
    history = series(2000.0)
    history[-3] = replace(history[-3], busy_fraction=0.06)  # claims 11,000 rec/s per replica
    assert run(history).per_replica_rate == pytest.approx(C)


def test_a_missing_input_rate_in_the_window_blocks_a_scale_down() -> None:
    history = dropped(21)
    history[-10] = replace(history[-10], input_rate=None)
    decision = run(history, replace(PIPE, current_replicas=8))
    assert (decision.replicas, decision.limited_by) == (8, "stabilization")
    assert "a sample in the window has no input rate" in decision.reason


# -- determinism ----------------------------------------------------------------------------


def test_same_inputs_same_decision_whatever_the_order() -> None:
    history = surge(series(lambda ago: 2000.0 + ago, minutes=30), rate=6000.0, growth=2500.0)
    first = run(history)
    shuffled = history[:]
    random.Random(7).shuffle(shuffled)
    assert run(shuffled) == first
    assert run(list(history)) == first
    later = [*history, replace(history[-1], at=NOW + 60)]  # the future is ignored
    assert run(later) == first


# -- baselines ------------------------------------------------------------------------------

KEDA = KedaConfig(lag_threshold=10_000.0)


def lagging(lags: list[float], replicas: int = 4, partitions: int = 32) -> list[MetricSample]:
    """One sample per 15 s ending 15 s before NOW, with these lags."""
    start = NOW - 15.0 * len(lags)
    return [
        MetricSample(at=start + 15.0 * i, replicas=replicas, lag_records=lag, partitions=partitions)
        for i, lag in enumerate(lags)
    ]


def keda(
    lags: list[float], current: int = 4, partitions: int = 32, max_replicas: int = 20
) -> Decision:
    pipeline = replace(PIPE, current_replicas=current, max_replicas=max_replicas)
    return decide_keda(lagging(lags, current, partitions), pipeline, KEDA, NOW)


@pytest.mark.parametrize(
    ("lag", "replicas"),
    [
        (40_000.0, 4),  # exactly 4 thresholds
        (43_000.0, 4),  # ratio 1.075: within the 10 % tolerance
        (45_000.0, 5),  # 1.125: ceil(4.5)
        (80_000.0, 8),  # +100 %
        (200_000.0, 8),  # wants 20: at most max(+4, +100 %) per sync
        (0.0, 4),  # stabilising: 4 was recommended within 300 s
    ],
)
def test_keda_desired_is_lag_over_threshold_with_tolerance_and_step(
    lag: float, replicas: int
) -> None:
    assert keda([40_000.0] * 5 + [lag]).replicas == replicas


def test_keda_scales_down_to_the_highest_recommendation_of_300_s() -> None:
    lags = [40_000.0] + [15_000.0] * 4 + [5_000.0] * 16  # the 40k sample is 315 s old
    assert keda(lags).replicas == 2
    assert keda([40_000.0] * 5 + [5_000.0] * 15).replicas == 4  # 300 s ago it wanted 4


def test_keda_is_capped_at_partitions_and_min_one() -> None:
    decision = keda([400_000.0] * 3, current=8, partitions=12)
    assert (decision.replicas, decision.limited_by) == (12, "partitions")
    assert keda([0.0] * 30, current=1).replicas == 1


def test_keda_without_a_lag_metric_changes_nothing() -> None:
    stale = decide_keda(lagging([40_000.0])[:0], replace(PIPE, current_replicas=3), KEDA, NOW)
    assert (stale.replicas, stale.metrics_available) == (3, False)


def test_fixed_is_always_max() -> None:
    assert decide_fixed([], replace(PIPE, max_replicas=32), NOW).replicas == 32
