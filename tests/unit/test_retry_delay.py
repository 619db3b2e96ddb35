"""The operator's retry back-off: expected values written out by hand from the rule in the
module's docstring (ceiling = min(max, min * 2^attempt); delay in [ceiling/2, ceiling], at
least min)."""

from __future__ import annotations

import random

import pytest

from metricpipe_contract.retry import decide_retry_delay


@pytest.mark.parametrize(
    ("attempt", "draw", "delay"),
    [(0, 0.0, 5.0), (0, 0.99, 5.0),  # the first retry: the minimum
     (1, 0.0, 5.0), (1, 0.5, 7.5), (2, 0.0, 10.0), (2, 0.5, 15.0),
     (3, 0.25, 25.0), (4, 0.0, 40.0), (5, 0.0, 60.0), (5, 0.999, 119.94),
     (6, 0.0, 60.0), (40, 0.5, 90.0),  # the ceiling stays at the maximum
     (-1, 0.5, 5.0)],
)  # fmt: skip
def test_back_off_doubles_to_the_maximum_with_jitter(
    attempt: int, draw: float, delay: float
) -> None:
    assert decide_retry_delay(attempt, 5.0, 120.0, draw) == pytest.approx(delay)


def test_pipelines_failing_together_do_not_retry_together() -> None:
    rng = random.Random(7)
    delays = [decide_retry_delay(4, 5.0, 120.0, rng.random()) for _ in range(200)]
    assert min(delays) >= 40.0
    assert max(delays) <= 80.0
    assert len({round(d) for d in delays}) > 20  # spread over the window, not one instant
