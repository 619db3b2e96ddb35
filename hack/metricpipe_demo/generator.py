"""A deterministic synthetic stand-in for the shared data, used when it is absent.

Same seed, same records, on every machine. The records have the shape of the real ones (RIPE
Atlas RTT points every ~4 minutes per probe with rare lost pings and occasional level shifts;
Apache combined lines with a mostly-200 status mix and some 5xx), but they are invented: the
caller must say so (SYNTHETIC_NOTICE).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from .retime import format_clf_timestamp
from .schedule import HOUR, LogLine, RttPoint, Source

SYNTHETIC_NOTICE = "{data_dir} not found: using the synthetic generator"
RTT_START = datetime(2016, 10, 1, tzinfo=UTC)  # the calendar quarter of the real RTT archive
HTTP_START = datetime(2015, 5, 17, 10, 5, 3, tzinfo=UTC)  # the real access log's first line
PING_INTERVAL = 240.0  # seconds between pings of one probe, as in the real archive
LOST_PING_SHARE = 0.002  # the real archive: 692 of 408,087 points
LEVEL_SHIFT_SHARE = 0.002  # chance per ping that the probe's route (base RTT) changes
HTTP_STATUSES = ((200, 0.90), (304, 0.045), (404, 0.025), (500, 0.015), (503, 0.015))
HTTP_PATHS = (
    "/",
    "/index.html",
    "/blog/tags/puppet?flav=rss20",
    "/presentations/logstash-monitorama-2013/images/kibana-search.png",
    "/style2.css",
    "/favicon.ico",
    "/reset.css",
)
HTTP_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:27.0) Gecko/20100101 Firefox/27.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    'Tiny Tiny RSS/1.11 (http://tt-rss.org/) \\"quoted\\"',
    "-",
)


@dataclass(frozen=True)
class SyntheticSettings:
    """seed: the one source of randomness; probes: RTT series; lines_per_hour: mean Apache
    request rate (the real log has about 120 per hour)."""

    seed: int = 7
    probes: int = 50
    lines_per_hour: float = 120.0


def describe_synthetic(data_dir: object) -> str:
    """The line the caller prints when it falls back to the generator."""
    return SYNTHETIC_NOTICE.format(data_dir=data_dir)


def iter_synthetic_rtt(settings: SyntheticSettings, hours: float) -> Iterator[RttPoint]:
    """RTT points of `settings.probes` probes for `hours` from RTT_START, in time order."""
    start = RTT_START.timestamp()
    end = start + hours * HOUR
    series = [
        _iter_probe_pings(random.Random(f"{settings.seed}/probe/{index}"), 10000 + index, start)
        for index in range(settings.probes)
    ]
    for point in heapq.merge(*series, key=lambda point: point.time):
        if point.time >= end:
            return
        yield point


def _iter_probe_pings(rng: random.Random, probe_id: int, start: float) -> Iterator[RttPoint]:
    probe = str(probe_id)
    base = rng.uniform(5.0, 250.0)
    when = start + rng.uniform(0.0, PING_INTERVAL)
    while True:
        if rng.random() < LEVEL_SHIFT_SHARE:
            base = max(1.0, base * rng.uniform(0.6, 1.6))
        if rng.random() < LOST_PING_SHARE:
            rtt = rng.choice((-3.0, -4.0))
        else:
            rtt = round(base + rng.expovariate(1.0 / max(0.5, base * 0.05)), 3)
        yield RttPoint(float(round(when)), probe, rtt)
        when += PING_INTERVAL + rng.uniform(-5.0, 5.0)


def iter_synthetic_access_lines(settings: SyntheticSettings, hours: float) -> Iterator[LogLine]:
    """Apache combined lines (Poisson arrivals, whole-second timestamps) for `hours` from
    HTTP_START, in time order."""
    rng = random.Random(f"{settings.seed}/http")
    statuses = [status for status, _ in HTTP_STATUSES]
    weights = [weight for _, weight in HTTP_STATUSES]
    start = HTTP_START.timestamp()
    end = start + hours * HOUR
    when = start
    while True:
        second = float(int(when))
        if second >= end:
            return
        status = rng.choices(statuses, weights)[0]
        host = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        size = "-" if status == 304 else str(rng.randrange(200, 250_000))
        stamp = format_clf_timestamp(datetime.fromtimestamp(second, UTC)).decode()
        line = (
            f'{host} - - {stamp} "GET {rng.choice(HTTP_PATHS)} HTTP/1.1" {status} {size} '
            f'"-" "{rng.choice(HTTP_AGENTS)}"'
        )
        yield LogLine(second, line.encode())
        when += rng.expovariate(settings.lines_per_hour / HOUR)


def build_synthetic_sources(
    settings: SyntheticSettings, hours: float, data_dir: object
) -> tuple[Source[RttPoint], Source[LogLine]]:
    """Both synthetic sources (lazy: records are generated as the plan is consumed)."""
    notice = describe_synthetic(data_dir)
    rtt = Source(
        RTT_START.timestamp(),
        iter_synthetic_rtt(settings, hours),
        f"RTT points: synthetic, {settings.probes} probes, seed {settings.seed} ({notice})",
        synthetic=True,
    )
    http = Source(
        HTTP_START.timestamp(),
        iter_synthetic_access_lines(settings, hours),
        f"access log: synthetic, ~{settings.lines_per_hour:g} lines/h with some 5xx, "
        f"seed {settings.seed} ({notice})",
        synthetic=True,
    )
    return rtt, http
