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


def probe_with_readings() -> FreshnessProbe:
    """Readings at 180, 192, 196, 200 s whose frontiers are 170, 175, 178, 182 s."""
    probe = FreshnessProbe("http://unused", "index", window_seconds=60)
    for at, frontier in ((180.0, 170.0), (192.0, 175.0), (196.0, 178.0), (200.0, 182.0)):
        probe.readings.append(judge(Counter({int(frontier): 1}), Counter(), Counter(), at))
    return probe


@pytest.mark.parametrize(
    ("watermark", "agrees"),
    [
        (180.0, True),  # between the frontiers read within 9 s before 200: 175-182
        (174.0, True),  # the oldest of them, less the 1 s band
        (173.0, False),  # staler than the staleness allows
        (183.0, True),  # the newest, plus the band
        (190.0, False),  # claims data the sink did not hold (a too-fresh watermark)
    ],
)
def test_a_watermark_agrees_within_its_staleness(watermark: float, agrees: bool) -> None:
    probe = probe_with_readings()
    assert (probe.frontier_disagreement(200.0, watermark, staleness=9.0, band=1.0) == "") is agrees


@pytest.mark.parametrize(
    ("freshness", "agrees"),
    [
        (18.0, True),  # the truth at 196 s and 200 s
        (16.0, True),  # the truth at 192 s (17 s), within the band
        (22.0, True),  # 18 s at 196 s may have grown to 22 s just before the 200 s reading
        (24.0, False),  # never that stale within the last 9 s: at most 18 + 4, plus the band
        (12.0, False),  # fresher than any moment allowed: at least 17 - 4, less the band
        (2.0, False),  # far fresher than the sink ever was in that span
    ],
)
def test_a_freshness_value_agrees_with_the_truth_at_some_moment(
    freshness: float, agrees: bool
) -> None:
    probe = probe_with_readings()
    assert (probe.disagreement(200.0, freshness, staleness=9.0, band=1.0) == "") is agrees


def draining_probe() -> FreshnessProbe:
    """A backlog drained faster than the probe reads: every 2 s, 100, 76, 53, 31 s behind."""
    probe = FreshnessProbe("http://unused", "index", window_seconds=60)
    for at, freshness in ((300.0, 100.0), (302.0, 76.0), (304.0, 53.0), (306.0, 31.0)):
        probe.readings.append(judge(Counter({int(at - freshness): 1}), Counter(), Counter(), at))
    return probe


@pytest.mark.parametrize(
    ("freshness", "agrees"),
    [
        (64.0, True),  # between the 76 s and 53 s readings: the truth passed through it
        (90.0, True),  # between 100 s and 76 s
        (110.0, False),  # above what 100 s could grow to in 2 s, plus the band
        (20.0, False),  # below what 31 s could have been 2 s earlier, less the band
    ],
)
def test_a_value_between_readings_of_a_fast_drain_agrees(freshness: float, agrees: bool) -> None:
    probe = draining_probe()
    assert (probe.disagreement(306.0, freshness, staleness=10.0, band=1.0) == "") is agrees
