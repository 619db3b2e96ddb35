"""Where the demo's records come from: the shared real data when present, else the generator.

The real files are read with metricpipe_devstack.datasets (the one parser of the RTT archive's
two timestamp formats). Neither real source is in time order, so both are sorted here:

- the RTT archive is one CSV per probe, read probe by probe (and inside a file 4 points go
  backwards in time), and a gzipped tar cannot be read at 50 places at once, so there are no
  per-probe streams to merge: all 408,087 points are collected as small tuples and sorted.
  Measured on the 2-core machine: 4.9 s wall (3.9 s CPU; up to 18 s while other tests load
  the machine), almost all of it in the reader's timestamp parsing, the sort 0.1-0.3 s;
  memory +66 MB peak RSS (54 MB by tracemalloc). Payloads are not built here: the schedule
  renders them one at a time (all 408,087, 27.5 MB in all, in 1.5 s, never held at once).
- the access log (10,000 lines) is grouped by client, not by time: it is sorted by timestamp,
  keeping file order among lines of the same second.
"""

from __future__ import annotations

import bisect
from datetime import datetime
from pathlib import Path
from typing import TypeVar, cast

from metricpipe_devstack.datasets import ACCESS_LOG, RTT_ARCHIVE, iter_rtt_records, require

from .generator import SyntheticSettings, build_synthetic_sources
from .retime import parse_clf_time
from .schedule import HOUR, LogLine, RttPoint, Source

T = TypeVar("T", RttPoint, LogLine)
SYNTHETIC_DEFAULT_HOURS = 24.0  # the generator is endless: how much it makes when asked for all


def load_rtt_points(
    data_dir: Path, hours: float | None = None, start: float | None = None
) -> list[RttPoint]:
    """The real RTT points in time order from `start` (UNIX seconds; None: the earliest) for
    `hours` (None: to the end). The 50 traces are staggered segments of about two weeks: the
    first day has 2 probes, mid-December about 20."""
    points = [
        RttPoint(
            datetime.fromisoformat(str(record["time"])).timestamp(),
            str(record["probe"]),
            cast(float, record["rtt"]),  # the reader builds it as a float
        )
        for record in iter_rtt_records(data_dir)
    ]
    points.sort(key=lambda point: point.time)
    return _cut(points, hours, start)


def load_access_lines(data_dir: Path, hours: float | None = None) -> list[LogLine]:
    """The real access log lines (raw bytes, line endings stripped) in time order, cut `hours`
    after the earliest (None: all). Lines without a readable timestamp are left out."""
    lines = []
    with require(data_dir, ACCESS_LOG).open("rb") as handle:
        for raw in handle:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                when = parse_clf_time(line)
            except ValueError:
                continue
            lines.append(LogLine(when.timestamp(), line))
    lines.sort(key=lambda line: line.time)  # stable: file order within a second
    return _cut(lines, hours)


def _cut(records: list[T], hours: float | None, start: float | None = None) -> list[T]:
    """The time-ordered records in [start, start + hours), in place."""
    if start is not None:
        del records[: bisect.bisect_left(records, start, key=_time_of)]
    if hours is not None and records:
        end = (records[0].time if start is None else start) + hours * HOUR
        del records[bisect.bisect_left(records, end, key=_time_of) :]
    return records


def _time_of(record: RttPoint | LogLine) -> float:
    return record.time


def load_demo_sources(
    data_dir: Path,
    hours: float | None,
    synthetic: SyntheticSettings | None = None,
    rtt_start: float | None = None,
) -> tuple[Source[RttPoint], Source[LogLine]]:
    """The RTT and access-log sources: real where the shared data has them, synthetic (and
    saying so in their origin, with Source.synthetic set) where it does not. Each starts at
    its first record, the real RTT points at `rtt_start` if given (UNIX seconds)."""
    fallback_rtt, fallback_http = build_synthetic_sources(
        synthetic or SyntheticSettings(),
        SYNTHETIC_DEFAULT_HOURS if hours is None else hours,
        data_dir,
    )
    rtt: Source[RttPoint] = fallback_rtt
    http: Source[LogLine] = fallback_http
    if (data_dir / RTT_ARCHIVE).exists():
        points = load_rtt_points(data_dir, hours, rtt_start)
        if points:
            probes = len({point.probe for point in points})
            rtt = Source(
                points[0].time if rtt_start is None else rtt_start,
                points,
                f"RTT points: real, {len(points):,} of {probes} RIPE Atlas probes "
                f"({data_dir / RTT_ARCHIVE})",
            )
    if (data_dir / ACCESS_LOG).exists():
        lines = load_access_lines(data_dir, hours)
        if lines:
            http = Source(
                lines[0].time,
                lines,
                f"access log: real, {len(lines):,} Apache combined lines ({data_dir / ACCESS_LOG})",
            )
    return rtt, http
