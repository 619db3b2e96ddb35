"""The input's own variability, measured by replaying it: how many replicas the input of a recent
window (its per-sample rates) would have needed to keep the oldest record's age within a bound.

The scaling policy sizes a group from it (`policy.decide`): a level that absorbs the traffic's
usual ups and downs with its backlog, rather than a fixed headroom over the highest rate seen,
so noisy traffic is neither chased minute by minute nor covered at its peak. Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

Point = tuple[float, float]  # (time, input rate in records/s over the step ending at that time)


def replay_age(points: Sequence[Point], capacity: float) -> float:
    """The greatest age (seconds) a record reaches before it is processed, had a group processing
    `capacity` records/s met this input from no backlog, first in first out; records still
    waiting at the end count with the wait the backlog ahead of them gives them. Each rate holds
    from the previous point's time to its own."""
    arrived = [0.0]  # records arrived by each point
    for (before, _), (at, rate) in pairwise(points):
        arrived.append(arrived[-1] + max(0.0, rate) * (at - before))
    backlog, oldest, worst = 0.0, 0, 0.0
    for i in range(1, len(points)):
        step = points[i][0] - points[i - 1][0]
        backlog = max(0.0, backlog + arrived[i] - arrived[i - 1] - capacity * step)
        if backlog <= 0.0:
            oldest = i
            continue
        done = arrived[i] - backlog  # records processed: the oldest waiting one arrived after
        while oldest + 1 < i and arrived[oldest + 1] <= done:
            oldest += 1
        span = arrived[oldest + 1] - arrived[oldest]
        share = (done - arrived[oldest]) / span if span > 0 else 0.0
        came = points[oldest][0] + share * (points[oldest + 1][0] - points[oldest][0])
        worst = max(worst, points[i][0] - came)
    if backlog > 0.0 and capacity > 0.0:  # still waiting at the end: served in order, later
        end, done = points[-1][0], arrived[-1] - backlog
        for j in range(oldest + 1, len(points)):
            worst = max(worst, end - points[j][0] + (arrived[j] - done) / capacity)
    return worst


def replay_level(points: Sequence[Point], per_replica: float, upper: int, bound: float) -> int:
    """The fewest replicas (from the mean input's floor, at most `upper`) whose replay of
    `points` keeps the age within `bound` seconds; 1 with fewer than two points."""
    if len(points) < 2 or per_replica <= 0:
        return 1
    mean = sum(rate for _, rate in points[1:]) / (len(points) - 1)
    n = min(upper, max(1, math.floor(mean / per_replica)))
    while n < upper and replay_age(points, per_replica * n) > bound:
        n += 1
    return n
