"""bench/batch_modes_data.py, the pure parts of the three-mode benchmark: the busiest hour,
the hour it is moved to, its events and closing records, when the CronJob fires, the
comparison of the modes' final documents and the table. Expected values written by hand."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import batch_modes_data as data

HOUR = 3_600_000
MINUTE = 60_000


def ms(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def line(stamp: str, path: str = "/") -> str:
    return f'1.2.3.4 - - [{stamp} +0000] "GET {path} HTTP/1.1" 200 5 "-" "agent"'


LINES = [
    line("19/May/2015:18:59:59", "/a"),
    line("19/May/2015:19:05:00", "/b"),
    "a cut line without a time",
    line("19/May/2015:19:59:59", "/c"),
    line("20/May/2015:01:00:00", "/d"),
    line("20/May/2015:01:30:00", "/e"),
]


def test_the_busiest_hour_is_the_earliest_of_equals_and_keeps_log_order() -> None:
    start, lines = data.pick_busiest_hour(LINES)
    assert start == ms(2015, 5, 19, 19)
    assert lines == [LINES[1], LINES[3]]  # 01:00 has two too, but comes later


def test_no_line_with_a_time_is_refused() -> None:
    with pytest.raises(ValueError, match="no line with a readable"):
        data.pick_busiest_hour(["nothing here", ""])


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (ms(2026, 12, 6, 10, 5), ms(2026, 12, 6, 8)),  # 09:00-10:00 closes for good at 10:11
        (ms(2026, 12, 6, 10, 10, 59), ms(2026, 12, 6, 8)),
        (ms(2026, 12, 6, 10, 11), ms(2026, 12, 6, 9)),
        (ms(2026, 12, 6, 10, 59), ms(2026, 12, 6, 9)),
    ],
)
def test_the_bench_hour_is_closed_with_its_closing_records_in_the_past(
    now: int, expected: int
) -> None:
    assert data.decide_bench_hour(now, 10 * MINUTE) == expected


def test_hour_events_are_moved_copied_and_ordered_by_fluentd_time() -> None:
    source, target = ms(2015, 5, 19, 19), ms(2026, 12, 6, 1)
    events = data.build_hour_events([LINES[1], LINES[3]], source, target, copies=3)
    assert len(events) == 6
    first, last = ms(2026, 12, 6, 1, 5), ms(2026, 12, 6, 1, 59, 59)
    # (line index + copy) % 7 * 250 ms after the event time
    assert [(e.event_ms, e.arrival_ms) for e in events] == [
        (first, first), (first, first + 250), (first, first + 500),
        (last, last + 250), (last, last + 500), (last, last + 750),
    ]  # fmt: skip
    assert events[0].line == line("06/Dec/2026:01:05:00", "/b")
    assert events[-1].record == {"message": line("06/Dec/2026:01:59:59", "/c")}


def test_a_line_outside_the_source_hour_is_refused() -> None:
    with pytest.raises(ValueError, match="line 1 is not in the hour"):
        data.build_hour_events([LINES[1], LINES[0]], ms(2015, 5, 19, 19), 0, copies=1)


def test_closing_events_sit_at_end_plus_lateness() -> None:
    end = ms(2026, 12, 6, 2)
    events = data.build_closing_events(LINES[1], end, 10 * MINUTE, count=6)
    assert len(events) == 6
    assert {(e.event_ms, e.arrival_ms) for e in events} == {(end + 10 * MINUTE,) * 2}
    assert events[0].line == line("06/Dec/2026:02:10:00", "/b")


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("10 * * * *", ms(2026, 12, 6, 2), ms(2026, 12, 6, 2, 10)),
        ("10 * * * *", ms(2026, 12, 6, 2, 10), ms(2026, 12, 6, 2, 10)),  # at: the same minute
        ("10 * * * *", ms(2026, 12, 6, 2, 10, 1), ms(2026, 12, 6, 3, 10)),
        ("5,20,35,50 * * * *", ms(2026, 12, 6, 2, 15), ms(2026, 12, 6, 2, 20)),
        ("30 1,7,13,19 * * *", ms(2026, 12, 6, 20), ms(2026, 12, 7, 1, 30)),  # the next day
    ],
)
def test_the_cronjob_fires_at_the_first_minute_of_its_schedule(
    schedule: str, after: int, expected: int
) -> None:
    assert data.next_cron_fire_ms(schedule, after) == expected


def test_other_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="not a minute/hour schedule"):
        data.next_cron_fire_ms("10 * 1 * *", 0)


def final(start: int, group: str, count: int, value: float) -> dict[str, object]:
    return {"window_start_ms": start, "group_key": group, "count": count, "value": value,
            "final": True}  # fmt: skip


def test_window_results_keep_the_one_window() -> None:
    docs = [final(HOUR, "", 13_600, 13_600.0), final(2 * HOUR, "", 6, 6.0)]
    assert data.window_results(docs, HOUR) == {"": (13_600, 13_600.0)}


def test_equal_modes_compare_clean_and_a_difference_or_a_missing_final_is_named() -> None:
    same = {"": (13_600, 13_600.0)}
    assert data.compare_modes({"stream": same, "kafka batch": same, "redis batch": same}) == []
    problems = data.compare_modes({"stream": same, "kafka batch": {"": (13_599, 13_599.0)},
                              "redis batch": {}})  # fmt: skip
    assert problems == [
        "redis batch: no final document",
        "redis batch {} != kafka batch {'': (13599, 13599.0)}",
        "stream {'': (13600, 13600.0)} != kafka batch {'': (13599, 13599.0)}",
    ]


def test_rows_add_the_fixed_and_the_measured_delay() -> None:
    rows = data.build_rows(20_000, {"stream": 1.0, "kafka batch": 15.0},
                      {"stream": (600.0, 6.0), "kafka batch": (600.0, 12.5)})  # fmt: skip
    assert rows == [
        ["stream", 20_000, 1.0, 50.0, 606.0, 600.0, 6.0],
        ["kafka batch", 20_000, 15.0, 750.0, 612.5, 600.0, 12.5],
    ]


def test_the_table_aligns_its_columns() -> None:
    assert data.format_table(
        ["mode", "records", "s"], [["stream", 13_600, 1.25], ["b", 5, 12.0]]
    ) == [
        "mode    records     s",
        "stream   13,600   1.2",
        "b             5  12.0",
    ]
