"""The exporter's log-cache series against the stack's real Redis, read as the exporter's own
ACL user (INFO and PING only): memory as Redis itself reports it, every write a full cache
refuses counted, and a Redis that does not answer (wrong password, nothing listening) is
`metricpipe_cache_up 0` in a scrape that still succeeds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from exporter_harness import Exporter
from helpers import free_port, wait_for
from metricpipe_contract import names
from metricpipe_contract.cache import build_cache_key
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.redis import RedisAccess
from metricpipe_exporters.cache import CacheCollector, build_cache_collector
from metricpipe_exporters.config import ExporterConfig

CLIENT_SLACK = 64 * 2**10  # used_memory moves with the clients' own buffers between two INFOs
MEMBER = "x" * 2**18  # 256 KiB: a few fill the room the test leaves


@pytest.fixture(scope="module")
def access(stack: StackEnv) -> RedisAccess:
    assert stack.redis, ".stack/env lacks METRICPIPE_REDIS_HOST; run 'make stack-up'"
    return stack.redis


def exporter(access: RedisAccess, password: str | None = None, port: int = 0) -> CacheCollector:
    """The exporter's collector as `python -m metricpipe_exporters` builds it."""
    config = ExporterConfig(
        redis_host=access.host,
        redis_port=port or access.port,
        redis_password=SecretStr(password or access.password("exporter")),
    )
    collector = build_cache_collector(config)
    assert collector is not None
    return collector


def scrape(collector: CacheCollector) -> dict[str, float]:
    """A scrape's text, as Prometheus reads it: sample name -> value."""
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    families = text_string_to_metric_families(text)
    return {sample.name: sample.value for family in families for sample in family.samples}


def oom_count(admin: redis.Redis) -> int:
    stats = cast(dict[str, dict[str, int]], admin.info("errorstats"))
    return int(stats.get("errorstat_OOM", {}).get("count", 0))


@pytest.fixture
def cache_key(access: RedisAccess, unique_name: str) -> Iterator[str]:
    key = build_cache_key(unique_name, "app.web")
    yield key
    with access.connect("admin") as admin:
        admin.delete(key)


def test_memory_is_what_redis_reports(access: RedisAccess) -> None:
    collector = exporter(access)
    with access.connect("admin") as admin:
        before = int(admin.info("memory")["used_memory"])
        seen = scrape(collector)
        after = admin.info("memory")
        configured = int(admin.config_get("maxmemory")["maxmemory"])
    assert seen[names.CACHE_UP] == 1
    assert seen[names.CACHE_MEMORY_LIMIT] == int(after["maxmemory"]) == configured > 0
    used = seen[names.CACHE_MEMORY_USED]
    low, high = sorted((before, int(after["used_memory"])))
    assert low - CLIENT_SLACK <= used <= high + CLIENT_SLACK, (before, used, after["used_memory"])
    assert seen[names.CACHE_AOF_LAST_WRITE_OK] == 1  # the stack's cache runs AOF only


def test_refused_writes_count_exactly_the_refusals(access: RedisAccess, cache_key: str) -> None:
    collector = exporter(access)
    refusals = 0
    with access.connect("admin") as admin, access.connect("writer") as writer:
        configured = admin.config_get("maxmemory")["maxmemory"]
        before, counted_before = scrape(collector)[names.CACHE_REFUSED_WRITES], oom_count(admin)
        assert before == counted_before
        try:
            admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) + 2**20)
            for member in range(40):  # 1 MiB of room: full after about four members
                try:
                    writer.zadd(cache_key, {f"{member}{MEMBER}": member})
                except redis.exceptions.OutOfMemoryError:
                    refusals += 1
                    if refusals == 3:
                        break
            full = scrape(collector)
            counted = oom_count(admin)
        finally:
            admin.config_set("maxmemory", configured)
        assert admin.config_get("maxmemory")["maxmemory"] == configured
    assert refusals == 3
    assert full[names.CACHE_REFUSED_WRITES] - before == refusals
    assert counted - counted_before == refusals  # Redis' own count agrees
    assert full[names.CACHE_UP] == 1  # INFO is answered by a full cache


@pytest.mark.parametrize("fault", ["wrong password", "nothing listening"])
def test_a_redis_that_does_not_answer_is_up_0_in_a_scrape_that_succeeds(
    access: RedisAccess, fault: str
) -> None:
    if fault == "wrong password":
        collector = exporter(access, password="not-the-password")
    else:
        collector = exporter(access, port=free_port())
    started = time.monotonic()
    seen = scrape(collector)
    took = time.monotonic() - started
    assert seen == {names.CACHE_UP: 0}
    assert took < 2.5, f"a scrape without Redis took {took:.2f} s"
    assert scrape(exporter(access))[names.CACHE_UP] == 1  # the cache itself is fine


def test_the_stacks_prometheus_scrapes_the_cache_from_an_exporter_process(
    stack: StackEnv, start_exporter: Callable[..., Exporter]
) -> None:
    """The exporter as the tests start it (tests/exporter_harness.py: the stack's Redis as
    the exporter user) serves the cache series, and the stack's Prometheus scrapes them."""
    process = start_exporter(pipelines=[])
    assert [s.value for s in process.families()[names.CACHE_UP].samples] == [1]
    selector = f'{names.CACHE_UP}{{instance="127.0.0.1:{process.port}"}}'

    def scraped() -> list[dict[str, Any]]:
        answer = requests.get(
            f"{stack.prometheus_url}/api/v1/query", params={"query": selector}, timeout=5
        )
        return cast(list[dict[str, Any]], answer.json()["data"]["result"])

    result = wait_for(scraped, 30, f"Prometheus to scrape {selector}")
    assert result[0]["metric"]["job"] == names.EXPORTER_JOB
    assert result[0]["value"][1] == "1"
