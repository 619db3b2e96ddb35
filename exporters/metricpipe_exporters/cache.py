"""The Redis log cache's memory and refused writes, read with INFO at every scrape.

Redis runs the cache with `maxmemory` and `noeviction`: when full it refuses writes with an
OOM error (Fluentd keeps the chunk in its buffer and retries it) and counts each refusal in
`INFO errorstats` as `errorstat_OOM:count=N`. The exporter's Redis user may run INFO and PING
only. Parsing INFO's text is pure (`build_cache_info`); the collector asks Redis at scrape
time, with a short timeout and no retry, and answers `metricpipe_cache_up 0` when Redis does
not: a scrape never fails because the cache is away.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import redis
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector
from redis.backoff import NoBackoff
from redis.retry import Retry

from metricpipe_contract import names

from .config import ExporterConfig

log = structlog.get_logger("metricpipe.exporter")

INFO_SECTIONS: Final = ("memory", "errorstats", "persistence")  # one INFO, Redis >= 7
OOM_ERROR: Final = "errorstat_OOM"  # the error prefix Redis answers a write with when full


@dataclass(frozen=True)
class CacheInfo:
    """What one INFO answer says; None where its field is missing."""

    used_bytes: int | None  # used_memory
    limit_bytes: int | None  # maxmemory (0: no limit)
    refused_writes: int  # errorstat_OOM's count; Redis lists an error only once it happened
    aof_last_write_ok: bool | None  # aof_last_write_status; None when AOF is off


def _fields(text: str) -> dict[str, str]:
    """INFO's `key:value` lines; section headers (`# Memory`) and blank lines skipped."""
    fields = {}
    for line in text.splitlines():
        key, colon, value = line.strip().partition(":")
        if colon and not key.startswith("#"):
            fields[key] = value
    return fields


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _error_count(value: str | None) -> int:
    """`count=3` (errorstats' value format, comma-separated pairs) -> 3; 0 when absent."""
    pairs = dict(part.partition("=")[::2] for part in (value or "").split(","))
    return _int(pairs.get("count")) or 0


def build_cache_info(text: str) -> CacheInfo:
    """Pure: the numbers of INFO memory, errorstats and persistence (as Redis sends the text)."""
    fields = _fields(text)
    aof = fields.get("aof_last_write_status") if fields.get("aof_enabled") == "1" else None
    return CacheInfo(
        used_bytes=_int(fields.get("used_memory")),
        limit_bytes=_int(fields.get("maxmemory")),
        refused_writes=_error_count(fields.get(OOM_ERROR)),
        aof_last_write_ok=None if aof is None else aof == "ok",
    )


def build_cache_client(config: ExporterConfig) -> redis.Redis:
    """A client of the exporter's Redis user that answers INFO as Redis' own text, and fails
    fast (no retry, `redis_timeout_seconds`) so a scrape is never held up for long."""
    password = config.redis_password.get_secret_value() if config.redis_password else None
    client = redis.Redis(
        host=config.redis_host or "",
        port=config.redis_port,
        username=config.redis_username,
        password=password,
        socket_timeout=config.redis_timeout_seconds,
        socket_connect_timeout=config.redis_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    client.set_response_callback("INFO", lambda response, **_: response)
    return client


def fetch_info_text(client: redis.Redis) -> str:
    """INFO's text of the cache's sections, unparsed."""
    return str(client.info(*INFO_SECTIONS))  # the raw reply: see build_cache_client


class CacheCollector(PromCollector):
    """The cache's series, labelled `redis="<host>:<port>"`, read when Prometheus scrapes."""

    def __init__(self, fetch_info: Callable[[], str], address: str) -> None:
        self.fetch_info = fetch_info
        self.address = address
        self.up: bool | None = None  # the last scrape's answer, to log changes only

    def _read(self) -> CacheInfo | None:
        try:
            info = build_cache_info(self.fetch_info())
        except Exception as error:  # Redis away, refused login, timeout: up 0, never a failure
            if self.up is not False:
                log.warning("log cache unreadable", redis=self.address, error=str(error)[:300])
            self.up = False
            return None
        if self.up is False:
            log.info("log cache readable again", redis=self.address)
        self.up = True
        return info

    def collect(self) -> Iterator[Metric]:
        info, labels = self._read(), [self.address]

        def gauge(name: str, text: str, value: float | None) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, text, labels=["redis"])
            if value is not None:
                family.add_metric(labels, value)
            return family

        answered = 0 if info is None else 1
        yield gauge(names.CACHE_UP, "1 when the Redis log cache answered INFO.", answered)
        if info is None:
            return
        yield gauge(names.CACHE_MEMORY_USED, "Redis used_memory.", info.used_bytes)
        yield gauge(names.CACHE_MEMORY_LIMIT, "Redis maxmemory (0: no limit).", info.limit_bytes)
        refused = CounterMetricFamily(
            names.CACHE_REFUSED_WRITES,
            "Writes Redis refused for lack of memory (errorstat_OOM); Fluentd retries them.",
            labels=["redis"],
        )
        refused.add_metric(labels, info.refused_writes)
        yield refused
        aof = info.aof_last_write_ok
        yield gauge(
            names.CACHE_AOF_LAST_WRITE_OK,
            "1 when Redis' last append-only-file write succeeded (absent with AOF off).",
            None if aof is None else int(aof),
        )


def build_cache_collector(config: ExporterConfig) -> CacheCollector | None:
    """The cache collector when the configuration names a Redis, else None."""
    if not config.redis_host:
        return None
    client = build_cache_client(config)
    return CacheCollector(
        lambda: fetch_info_text(client), f"{config.redis_host}:{config.redis_port}"
    )
