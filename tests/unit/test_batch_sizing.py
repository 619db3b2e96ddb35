"""Batch mode's sizing policy and schedule (pure), as tables."""

from __future__ import annotations

import pytest

from metricpipe_operator.scaling.batch import (
    BatchRun,
    BatchSizing,
    build_batch_schedule,
    decide_batch_plan,
    decide_next_volume,
)

HOUR = 3600.0
SIZING = BatchSizing(freshness_target_seconds=HOUR, allowed_lateness_seconds=300,
                     startup_seconds=30, max_parallelism=8)  # fmt: skip


def runs(*volumes: int, parallelism: int = 1, rate: float = 1_000.0) -> list[BatchRun]:
    """Runs that each processed their volume at `rate` rec/s per unit (20 s start-up)."""
    speed = rate * (1 + SIZING.efficiency * (parallelism - 1))
    return [BatchRun(window_start=i * HOUR, records=v, seconds=20 + v / speed,
                     parallelism=parallelism, startup_seconds=20)
            for i, v in enumerate(volumes)]  # fmt: skip


def test_a_doubling_volume_raises_parallelism_and_stays_under_budget() -> None:
    steady = decide_batch_plan(runs(1_000_000, 1_000_000, 1_000_000), SIZING)
    doubling = decide_batch_plan(runs(500_000, 1_000_000, 2_000_000), SIZING)
    assert steady.fits
    assert doubling.fits
    assert doubling.parallelism > steady.parallelism
    assert doubling.predicted_records > 2_000_000  # the trend, not only the last volume
    assert doubling.predicted_seconds - 20 <= SIZING.safety * doubling.budget_seconds
    assert doubling.budget_seconds == HOUR - 300 - 20  # the measured start-up, not the default


@pytest.mark.parametrize(
    ("volumes", "expected"),
    [
        ((), 0),
        ((7,), 7),
        ((100, 200, 400), 534),  # least-squares line one step ahead
        ((400, 200, 100), 100),  # falling: the last volume, the trend is not trusted yet
        ((100, 100, 100), 100),
    ],
)
def test_next_volume(volumes: tuple[int, ...], expected: int) -> None:
    assert decide_next_volume(runs(*volumes), 6) == expected


def test_the_smallest_parallelism_that_fits_is_chosen() -> None:
    # 2.7M records at 1,000 rec/s per unit: 1 unit needs 2,700 s > 0.8 x 3,280 s; 2 fit
    plan = decide_batch_plan(runs(2_700_000, 2_700_000), SIZING)
    assert plan.parallelism == 2
    assert plan.fits


def test_the_rate_is_measured_per_unit_of_parallelism() -> None:
    # the same work done at parallelism 4: the per-unit rate is the same, so is the plan
    assert decide_batch_plan(runs(2_700_000, 2_700_000, parallelism=4), SIZING).parallelism == 2


def test_when_even_the_maximum_is_too_slow_the_plan_says_so() -> None:
    plan = decide_batch_plan(runs(50_000_000, 50_000_000), SIZING)
    assert not plan.fits
    assert plan.parallelism == SIZING.max_parallelism
    assert "raise maxParallelism or the freshness target" in plan.reason


def test_no_budget_is_reported() -> None:
    tight = BatchSizing(freshness_target_seconds=300, allowed_lateness_seconds=290,
                        startup_seconds=30)  # fmt: skip
    plan = decide_batch_plan([], tight)
    assert not plan.fits
    assert "no budget" in plan.reason


def test_without_history_the_default_rate_and_one_unit() -> None:
    plan = decide_batch_plan([], SIZING)
    assert (plan.parallelism, plan.predicted_records, plan.fits) == (1, 0, True)


@pytest.mark.parametrize(
    ("window", "lateness", "schedule"),
    [
        (3600, 300, "5 * * * *"),
        (3600, 0, "0 * * * *"),
        (900, 60, "1,16,31,46 * * * *"),
        (60, 10, "* * * * *"),
        (7200, 300, "5 0,2,4,6,8,10,12,14,16,18,20,22 * * *"),
        (3600, 3660, "1 * * * *"),  # over an hour late: the same minute, an hour later
        (21600, 3900, "5 1,7,13,19 * * *"),  # 6-hour windows, 65 minutes late
        (86400, 600, "10 0 * * *"),
    ],
)
def test_schedule(window: float, lateness: float, schedule: str) -> None:
    assert build_batch_schedule(window, lateness) == schedule


@pytest.mark.parametrize("window", [30, 90, 7 * 60, 5 * 3600])
def test_windows_cron_cannot_express_are_refused(window: float) -> None:
    with pytest.raises(ValueError, match="window"):
        build_batch_schedule(window, 0)
