"""The outside freshness probe's judgement, on hand-made counts."""

from __future__ import annotations

from collections import Counter

import pytest

from freshness_probe import FreshnessProbe, judge


def test_the_frontier_is_the_oldest_second_not_fully_in_the_sink() -> None:
    sent = Counter({100: 3, 101: 2, 102: 4, 103: 1})
    partials = Counter({100: 3, 101: 1, 102: 4})  # 101 misses a record, 103 is not in
    reading = judge(sent, partials, Counter(), now=110.0)
    assert reading.frontier == 101
    assert reading.freshness == 9.0
    assert reading.excess == ()


def test_finals_count_and_everything_in_means_fresh() -> None:
    sent = Counter({100: 3, 101: 2})
    reading = judge(sent, Counter({101: 2}), Counter({100: 3}), now=110.0)
    assert (reading.frontier, reading.freshness) == (110.0, 0.0)


def test_more_in_the_sink_than_sent_is_reported() -> None:
    reading = judge(Counter({100: 3}), Counter({100: 4}), Counter(), now=110.0)
    assert reading.excess == (100,)


@pytest.mark.parametrize(
    ("value", "agrees"),
    [
        (20.0, True),  # claims 180: between the frontiers read in the window (175, 182)
        (25.0, True),  # 175: the oldest frontier of the window
        (27.0, False),  # 173: staler than the truth allows
        (18.0, True),  # 182: the newest frontier
        (10.0, False),  # 190: claims data the sink did not hold (a too-fresh watermark)
    ],
)
def test_a_source_agrees_within_its_staleness(value: float, agrees: bool) -> None:
    probe = FreshnessProbe("http://unused", "index", window_seconds=60)
    for at, frontier in ((180.0, 170.0), (192.0, 175.0), (196.0, 178.0), (200.0, 182.0)):
        probe.readings.append(judge(Counter({int(frontier): 1}), Counter(), Counter(), at))
    assert (probe.disagreement(200.0, value, staleness=9.0, band=1.0) == "") is agrees
