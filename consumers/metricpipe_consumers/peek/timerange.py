"""Time parameters (pure): RFC 3339 instants or durations back from now, and the range check."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from metricpipe_contract.durations import DURATION_PATTERN, format_duration, parse_duration

from .errors import LimitError, PeekError

DAYS = re.compile(r"^([0-9]+)d$")


@dataclass(frozen=True)
class TimeRange:
    """[start_ms, end_ms): Kafka timestamps in milliseconds."""

    start_ms: int
    end_ms: int

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000


def parse_time(text: str, now_ms: int, what: str) -> int:
    """Milliseconds of `now`, a duration back from now (`90s`, `2h`, `1h30m`, `3d`) or an
    RFC 3339 instant with its zone (`2025-05-01T10:00:00Z`, `...+02:00`)."""
    text = text.strip()
    if text == "now":
        return now_ms
    days = DAYS.fullmatch(text)
    if days:
        return now_ms - int(days.group(1)) * 86_400_000
    if re.fullmatch(DURATION_PATTERN, text):
        return now_ms - round(parse_duration(text) * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PeekError(
            400, f"{what}={text!r} is neither a duration back from now (2h, 30m, 1h30m, 3d) nor "
            "an RFC 3339 time (2025-05-01T10:00:00Z)", parameter=what,
        ) from None  # fmt: skip
    if moment.tzinfo is None:
        raise PeekError(
            400, f"{what}={text!r} has no time zone: end it with Z or +hh:mm", parameter=what
        )
    return int(moment.timestamp() * 1000)


def format_time(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds: the `time` of every record."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def decide_range(
    since: str | None, until: str | None, now_ms: int, *, default_seconds: float,
    max_seconds: float, limit: str,
) -> TimeRange:  # fmt: skip
    """The request's range: `until` defaults to now, `since` to `default_seconds` before
    `until`. Empty or reversed → 400; longer than `max_seconds` → 413 naming `limit`."""
    end = parse_time(until, now_ms, "until") if until else now_ms
    start = parse_time(since, now_ms, "since") if since else end - round(default_seconds * 1000)
    if start >= end:
        raise PeekError(
            400, f"since ({format_time(start)}) is not before until ({format_time(end)})"
        )
    span = (end - start) / 1000
    if span > max_seconds:
        most = format_duration(max_seconds)
        raise LimitError(
            413, f"the time range {format_duration(span)} is longer than the {most} one request "
            "may read", limit=limit, value=format_duration(span), maximum=most,
            hint=f"narrow --since/--until to at most {most}",
        )  # fmt: skip
    return TimeRange(start, end)
