"""The demo's run-time burst sizing and the dial that carries it into the replay plan."""

from __future__ import annotations

import pytest

from metricpipe_demo.burst import BurstSizing, decide_burst_factor
from metricpipe_demo.schedule import Burst, BurstDial, iter_burst


class Point:
    def __init__(self, time: float) -> None:
        self.time = time


@pytest.mark.parametrize(
    ("current", "base", "capacity", "seconds", "scaled", "expected"),
    [
        (20, 5.0, 100.0, 0.0, False, 32),  # 1.6 x 100 / 5
        (20, 5.0, 20.0, 0.0, False, 20),  # never below the configured factor
        (20, None, 100.0, 0.0, False, 20),  # base rate unknown: keep
        (20, 5.0, None, 0.0, False, 20),  # capacity unknown: keep
        (20, 5.0, 100.0, 0.0, True, 20),  # scaled up already: keep
        (20, 5.0, 100.0, 30.0, False, 48),  # one patience period without a scale-up: x 1.5
        (20, 5.0, 100.0, 65.0, False, 72),  # two: x 2.25
        (20, 0.5, 1000.0, 0.0, False, 400),  # capped
        (40, 5.0, 100.0, 0.0, False, 40),  # never lowered
    ],
)
def test_decide_burst_factor(
    current: int, base: float | None, capacity: float | None, seconds: float, scaled: bool,
    expected: int,
) -> None:  # fmt: skip
    assert decide_burst_factor(current, base_rate=base, capacity=capacity,
                               burst_seconds=seconds, scaled_up=scaled,
                               sizing=BurstSizing()) == expected  # fmt: skip


def test_the_dial_changes_the_burst_while_the_plan_is_consumed() -> None:
    dial = BurstDial(2)
    burst = Burst(10.0, 100.0, 2, dial)
    plan = iter_burst([Point(t) for t in (0.0, 10.0, 20.0, 30.0)], burst)
    copies = [next(plan) for _ in range(3)]  # 0.0 once, then 10.0 twice
    assert [(when, copy) for when, _, copy in copies] == [(0.0, 0), (10.0, 0), (15.0, 1)]
    dial.set(5)
    following = [(when, copy) for when, _, copy in plan]
    assert following[:5] == [(20.0, 0), (22.0, 1), (24.0, 2), (26.0, 3), (28.0, 4)]
    assert len(following) == 10


def test_a_dial_refuses_a_factor_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BurstDial(3).set(0)
