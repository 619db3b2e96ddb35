"""The Redis log cache's series: INFO's text into numbers (a table), and what a scrape exposes
when Redis answers and when it does not (pure, a fake INFO)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr

from metricpipe_contract import names
from metricpipe_exporters.cache import CacheCollector, CacheInfo, build_cache_info
from metricpipe_exporters.cache import build_cache_collector as build_collector
from metricpipe_exporters.config import ExporterConfig

# What Redis 7.0 sends for `INFO memory errorstats persistence` (shortened; CRLF line ends).
FULL = (
    "# Memory\r\nused_memory:941744\r\nused_memory_human:919.67K\r\nmaxmemory:2097152\r\n"
    "maxmemory_policy:noeviction\r\n\r\n# Persistence\r\nloading:0\r\naof_enabled:1\r\n"
    "aof_last_write_status:ok\r\n\r\n# Errorstats\r\nerrorstat_NOPERM:count=7\r\n"
    "errorstat_OOM:count=3\r\n"
)
CASES = {
    "all sections": (FULL, CacheInfo(941744, 2097152, 3, True)),
    # Redis lists an error type only once it happened: no OOM yet is 0 refusals
    "no refusal yet": (
        "# Memory\nused_memory:10\nmaxmemory:0\n# Errorstats\nerrorstat_ERR:count=1\n",
        CacheInfo(10, 0, 0, None),
    ),
    "an empty errorstats section": (
        "used_memory:10\nmaxmemory:20\n# Errorstats\n",
        CacheInfo(10, 20, 0, None),
    ),
    "a failed AOF write": (
        "aof_enabled:1\naof_last_write_status:err\n",
        CacheInfo(None, None, 0, False),
    ),
    # with AOF off Redis still says `ok`: not a statement about an AOF
    "AOF off": ("aof_enabled:0\naof_last_write_status:ok\n", CacheInfo(None, None, 0, None)),
    "errorstats with more pairs": (
        "errorstat_OOM:count=12,other=1\n",
        CacheInfo(None, None, 12, None),
    ),
    "a count that is no number": ("errorstat_OOM:count=many\n", CacheInfo(None, None, 0, None)),
    "missing fields": ("# Memory\n\n", CacheInfo(None, None, 0, None)),
    "nothing at all": ("", CacheInfo(None, None, 0, None)),
    "a field that is no number": ("used_memory:lots\nmaxmemory:5\n", CacheInfo(None, 5, 0, None)),
    "a value holding colons": (
        "used_memory:1\nexecutable:/usr/bin/redis:x\n",
        CacheInfo(1, None, 0, None),
    ),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_info_text_into_numbers(text: str, expected: CacheInfo) -> None:
    assert build_cache_info(text) == expected


def scrape(collector: CacheCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def sample_lines(text: str) -> set[str]:
    return {line for line in text.splitlines() if line and not line.startswith("#")}


def test_a_scrape_exposes_the_cache_series() -> None:
    text = scrape(CacheCollector(lambda: FULL, "10.0.0.1:6379"))
    label = '{redis="10.0.0.1:6379"}'
    assert sample_lines(text) == {
        f"{names.CACHE_UP}{label} 1.0",
        f"{names.CACHE_MEMORY_USED}{label} 941744.0",
        f"{names.CACHE_MEMORY_LIMIT}{label} 2.097152e+06",
        f"{names.CACHE_REFUSED_WRITES}{label} 3.0",
        f"{names.CACHE_AOF_LAST_WRITE_OK}{label} 1.0",
    }
    assert f"# TYPE {names.CACHE_REFUSED_WRITES} counter" in text


def test_a_field_redis_did_not_send_has_no_sample() -> None:
    text = scrape(CacheCollector(lambda: "maxmemory:0\n", "r:1"))
    assert sample_lines(text) == {
        f'{names.CACHE_UP}{{redis="r:1"}} 1.0',
        f'{names.CACHE_MEMORY_LIMIT}{{redis="r:1"}} 0.0',
        f'{names.CACHE_REFUSED_WRITES}{{redis="r:1"}} 0.0',
    }


def test_redis_away_is_up_0_and_the_scrape_succeeds() -> None:
    answers: Iterator[str | Exception] = iter(
        [ConnectionError("refused"), FULL, TimeoutError("slow")]
    )

    def fetch() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    collector = CacheCollector(fetch, "r:1")
    assert sample_lines(scrape(collector)) == {f'{names.CACHE_UP}{{redis="r:1"}} 0.0'}
    assert f'{names.CACHE_UP}{{redis="r:1"}} 1.0' in scrape(collector)
    assert sample_lines(scrape(collector)) == {f'{names.CACHE_UP}{{redis="r:1"}} 0.0'}


def test_the_collector_exists_only_when_the_config_names_a_redis() -> None:
    assert build_collector(ExporterConfig(redis_host=None)) is None
    config = ExporterConfig(redis_host="cache.svc", redis_port=6380, redis_password=SecretStr("p"))
    collector = build_collector(config)
    assert collector is not None
    assert collector.address == "cache.svc:6380"
    assert config.redis_username == "metricpipe-exporter"
