"""Which window a batch run computes when it is not told: the newest one closed for good."""

from __future__ import annotations

import pytest

from metricpipe_consumers.batch import decide_due_windows, decide_last_closed_window

H, M = 3_600_000, 60_000


@pytest.mark.parametrize(
    ("now", "lateness", "expected"),
    [
        (10 * H + 10 * M, 10 * M, 9 * H),  # the CronJob's own minute: 09:00-10:00 is closed
        (10 * H + 9 * M, 10 * M, 8 * H),  # a minute early: 09:00-10:00 may still get records
        (10 * H + 59 * M, 10 * M, 9 * H),  # a late start still picks the same window
        (10 * H, 0, 9 * H),
    ],
)
def test_newest_window_whose_end_plus_lateness_passed(
    now: int, lateness: int, expected: int
) -> None:
    start = decide_last_closed_window(now, H, lateness)
    assert start == expected
    assert start + H + lateness <= now < start + 2 * H + lateness


@pytest.mark.parametrize(
    ("progress", "first", "now", "limit", "expected"),
    [
        (None, None, 12 * H + 10 * M, 24, []),  # new pipeline, empty topic: nothing yet
        (None, 9 * H + 30 * M, 12 * H + 10 * M, 24, [9 * H, 10 * H, 11 * H]),  # from its oldest
        # its oldest arrived 5 min into 09:00: it may belong to 08:00-09:00 (10 min lateness)
        (None, 9 * H + 5 * M, 11 * H + 10 * M, 24, [8 * H, 9 * H, 10 * H]),
        (11 * H, 9 * H, 12 * H + 10 * M, 24, [11 * H]),  # on schedule: progress wins
        (12 * H, None, 12 * H + 10 * M, 24, []),  # ran already (a retry after success): nothing
        (8 * H, None, 12 * H + 10 * M, 24, [8 * H, 9 * H, 10 * H, 11 * H]),  # missed runs
        (8 * H, None, 12 * H + 10 * M, 2, [8 * H, 9 * H]),  # at most `limit`; the rest next run
        (8 * H, None, 12 * H + 5 * M, 24, [8 * H, 9 * H, 10 * H]),  # 11:00-12:00 still open
    ],
)
def test_due_windows_make_up_missed_runs(
    progress: int | None, first: int | None, now: int, limit: int, expected: list[int]
) -> None:
    assert (
        decide_due_windows(progress, first, now, window_ms=H, lateness_ms=10 * M, limit=limit)
        == expected
    )
