"""The pure parts of bench/batch_modes.py: the hour of data, the hour it is moved to, when a
CronJob fires, the comparison of the three modes' final documents and the table.

No I/O and no clock reads here: tests/unit/test_batch_modes_data.py plays them by hand.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from metricpipe_demo.retime import parse_clf_time, rewrite_clf_timestamp

HOUR_MS = 3_600_000
MINUTE_MS = 60_000
# Fluentd time = event time + this much, by the record's place (0-1.5 s: a shipper's flush)
ARRIVAL_STEP_MS, ARRIVAL_STEPS = 250, 7


@dataclass(frozen=True)
class Event:
    """One record as Fluentd sends it: the line (its timestamp rewritten to `event_ms`) and
    its Fluentd time, which is its Kafka timestamp and its score in the cache."""

    event_ms: int
    arrival_ms: int
    line: str

    @property
    def record(self) -> dict[str, str]:
        return {"message": self.line}


def line_ms(line: str) -> int | None:
    """The request time of an Apache line in ms, None when it has no readable one."""
    try:
        return int(parse_clf_time(line.encode()).timestamp() * 1000)
    except ValueError:
        return None


def pick_busiest_hour(lines: Iterable[str]) -> tuple[int, list[str]]:
    """(start ms, its lines in log order) of the UTC hour with the most lines (the earliest of
    equals); lines without a readable time belong to no hour."""
    by_hour: dict[int, list[str]] = {}
    for line in lines:
        when = line_ms(line)
        if when is not None:
            by_hour.setdefault(when // HOUR_MS * HOUR_MS, []).append(line)
    if not by_hour:
        raise ValueError("no line with a readable [dd/Mon/yyyy:hh:mm:ss +zzzz] time")
    sizes = Counter({start: len(found) for start, found in by_hour.items()})
    start = min(sizes, key=lambda hour: (-sizes[hour], hour))
    return start, by_hour[start]


def decide_bench_hour(now_ms: int, lateness_ms: int) -> int:
    """Start of the newest whole hour whose end + lateness + a minute has passed at `now_ms`:
    closed, its closing records (at end + lateness) not in the future, and recent enough for
    the cache's retention (3 h by default) to keep it."""
    return (now_ms - lateness_ms - MINUTE_MS) // HOUR_MS * HOUR_MS - HOUR_MS


def build_hour_events(
    lines: Sequence[str], source_start_ms: int, target_start_ms: int, copies: int
) -> list[Event]:
    """The hour's lines moved from the hour at `source_start_ms` to the one at
    `target_start_ms`, `copies` times, in Fluentd-time order; each copy's line keeps its text
    but for the timestamp, and arrives 0-1.5 s after its event time."""
    shift = target_start_ms - source_start_ms
    events = []
    for index, line in enumerate(lines):
        when = line_ms(line)
        if when is None or when // HOUR_MS * HOUR_MS != source_start_ms:
            raise ValueError(f"line {index} is not in the hour starting at {source_start_ms}")
        moved = rewrite_clf_timestamp(line.encode(), _utc(when + shift)).decode()
        for copy in range(copies):
            delay = (index + copy) % ARRIVAL_STEPS * ARRIVAL_STEP_MS
            events.append(Event(when + shift, when + shift + delay, moved))
    return sorted(events, key=lambda event: event.arrival_ms)


def build_closing_events(line: str, end_ms: int, lateness_ms: int, count: int) -> list[Event]:
    """`count` records of the next hour at end + lateness (one for each partition): in live
    traffic the first such records move the stream consumer's watermark past the window's
    end + lateness, which is when it finalises the window. Outside every batch run's read
    range of the window (Fluentd time at or after end + lateness)."""
    at = end_ms + lateness_ms
    moved = rewrite_clf_timestamp(line.encode(), _utc(at)).decode()
    return [Event(at, at, moved) for _ in range(count)]


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _cron_field(text: str, every: int) -> set[int]:
    return set(range(every)) if text == "*" else {int(part) for part in text.split(",")}


def next_cron_fire_ms(schedule: str, after_ms: int) -> int:
    """The first minute at or after `after_ms` that a schedule of the form
    build_batch_schedule writes ("M H * * *", lists or "*" in the first two fields, UTC)
    fires at."""
    fields = schedule.split()
    if len(fields) != 5 or fields[2:] != ["*", "*", "*"]:
        raise ValueError(f"not a minute/hour schedule: {schedule!r}")
    minutes, hours = _cron_field(fields[0], 60), _cron_field(fields[1], 24)
    at = math.ceil(after_ms / MINUTE_MS) * MINUTE_MS
    for _ in range(48 * 60):
        moment = _utc(at)
        if moment.minute in minutes and moment.hour in hours:
            return at
        at += MINUTE_MS
    raise ValueError(f"{schedule!r} does not fire within two days of {after_ms}")


def window_results(
    finals: Iterable[Mapping[str, Any]], window_start_ms: int
) -> dict[str, tuple[int, float]]:
    """group key -> (count, value) of the final documents of one window."""
    return {
        str(doc.get("group_key", "")): (int(doc["count"]), float(doc["value"]))
        for doc in finals
        if int(doc["window_start_ms"]) == window_start_ms and doc.get("final", True)
    }


def compare_modes(results: Mapping[str, Mapping[str, tuple[int, float]]]) -> list[str]:
    """What differs between the modes' results of one window (nothing: an empty list). A
    mode without a final document differs."""
    problems = [f"{mode}: no final document" for mode, found in results.items() if not found]
    modes = sorted(results)
    for mode in modes[1:]:
        if results[mode] != results[modes[0]]:
            problems.append(f"{mode} {dict(results[mode])} != {modes[0]} {dict(results[modes[0]])}")
    return problems


def per_million(seconds: float, records: int) -> float:
    return seconds / records * 1_000_000 if records else math.nan


HEADER = ("mode", "records", "CPU s", "CPU s / 1M rec", "delay s", "= rule/schedule s",
          "+ measured s")  # fmt: skip


def build_rows(
    records: int, cpu: Mapping[str, float], delays: Mapping[str, tuple[float, float]]
) -> list[list[Any]]:
    """A row per mode: records, CPU s, CPU s per million records, delay = fixed (the
    watermark rule's lateness or the CronJob's schedule) + measured."""
    return [
        [mode, records, cpu[mode], per_million(cpu[mode], records), sum(delays[mode]),
         *delays[mode]]
        for mode in cpu
    ]  # fmt: skip


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Right-aligned columns (the first left-aligned), numbers with thousands separators."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    cells = [list(header), *[[cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        padded = [c.rjust(w) for c, w in zip(row, widths, strict=True)]
        padded[0] = row[0].ljust(widths[0])
        lines.append("  ".join(padded))
    return lines
