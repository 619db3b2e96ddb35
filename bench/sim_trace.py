"""Arrival traces for the autoscaling simulator: read, cut, rescale, spread over time steps.

A trace is a CSV file with a header row and two columns, `timestamp,count` (any header names:
the real files say `period,count` and `timestamp,value`). `timestamp` is the start of a bucket,
ISO 8601 (`1998-06-27 00:00:00`, `2014-04-10T00:04:00Z`; naive means UTC) or Unix epoch seconds
(milliseconds when larger than 1e11). `count` is the number of records that arrived in that
bucket; they are spread evenly over it. The bucket length is the median spacing of the rows;
a gap (missing rows) has no arrivals, and is reported with the gaps' total length.

A file that cannot be a trace is refused with `TraceError` naming the file and line: no header
row (the first row is data), a row without both columns, a timestamp that is not one, a count
that is not a finite number >= 0, fewer than two rows, a single distinct timestamp, every count
0, or bytes that are not UTF-8 text. Rows with a timestamp seen before are summed into one bucket (a
trace concatenated from overlapping exports counts each record once either way: nothing is
dropped), and the trace's notes say how many and where the first was.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Callable, Iterator
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
    notes: tuple[str, ...] = ()  # what reading it found and did: duplicates summed, gaps

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
    if not math.isfinite(value):
        raise TraceError(f"timestamp {text!r} is not a finite number")
    return value / 1000.0 if value > 1e11 else value


def read_trace(path: Path) -> Trace:
    """The trace in `path`, or TraceError saying which line to change (module docstring)."""
    first_line: dict[float, int] = {}  # timestamp -> the line that brought it
    counts: dict[float, float] = {}
    repeated: list[tuple[int, int]] = []  # (line, the earlier line with its timestamp)
    for number, stamp, count in _read_rows(path):
        if stamp in counts:
            repeated.append((number, first_line[stamp]))
            counts[stamp] += count
        else:
            first_line[stamp], counts[stamp] = number, count
    rows = len(first_line) + len(repeated)
    if rows < 2:
        raise TraceError(f"{path}: {rows} data row(s); a trace needs at least two")
    if len(counts) < 2:
        raise TraceError(f"{path}: all {rows} rows have the same timestamp: no bucket length")
    stamps = np.array(sorted(counts))
    values = np.array([counts[t] for t in stamps])
    if not values.any():
        raise TraceError(f"{path}: every count is 0: no records to simulate")
    spacing = np.diff(stamps)
    bucket = float(np.median(spacing))
    notes = []
    if repeated:
        line, earlier = repeated[0]
        notes.append(f"{len(repeated)} row(s) repeat an earlier timestamp (first: line {line}, "
                     f"as line {earlier}): their counts are summed into one bucket")  # fmt: skip
    gaps = spacing[spacing > 1.5 * bucket] - bucket
    if len(gaps):
        notes.append(f"{len(gaps)} gap(s) without rows, {_duration(float(gaps.sum()))} in all "
                     f"(longest {_duration(float(gaps.max()))}): no arrivals there")  # fmt: skip
    return Trace(path.stem, str(path), float(stamps[0]), stamps - stamps[0], values, bucket,
                 tuple(notes))  # fmt: skip


def _read_rows(path: Path) -> Iterator[tuple[int, float, float]]:
    """(line, epoch seconds, count) per data row; TraceError with file:line otherwise."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TraceError(f"{path}:{line}: not a UTF-8 text file (byte {error.start})") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows, None)
        if header is None:
            raise TraceError(f"{path}: empty; expected a header row `timestamp,count`")
        if len(header) < 2:
            raise TraceError(f"{path}:1: expected a header row of two columns "
                             f"`timestamp,count`, found {header!r}")  # fmt: skip
        if _is_data(header):
            raise TraceError(f"{path}:1: no header row: the first row is data; add a line "
                             "`timestamp,count` before it")  # fmt: skip
        for row in rows:
            if "".join(row).strip():
                yield rows.line_num, *_parse_row(path, rows.line_num, row)
    except csv.Error as error:
        raise TraceError(f"{path}:{rows.line_num}: not CSV ({error})") from None


def _parse_row(path: Path, number: int, row: list[str]) -> tuple[float, float]:
    if len(row) < 2 or not row[0].strip() or not row[1].strip():
        raise TraceError(f"{path}:{number}: expected two columns `timestamp,count`, found {row!r}")
    try:
        stamp = parse_time(row[0])
    except TraceError as error:
        raise TraceError(f"{path}:{number}: {error}") from None
    try:
        count = float(row[1])
    except ValueError:
        raise TraceError(f"{path}:{number}: count {row[1].strip()!r} is not a number") from None
    if not math.isfinite(count) or count < 0:
        raise TraceError(f"{path}:{number}: count {row[1].strip()!r} must be a finite number >= 0")
    return stamp, count


def _is_data(row: list[str]) -> bool:
    try:
        parse_time(row[0])
        float(row[1])
    except (TraceError, ValueError):
        return False
    return True


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


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


def spike_trace(hours: float = 6.0, seed: int = 2301) -> Trace:
    """A low, slightly noisy base (1/32 of the peak: half a replica at the default peak of 16
    replicas) with one 1-minute spike at the peak, half-way through. Per minute, seeded."""
    rng = random.Random(seed)
    minutes = int(hours * 60)
    counts = [1000.0 * rng.uniform(0.9, 1.1) for _ in range(minutes)]
    counts[minutes // 2] = 32_000.0
    return _minutes_trace("spike-1min", "generated: one 1-minute spike on a low base", counts)


# (minutes, level as a share of the peak): steps up and down, held long enough to settle
STEP_LEVELS = ((90, 0.125), (90, 0.5), (60, 0.1875), (90, 1.0), (60, 0.375), (90, 0.0625),
               (60, 0.75), (90, 0.25), (60, 0.625), (60, 0.125))  # fmt: skip


def step_trace(seed: int = 2302) -> Trace:
    """Input that steps up and down between held levels (STEP_LEVELS), with +-10 % per-minute
    noise. Per minute, seeded."""
    rng = random.Random(seed)
    counts = [
        10_000.0 * level * rng.uniform(0.9, 1.1)
        for minutes, level in STEP_LEVELS
        for _ in range(minutes)
    ]
    return _minutes_trace("step-updown", "generated: steps up and down between held levels", counts)


def _minutes_trace(name: str, source: str, counts: list[float]) -> Trace:
    offsets = np.arange(len(counts)) * 60.0
    return Trace(name, source, 0.0, offsets, np.array(counts), 60.0)


# generated traces the simulator runs by name (`--trace spike-1min`) and by default
NAMED_TRACES: dict[str, Callable[[], Trace]] = {
    "spike-1min": spike_trace,
    "step-updown": step_trace,
}
