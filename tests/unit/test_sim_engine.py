"""The autoscaling simulator (bench/sim_engine.py) against closed forms worked out by hand:
a group below and above its capacity, the start-up and rebalance pauses of a scale-up,
replicas beyond the partition count, what the policy can see, and a scale-down that cancels
starting pods first."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from sim_engine import SimParams, group_rates, simulate

from metricpipe_operator.scaling.model import MetricSample

STEP = 5.0
RATE = 100.0  # records/s one replica processes
PARAMS = SimParams(partitions=4, per_replica_rate=RATE, startup_seconds=30.0,
                   rebalance_seconds=10.0, batch_latency_seconds=3.0, scrape_seconds=15.0,
                   scrape_delay_seconds=15.0, rate_window_seconds=60.0, step_seconds=STEP,
                   plot_every_seconds=60.0)  # fmt: skip


def keep(samples: Sequence[MetricSample], current: int, last: float | None, now: float) -> int:
    return current


def steps(rate: float, seconds: float) -> list[float]:
    return [rate * STEP] * round(seconds / STEP)


def test_below_capacity_is_fresh_for_the_batch_latency() -> None:
    result = simulate(steps(150.0, 600), PARAMS, keep, interval=15, initial=2, target=60)
    assert result.max_freshness == pytest.approx(3.0)  # only the batch latency
    assert result.violation_seconds == 0
    assert result.replica_seconds == pytest.approx(2 * 600)
    assert result.events == 0


def test_above_capacity_the_oldest_record_ages_at_one_minus_the_capacity_share() -> None:
    """Arrivals a = 200/s, capacity c = 100/s from t = 0: after t s the group has processed
    c·t records, the oldest unprocessed one arrived at c·t/a, so its age is t·(1 - c/a)."""
    seconds = 600
    result = simulate(steps(200.0, seconds), PARAMS, keep, interval=15, initial=1, target=120)
    assert result.max_freshness == pytest.approx(seconds * (1 - 100 / 200) + 3.0, abs=STEP)
    # freshness crosses 120 s at t = (120 - 3) / 0.5 = 234 s: violated from there on
    assert result.violation_seconds == pytest.approx(seconds - 234, abs=STEP)


def test_a_scale_up_waits_for_the_start_up_then_pauses_the_group() -> None:
    """One replica at a = 150/s (c = 100/s) is told at t = 60 to run two. The new pod joins at
    90 s, the group stops for the 10 s rebalance, then clears 200 - 150 = 50 rec/s of the
    backlog: 50·90 (until the join) + 150·10 (the pause) = 6000 records, gone 120 s later."""
    decided: list[float] = []

    def two_at_sixty(samples: Sequence[MetricSample], current: int, last: float | None,
                     now: float) -> int:  # fmt: skip
        if now >= 60 and current == 1:
            decided.append(now)
            return 2
        return current

    result = simulate(steps(150.0, 600), PARAMS, two_at_sixty, interval=15, initial=1, target=1e9)
    assert decided == [60.0]
    assert result.events == 1
    by_minute = dict(zip(result.times, result.freshness, strict=True))
    caught_up = 100 + 6000 / 50  # the pause ends at 100 s; the backlog clears at 50 rec/s
    assert by_minute[240.0] > 3.0  # the minute ending at 240 s still held a backlog
    assert by_minute[300.0] == pytest.approx(3.0)  # the next one never did
    assert 180 < caught_up <= 240
    assert result.replica_seconds == pytest.approx(60 * 1 + 540 * 2)  # the starting pod counts


def test_replicas_beyond_the_partitions_idle() -> None:
    """Six replicas on four partitions carry what four do: 400/s, not 600/s."""
    result = simulate(steps(500.0, 300), PARAMS, keep, interval=15, initial=6, target=1e9)
    assert result.max_freshness == pytest.approx(300 * (1 - 400 / 500) + 3.0, abs=STEP)


def test_the_policy_sees_only_samples_one_scrape_old() -> None:
    seen: list[tuple[float, float]] = []

    def record(samples: Sequence[MetricSample], current: int, last: float | None,
               now: float) -> int:  # fmt: skip
        if samples:
            seen.append((now, samples[-1].at))
        return current

    simulate(steps(50.0, 300), PARAMS, record, interval=15, initial=1, target=1e9)
    assert seen
    assert all(now - at >= PARAMS.scrape_delay_seconds for now, at in seen)
    assert min(now - at for now, at in seen) == PARAMS.scrape_delay_seconds


def test_a_scale_down_cancels_starting_pods_without_a_pause() -> None:
    """1 -> 3 at t = 15, back to 1 at t = 20: both new pods were still starting, so nobody
    joined or left the group and it never paused: below capacity, always fresh."""

    def up_then_down(samples: Sequence[MetricSample], current: int, last: float | None,
                     now: float) -> int:  # fmt: skip
        return 3 if now == 15 else 1 if now == 20 else current

    result = simulate(steps(99.0, 300), PARAMS, up_then_down, interval=5, initial=1, target=1e9)
    assert result.events == 2
    assert result.max_freshness == pytest.approx(3.0)
    assert result.replica_seconds == pytest.approx(300 + 2 * 5)  # two pods for one step


def test_the_bottleneck_replica_paces_a_skewed_or_uneven_group() -> None:
    """Four partitions; the hottest carries 1.5 x the mean: one replica owning it alone caps
    the group at 4 / 1.5 replicas' worth, whatever the others could do."""
    skewed = group_rates(replace(PARAMS, partition_skew=0.5))
    assert skewed[1] == pytest.approx(RATE)  # one replica owns everything: its own pace
    assert skewed[4] == pytest.approx(RATE * 4 / 1.5)
    assert group_rates(PARAMS) == [0.0, RATE, 2 * RATE, 3 * RATE, 4 * RATE]
    uneven = group_rates(replace(PARAMS, capacity_spread=0.2))
    assert RATE * 4 * 0.8 <= uneven[4] <= RATE * 4 * 1.2
    assert uneven[4] != pytest.approx(4 * RATE)  # the slowest replica sets the pace
