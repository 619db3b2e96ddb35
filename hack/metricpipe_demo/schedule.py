"""The replay plan: records of several sources, re-timed and merged into one time-ordered
stream of emissions (demo due time, topic key, payload bytes), with an optional burst.

Pure and streaming: each source's records arrive as an iterator already in source-time order,
payloads are built one emission at a time as the stream is consumed, and the sources are
merged with heapq.merge, so a plan never holds more than one pending emission per source.

The burst is synthetic amplification of real records: between two source times every record
is emitted `factor` times, the copies spread evenly over the gap to the source's next record,
so the same demo interval carries `factor` times the records. Copy 0 is the real record; each
copy carries its own (re-timed) event time, so no copy is ever produced before it is due.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, NamedTuple, Protocol, TypeVar

from .retime import Retiming, build_retiming, build_rtt_payload, rewrite_clf_timestamp

RTT = "rtt"  # topic key of RIPE Atlas RTT points (JSON records)
HTTP = "http"  # topic key of Apache combined log lines (raw text)
HOUR = 3600.0


class RttPoint(NamedTuple):
    time: float  # source instant, UNIX seconds
    probe: str
    rtt: float  # milliseconds; -3 and -4 mark lost pings


class LogLine(NamedTuple):
    time: float  # source instant, UNIX seconds
    line: bytes  # the raw line, without its line ending


class Emission(NamedTuple):
    due: float  # when to produce it: demo clock, UNIX seconds
    topic_key: str  # RTT or HTTP; the replayer maps it to a Kafka topic
    payload: bytes
    key: bytes | None  # Kafka message key (the probe id for RTT points)
    source_time: float  # the emission's instant in its source's own calendar, UNIX seconds
    copy: int  # 0: the real record; 1..factor-1: burst copies of it


class Timed(Protocol):
    @property
    def time(self) -> float: ...


R = TypeVar("R", bound=Timed)
Render = Callable[[R, datetime], tuple[bytes | None, bytes]]


class BurstDial:
    """A burst factor that can change while the plan is being replayed (the demo sizes its
    burst from the capacity the ResourceManager measures, which is only known at run time)."""

    def __init__(self, factor: int) -> None:
        self.factor = 1
        self.set(factor)

    def set(self, factor: int) -> None:
        if factor < 1:
            raise ValueError(f"burst factor must be at least 1, not {factor}")
        self.factor = factor  # one attribute store: safe to read from the replay thread


@dataclass(frozen=True)
class Burst:
    """Records at source times in [start, end) (UNIX seconds) are emitted `factor` times
    (or, with a dial, the dial's factor at the moment they are planned)."""

    start: float
    end: float
    factor: int
    dial: BurstDial | None = None

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"burst factor must be at least 1, not {self.factor}")
        if self.end < self.start:
            raise ValueError("burst end must not be before its start")

    @property
    def current_factor(self) -> int:
        return self.factor if self.dial is None else self.dial.factor


@dataclass(frozen=True)
class Source(Generic[R]):
    """One source of records.

    start:     the source instant replayed at the demo's start (UNIX seconds), usually the
               time of its first record.
    records:   an iterable in source-time order.
    origin:    where the records come from, in words (printed by the CLI).
    synthetic: True when the records come from the generator, not the real data.
    """

    start: float
    records: Iterable[R]
    origin: str
    synthetic: bool = False


@dataclass(frozen=True)
class PlanSettings:
    """How to replay.

    speed:             source seconds per demo second (60: a source hour per demo minute).
    hours:             source hours replayed from each source's start; None: everything.
    burst_start_hours: where the burst begins, in source hours from each source's start.
    burst_hours:       how long the burst lasts, in source hours (0: no burst).
    burst_factor:      how many times each record in the burst is emitted (1: no burst).
    burst_dial:        if given, the burst's factor is read from it as the plan is consumed.
    """

    speed: float = 60.0
    hours: float | None = None
    burst_start_hours: float = 0.0
    burst_hours: float = 0.0
    burst_factor: int = 1
    burst_dial: BurstDial | None = None

    def decide_burst(self, source_start: float) -> Burst | None:
        if (self.burst_factor == 1 and self.burst_dial is None) or self.burst_hours <= 0:
            return None
        start = source_start + self.burst_start_hours * HOUR
        return Burst(start, start + self.burst_hours * HOUR, self.burst_factor, self.burst_dial)

    def decide_end(self, source_start: float) -> float | None:
        return None if self.hours is None else source_start + self.hours * HOUR


def iter_burst(records: Iterable[R], burst: Burst | None) -> Iterator[tuple[float, R, int]]:
    """(emission source time, record, copy number) in source-time order. Inside the burst,
    records that share a time are emitted together, `factor` rounds of them spread evenly
    over the gap to the next distinct time (capped at the burst's end)."""
    if burst is None or (burst.dial is None and burst.factor == 1):
        for record in records:
            yield record.time, record, 0
        return
    groups = itertools.groupby(records, key=lambda record: record.time)
    current = next(groups, None)
    while current is not None:
        time, members = current[0], list(current[1])
        following = next(groups, None)
        if burst.start <= time < burst.end:
            end = burst.end if following is None else min(following[0], burst.end)
            factor = burst.current_factor
            step = (end - time) / factor
            for copy in range(factor):
                for record in members:
                    yield time + copy * step, record, copy
        else:
            for record in members:
                yield time, record, 0
        current = following


def iter_in_order(records: Iterable[R], origin: str) -> Iterator[R]:
    """The records, checked to be in source-time order (a silent disorder would break the
    merge and the pacing)."""
    previous = float("-inf")
    for record in records:
        if record.time < previous:
            raise ValueError(f"{origin}: records are not in time order; sort them first")
        previous = record.time
        yield record


def iter_window(records: Iterable[R], start: float, end: float | None) -> Iterator[R]:
    """The records of a time-ordered iterable with start <= time < end."""
    inside = (record for record in records if record.time >= start)
    if end is None:
        return iter(inside)
    return itertools.takewhile(lambda record: record.time < end, inside)


def iter_emissions(
    records: Iterable[R],
    *,
    topic_key: str,
    retiming: Retiming,
    burst: Burst | None,
    render: Render[R],
) -> Iterator[Emission]:
    """One source's emissions in due order, payloads rendered at their re-timed instant."""
    for when, record, copy in iter_burst(records, burst):
        due = retiming.demo_epoch(when)
        key, payload = render(record, datetime.fromtimestamp(due, UTC))
        yield Emission(due, topic_key, payload, key, when, copy)


def iter_merged(streams: Sequence[Iterable[Emission]]) -> Iterator[Emission]:
    """Emissions of several due-ordered streams in one due order (ties: stream order)."""
    return heapq.merge(*streams, key=lambda emission: emission.due)


def render_rtt(point: RttPoint, when: datetime) -> tuple[bytes | None, bytes]:
    return point.probe.encode(), build_rtt_payload(point.probe, point.rtt, when)


def render_http(line: LogLine, when: datetime) -> tuple[bytes | None, bytes]:
    return None, rewrite_clf_timestamp(line.line, when)


def iter_demo_plan(
    rtt: Source[RttPoint] | None,
    http: Source[LogLine] | None,
    *,
    demo_start: datetime,
    settings: PlanSettings,
    dials: Mapping[str, BurstDial] | None = None,
) -> Iterator[Emission]:
    """The demo's whole plan: both sources from their own start, re-timed onto demo_start,
    cut after settings.hours, burst applied (each source's factor from its dial in `dials`,
    keyed RTT/HTTP, when given), merged in due order."""
    dials = dials or {}

    def with_dial(key: str) -> PlanSettings:
        return dataclasses.replace(settings, burst_dial=dials[key]) if key in dials else settings

    streams: list[Iterator[Emission]] = []
    if rtt is not None:
        streams.append(_iter_source(rtt, RTT, render_rtt, demo_start, with_dial(RTT)))
    if http is not None:
        streams.append(_iter_source(http, HTTP, render_http, demo_start, with_dial(HTTP)))
    return iter_merged(streams)


def _iter_source(
    source: Source[R],
    topic_key: str,
    render: Render[R],
    demo_start: datetime,
    settings: PlanSettings,
) -> Iterator[Emission]:
    records = iter_in_order(source.records, source.origin)
    return iter_emissions(
        iter_window(records, source.start, settings.decide_end(source.start)),
        topic_key=topic_key,
        retiming=build_retiming(source.start, demo_start, settings.speed),
        burst=settings.decide_burst(source.start),
        render=render,
    )


def build_plan_summary(
    sources: Sequence[Source[RttPoint] | Source[LogLine]],
    *,
    demo_start: datetime,
    settings: PlanSettings,
) -> list[str]:
    """What a plan does, in lines for people."""
    lines = []
    for source in sources:
        since = datetime.fromtimestamp(source.start, UTC)
        span = "to its end" if settings.hours is None else f"for {settings.hours:g} h"
        lines.append(f"{source.origin}: from {since:%Y-%m-%d %H:%M:%S}Z {span}")
    lines.append(
        f"times re-timed onto the demo clock, which starts at {demo_start:%Y-%m-%d %H:%M:%S}Z: "
        f"speed {settings.speed:g}x, one source hour every {HOUR / settings.speed:g} s"
    )
    if settings.hours is not None:
        minutes = settings.hours * HOUR / settings.speed / 60
        lines.append(f"{settings.hours:g} source hours take {minutes:.1f} demo minutes")
    if settings.decide_burst(0.0) is not None:
        start = settings.burst_start_hours * HOUR / settings.speed
        end = start + settings.burst_hours * HOUR / settings.speed
        lines.append(
            f"burst: source hours {settings.burst_start_hours:g} to "
            f"{settings.burst_start_hours + settings.burst_hours:g} (demo seconds "
            f"{start:.0f} to {end:.0f}) emit every record {settings.burst_factor}x; "
            "the copies are synthetic amplification of the real records"
        )
    return lines
