"""Whether the Redis log cache takes its writes (pure): CacheWritable on redis-store pipelines.

Redis runs with maxmemory and noeviction: when full it refuses writes (OOM), which Fluentd keeps
in its buffer and retries. The exporter counts the refusals (`metricpipe_cache_refused_writes_
total`, from Redis' errorstat_OOM) and reports used and maximum memory; two queries per cycle,
only when a pipeline reads the cache, give every redis-store pipeline the same condition (the
cache's Redis is the operator's one `METRICPIPE_REDIS_HOST`).
"""

from __future__ import annotations

from metricpipe_contract import names

from ..reconcile.status import Condition
from .collect import MetricValues

CACHE_WINDOW = "5m"
CACHE_QUERIES: dict[str, str] = {
    "refused_writes": f"sum by (redis) (increase({names.CACHE_REFUSED_WRITES}[{CACHE_WINDOW}]))",
    "used_ratio": f"max by (redis) ({names.CACHE_MEMORY_USED} / ({names.CACHE_MEMORY_LIMIT} > 0))",
}


def decide_cache_writable(values: MetricValues | None, unavailable: str = "") -> Condition:
    """CacheWritable from the cache queries' answers (None: Prometheus did not answer)."""
    if values is None:
        return Condition("CacheWritable", None, "MetricsUnavailable",
                         unavailable or "Prometheus did not answer")  # fmt: skip
    refused = max(values.get("refused_writes", {}).values(), default=None)
    ratio = max(values.get("used_ratio", {}).values(), default=None)
    used = f" (memory {ratio:.0%} of maxmemory)" if ratio is not None else ""
    if refused is None:
        return Condition(
            "CacheWritable", None, "NoCacheMetrics",
            "the exporter reports no Redis cache metrics: give it the cache's Redis "
            "(METRICPIPE_REDIS_HOST and the exporter user's Secret)",
        )  # fmt: skip
    if refused > 0:
        return Condition(
            "CacheWritable", False, "WritesRefused",
            f"Redis refused {refused:.0f} cache writes in the last {CACHE_WINDOW} for lack of "
            f"memory{used}: Fluentd keeps them in its buffer and retries, nothing is dropped "
            "while its buffer lasts; raise Redis' maxmemory or shorten the cache's retention "
            "(METRICPIPE_CACHE_RETENTION_SECONDS)",
        )  # fmt: skip
    return Condition("CacheWritable", True, "Writable",
                     f"Redis took every cache write in the last {CACHE_WINDOW}{used}")  # fmt: skip
