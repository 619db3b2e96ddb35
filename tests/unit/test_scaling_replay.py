"""The input replay the scaling policy sizes a level from (scaling/replay.py), against closed
forms: a group of capacity c facing rate r > c for t seconds ends with (r - c)·t records
waiting, first in first out, so the last of them waits (r - c)·t / c; a burst that drains
within the replay counts with the oldest record's age when it is processed."""

from __future__ import annotations

import pytest

from metricpipe_operator.scaling.replay import replay_age, replay_level


def steady(rate: float, seconds: float, step: float = 15.0) -> list[tuple[float, float]]:
    return [(i * step, rate) for i in range(round(seconds / step) + 1)]


@pytest.mark.parametrize(
    ("points", "capacity", "age"),
    [
        (steady(1000.0, 600), 1000.0, 0.0),  # carried exactly: nothing waits
        (steady(1500.0, 600), 1000.0, 300.0),  # 500 x 600 / 1,000
        (steady(3000.0, 300), 1000.0, 600.0),  # 2,000 x 300 / 1,000
        # twice the capacity for 60 s, then nothing: 30 s old when the burst ends, drained after
        ([(0.0, 0.0), (60.0, 2000.0), (120.0, 0.0), (180.0, 0.0)], 1000.0, 30.0),
        ([(0.0, 0.0)], 1000.0, 0.0),  # one point: no interval
    ],
)  # fmt: skip
def test_replay_age_is_the_longest_wait_of_a_record(
    points: list[tuple[float, float]], capacity: float, age: float
) -> None:
    assert replay_age(points, capacity) == pytest.approx(age)


@pytest.mark.parametrize(
    ("points", "bound", "upper", "level"),
    [
        (steady(2000.0, 600), 10.0, 32, 2),  # exactly two replicas' worth
        (steady(1500.0, 600), 250.0, 32, 2),  # one replica: 300 s, past the bound
        (steady(1500.0, 600), 350.0, 32, 1),  # ... within this one
        (steady(9000.0, 600), 10.0, 4, 4),  # capped
        ([(0.0, 500.0)], 10.0, 32, 1),  # too few points to say
    ],
)  # fmt: skip
def test_replay_level_is_the_fewest_replicas_within_the_bound(
    points: list[tuple[float, float]], bound: float, upper: int, level: int
) -> None:
    assert replay_level(points, 1000.0, upper, bound) == level
