"""Arrival traces for the autoscaling simulator: read, cut, rescale, spread over time steps.

A trace is a CSV file with a header row and two columns, `timestamp,count` (any header names:
the real files say `period,count` and `timestamp,value`). `timestamp` is the start of a bucket,
ISO 8601 (`1998-06-27 00:00:00`, `2014-04-10T00:04:00Z`; naive means UTC) or Unix epoch seconds
(milliseconds when larger than 1e11). `count` is the number of records that arrived in that
bucket; they are spread evenly over it. The bucket length is the median spacing of the rows;
a gap (missing rows) has no arrivals.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

# The WorldCup98 trace is 87 days; by default the simulator replays the knockout stage, from
# the round of 16 (27 June 1998) to the day after the final (12 July): every match-day burst,
# including the trace's peak minute (7 July), with quiet days between.
DEFAULT_WINDOWS = {"worldcup98_requests_per_minute": ("1998-06-27T00:00:00", 384.0)}


class TraceError(Exception):
    """A trace file the simulator cannot read; the message says what to change."""


@dataclass(frozen=True)
class Trace:
    name: str
    source: str  # the file, or a sentence saying it is generated
    start: float  # epoch seconds of the first bucket (before time scaling)
    offsets: np.ndarray  # bucket starts, seconds after `start` (after time scaling)
    counts: np.ndarray  # records per bucket (after amplitude scaling)
    bucket_seconds: float  # after time scaling

    @property
    def duration(self) -> float:
        return float(self.offsets[-1]) + self.bucket_seconds

    @property
    def peak_rate(self) -> float:
        return float(self.counts.max()) / self.bucket_seconds

    @property
    def total(self) -> float:
        return float(self.counts.sum())


def parse_time(text: str) -> float:
    """Epoch seconds from ISO 8601 or a number (epoch seconds, or milliseconds above 1e11)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as error:
            raise TraceError(f"timestamp {text!r} is neither ISO 8601 nor epoch seconds") from error
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.timestamp()
    return value / 1000.0 if value > 1e11 else value


def read_trace(path: Path) -> Trace:
    times: list[float] = []
    counts: list[float] = []
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None or len(header) < 2:
            raise TraceError(f"{path}: expected a header row `timestamp,count`")
        for number, row in enumerate(rows, start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                times.append(parse_time(row[0]))
                counts.append(float(row[1]))
            except (IndexError, ValueError, TraceError) as error:
                raise TraceError(
                    f"{path}:{number}: {error or 'expected timestamp,count'}"
                ) from error
    if len(times) < 2:
        raise TraceError(f"{path}: needs at least two rows")
    order = np.argsort(np.array(times), kind="stable")
    stamps = np.array(times)[order]
    values = np.maximum(np.array(counts)[order], 0.0)
    spacing = np.diff(stamps)
    bucket = float(np.median(spacing[spacing > 0]))
    return Trace(path.stem, str(path), float(stamps[0]), stamps - stamps[0], values, bucket)


def cut(trace: Trace, start: str | None, hours: float | None) -> Trace:
    """The part of the trace from `start` (ISO or epoch; default: its beginning) for `hours`."""
    begin = parse_time(start) if start else trace.start
    end = begin + hours * 3600.0 if hours else math.inf
    absolute = trace.offsets + trace.start
    keep = (absolute >= begin) & (absolute < end)
    if not keep.any():
        raise TraceError(f"{trace.name}: no rows between {start} and {hours} h later")
    first = float(absolute[keep][0])
    return replace(trace, start=first, offsets=absolute[keep] - first, counts=trace.counts[keep])


def rescale(trace: Trace, time_scale: float, amplitude: float) -> Trace:
    """Replay `time_scale` times faster (same records, shorter buckets), `amplitude` x records."""
    return replace(
        trace,
        offsets=trace.offsets / time_scale,
        bucket_seconds=trace.bucket_seconds / time_scale,
        counts=trace.counts * amplitude,
    )


def step_arrivals(trace: Trace, step: float) -> list[float]:
    """Records arriving in each step [k*step, (k+1)*step), each bucket spread evenly."""
    ends = np.minimum(trace.offsets + trace.bucket_seconds, np.append(trace.offsets[1:], np.inf))
    xs = np.empty(2 * len(ends))
    xs[0::2], xs[1::2] = trace.offsets, ends
    cumulative = np.concatenate(([0.0], np.cumsum(trace.counts)))
    ys = np.empty_like(xs)
    ys[0::2], ys[1::2] = cumulative[:-1], cumulative[1:]
    steps = math.ceil(trace.duration / step)
    edges = np.interp(np.arange(steps + 1) * step, xs, ys)
    return [float(x) for x in np.maximum(np.diff(edges), 0.0)]


def generated_trace(days: float = 3.0, seed: int = 1998) -> Trace:
    """A synthetic per-minute trace (daily cycle, noise, a few bursts): used only when no real
    trace is available, and the simulator says so."""
    rng = random.Random(seed)
    minutes = int(days * 1440)
    bursts = [(rng.randrange(minutes), rng.randrange(20, 120), rng.uniform(3, 8)) for _ in range(6)]
    counts = []
    for m in range(minutes):
        daily = 1.0 + 0.8 * math.sin(2 * math.pi * (m / 1440.0 - 0.3))
        value = daily * rng.uniform(0.85, 1.15)
        for at, length, height in bursts:
            if at <= m < at + length:
                value *= height
        counts.append(1000.0 * value)
    offsets = np.arange(minutes) * 60.0
    return Trace(
        "generated", "generated (no real trace found)", 0.0, offsets, np.array(counts), 60.0
    )
