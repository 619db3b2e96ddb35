"""A full Redis log cache on the real stack: writes are refused, never dropped, and it shows.

The Fluentd stand-in writes a redis-store pipeline's tag into the stack's Redis while its
maxmemory is set just above what it holds. Redis refuses the chunks (OOM, noeviction); the
stand-in keeps and retries them. The exporter counts the refusals, the stack's Prometheus
evaluates the project's rules (LogCacheRefusingWrites fires) and the operator's
ResourceManager sets CacheWritable False (WritesRefused) on the pipeline. Once room is made,
every record sent is in the cache exactly once: nothing acknowledged or retried is missing,
nothing counted twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import requests
from kubernetes import client

from helpers import wait_for
from metricpipe_contract.cache import UID_FIELD
from metricpipe_demo.cache_writer import CacheWriter
from metricpipe_devstack.env import StackEnv
from metricpipe_operator.reconcile.cache_route import CacheRoute, build_cache_fluent_conf
from pipelines import condition, create_pipeline, get_pipeline

TAG = "full.access"
SPEC: dict[str, Any] = {
    "mode": "batch",
    "source": {"tag": TAG, "store": "redis"},
    "metric": {"aggregation": "count", "window": "1h", "allowedLateness": "10m"},
}
RECORDS = 3_000
OPERATOR_ENV = {"METRICPIPE_SCALING_INTERVAL_SECONDS": "5"}


@pytest.fixture
def tight_memory(stack: StackEnv) -> Iterator[Any]:
    """Redis' maxmemory as the admin sets it; the configured value restored afterwards."""
    assert stack.redis is not None
    admin = stack.redis.connect("admin")
    configured = cast(dict[str, str], admin.config_get("maxmemory"))["maxmemory"]
    try:
        yield admin
    finally:
        admin.config_set("maxmemory", configured)


def firing(stack: StackEnv, alert: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{stack.prometheus_url}/api/v1/alerts", timeout=5).json()
    return [a for a in answer["data"]["alerts"]
            if a["labels"].get("alertname") == alert and a["state"] == "firing"]  # fmt: skip


def test_a_full_cache_refuses_shows_and_loses_nothing(
    stack: StackEnv, kube: client.ApiClient, namespace: str, start_operator: Any,
    start_exporter: Any, tight_memory: Any,
) -> None:  # fmt: skip
    assert stack.redis is not None
    start_exporter(namespace=namespace)
    start_operator(namespace, METRICPIPE_PROMETHEUS_URL=stack.prometheus_url,
                   METRICPIPE_REDIS_HOST=stack.redis.pod_host,
                   METRICPIPE_REDIS_PORT=str(stack.redis.port), **OPERATOR_ENV)  # fmt: skip
    create_pipeline(kube, namespace, "requests", SPEC)
    route = CacheRoute(namespace, TAG, stack.redis.host, stack.redis.port, 3 * 3600)
    admin = tight_memory
    try:
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used + 256 * 1024)
        with CacheWriter(build_cache_fluent_conf(route), stack.redis.password_files["writer"],
                         chunk_records=200) as writer:  # fmt: skip
            now = time.time()
            sent = [{"message": f"line {i}", "seq": i} for i in range(RECORDS)]
            writer.send_many((TAG, now + i / 1000, record) for i, record in enumerate(sent))
            refusals = writer.wait_refusals(1, timeout=60)
            assert "OOM" in refusals[0].error, refusals[0]
            stalled = writer.acknowledged
            assert stalled < RECORDS
            shown = wait_for(
                lambda: _writable_false(kube, namespace), timeout=90,
                what="CacheWritable False on the pipeline",
            )  # fmt: skip
            message = condition(shown, "CacheWritable")["message"]
            assert "refused" in message
            assert "retries" in message
            alerts = wait_for(lambda: firing(stack, "LogCacheRefusingWrites"), timeout=90,
                              what="LogCacheRefusingWrites firing")  # fmt: skip
            assert alerts[0]["labels"]["redis"]
            assert writer.acknowledged == stalled or writer.acknowledged < RECORDS
            admin.config_set("maxmemory", 0)  # room made: the retries go through
            summary = writer.close(timeout=120)
        assert summary.records == RECORDS
        members = admin.zrange(route.key, 0, -1)
        decoded = [json.loads(m) for m in members]
        assert sorted(d["seq"] for d in decoded) == list(range(RECORDS))  # each once
        assert len({d[UID_FIELD] for d in decoded}) == RECORDS
    finally:
        admin.delete(route.key)


def _writable_false(kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    pipeline = get_pipeline(kube, namespace, "requests")
    found = condition(pipeline, "CacheWritable")
    return (
        pipeline if (found.get("status"), found.get("reason")) == ("False", "WritesRefused") else {}
    )
