"""Re-time historical records onto the demo's wall clock (pure: no I/O, no clock reads).

A source instant `s` is due on the demo clock at `demo_start + (s - source_start) / speed`: at
speed 60 one source hour passes in one demo minute, and a 1 h event-time window of the source
is a 60 s window on the demo clock. Records keep everything but their timestamp, which is
rewritten to the demo instant, so event time is "now" when a record is produced and the
pipeline's freshness is measured against the real clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import orjson

MICROSECOND = timedelta(microseconds=1)
CLF_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
CLF_MONTH_NUMBERS = {name.encode(): number for number, name in enumerate(CLF_MONTHS, start=1)}
# `[17/May/2015:10:05:03 +0000]`: the first bracketed text of this exact shape in a line.
CLF_TIMESTAMP = re.compile(
    rb"\[(?P<day>\d{2})/(?P<month>[A-Z][a-z]{2})/(?P<year>\d{4})"
    rb":(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2}) (?P<zone>[+-]\d{4})\]"
)


@dataclass(frozen=True)
class Retiming:
    """Maps source time onto demo time.

    source_start: the source instant that is due at demo_start (timezone-aware).
    demo_start:   the demo-clock instant of source_start, usually "now" (timezone-aware).
    speed:        source seconds per demo second (60: one source hour per demo minute).
    """

    source_start: datetime
    demo_start: datetime
    speed: float
    _source_epoch: float = field(init=False, repr=False, compare=False)
    _demo_epoch: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.source_start.tzinfo is None or self.demo_start.tzinfo is None:
            raise ValueError("source_start and demo_start must be timezone-aware (tzinfo=UTC)")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(
                f"speed must be a positive number of source seconds per demo second, "
                f"not {self.speed}"
            )
        object.__setattr__(self, "_source_epoch", self.source_start.timestamp())
        object.__setattr__(self, "_demo_epoch", self.demo_start.timestamp())

    # -- datetimes (exact to the microsecond) -----------------------------------------------

    def demo_time(self, source_time: datetime) -> datetime:
        """When `source_time` is due on the demo clock."""
        return self.demo_start + self.demo_duration(source_time - self.source_start)

    def source_time(self, demo_time: datetime) -> datetime:
        """The source instant that is due at `demo_time` (the inverse of demo_time)."""
        return self.source_start + self.source_duration(demo_time - self.demo_start)

    def demo_duration(self, source_duration: timedelta) -> timedelta:
        """How long a source duration lasts on the demo clock (1 h at speed 60: 60 s)."""
        return timedelta(microseconds=round((source_duration // MICROSECOND) / self.speed))

    def source_duration(self, demo_duration: timedelta) -> timedelta:
        """How much source time passes during a demo duration (60 s at speed 60: 1 h)."""
        return timedelta(microseconds=round((demo_duration // MICROSECOND) * self.speed))

    # -- UNIX seconds (the schedule's fast path for hundreds of thousands of records) -------

    def demo_epoch(self, source_epoch: float) -> float:
        """demo_time in UNIX seconds."""
        return self._demo_epoch + (source_epoch - self._source_epoch) / self.speed

    def source_epoch(self, demo_epoch: float) -> float:
        """source_time in UNIX seconds."""
        return self._source_epoch + (demo_epoch - self._demo_epoch) * self.speed


def build_retiming(source_start: float, demo_start: datetime, speed: float) -> Retiming:
    """A Retiming from a source start in UNIX seconds."""
    return Retiming(datetime.fromtimestamp(source_start, UTC), demo_start, speed)


def format_rfc3339(when: datetime) -> str:
    """`2026-03-01T10:00:05.250Z`: UTC, milliseconds (truncated, never after `when`)."""
    utc = when.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def build_rtt_payload(probe: str, rtt: float, when: datetime) -> bytes:
    """The JSON record of one RTT point at its re-timed instant, the shape the avg-rtt
    example documents: {"time": RFC 3339, "probe": id, "rtt": ms (-3/-4: lost ping)}."""
    return orjson.dumps({"time": format_rfc3339(when), "probe": probe, "rtt": rtt})


def parse_clf_time(line: bytes) -> datetime:
    """The timestamp of an Apache common/combined log line, timezone-aware."""
    match = CLF_TIMESTAMP.search(line)
    if match is None:
        raise ValueError(f"no [dd/Mon/yyyy:hh:mm:ss +zzzz] timestamp in {line[:120]!r}")
    month = CLF_MONTH_NUMBERS.get(match["month"])
    if month is None:
        raise ValueError(f"unknown month {match['month']!r} in {line[:120]!r}")
    return datetime(
        int(match["year"]),
        month,
        int(match["day"]),
        int(match["hour"]),
        int(match["minute"]),
        int(match["second"]),
        tzinfo=_parse_zone(match["zone"]),
    )


def format_clf_timestamp(when: datetime, zone: timezone = UTC) -> bytes:
    """`[17/May/2015:10:05:03 +0000]` for `when` in `zone` (whole seconds, truncated). The
    month names are fixed English, whatever the locale."""
    local = when.astimezone(zone)
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return (
        f"[{local.day:02d}/{CLF_MONTHS[local.month - 1]}/{local.year:04d}"
        f":{local.hour:02d}:{local.minute:02d}:{local.second:02d} {sign}{hours:02d}{rest:02d}]"
    ).encode()


def rewrite_clf_timestamp(line: bytes, when: datetime) -> bytes:
    """The same log line with its timestamp set to `when` (in the line's own zone offset);
    every other byte of the line is kept as it was."""
    match = CLF_TIMESTAMP.search(line)
    if match is None:
        raise ValueError(f"no [dd/Mon/yyyy:hh:mm:ss +zzzz] timestamp in {line[:120]!r}")
    stamp = format_clf_timestamp(when, _parse_zone(match["zone"]))
    return line[: match.start()] + stamp + line[match.end() :]


def _parse_zone(text: bytes) -> timezone:
    sign = -1 if text[:1] == b"-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[3:5])))
