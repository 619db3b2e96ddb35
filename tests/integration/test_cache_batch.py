"""Batch over the Redis log cache on real data, real Redis, real Elasticsearch.

The shared Apache log, retimed so that its 84 hours end an hour ago, goes into the cache the way
Fluentd with fluent-plugin-redis-store writes it (the named stand-in, cache_writer.py, running
the route the operator renders). Two batch pipelines over the same tag — hourly requests, and
hourly 5xx responses — are computed by the job the CronJob runs (`CacheBatchJob`), the second
created after the data arrived: it computes every cached hour at once. Every final document
equals the independent oracle's (tests/oracle.py), computed from the members read back from
Redis as records scored by their Fluentd time. A run killed half-way and run again gives
identical documents; the hours before the cache's trim horizon are reported, not published.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from cache_data import (
    HOUR_MS,
    cached_records,
    comparable,
    delete_cache_keys,
    hours_of,
    retime,
)
from consumers import Pipeline, assert_matches_reference, sink_results
from metricpipe_consumers.cachebatch import CacheBatchJob, CacheDeadLetters, fetch_cache_rows
from metricpipe_consumers.document import PipelineDocument
from metricpipe_consumers.engine import SparkAggregator
from metricpipe_consumers.sink import build_sink
from metricpipe_contract.cache import (
    CACHE_KEY_PREFIX,
    DEAD_LETTER_KEY_PREFIX,
    build_cache_key,
    build_dead_letter_key,
)
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_demo.cache_writer import CacheWriter
from metricpipe_devstack.env import StackEnv
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.cache_route import CacheRoute, build_cache_fluent_conf
from metricpipe_operator.reconcile.consumer import build_pipeline_document
from shared_data import access_log_lines, rtt_records

TAG = "edge.access"
RETENTION_SECONDS = 200 * 3600  # the replay spans 84 hours: all of it stays cached
EVENT_TIME = {"field": "time", "format": "clf"}
SPECS: dict[str, dict[str, Any]] = {
    "requests": {
        "mode": "batch",
        "source": {"tag": TAG, "format": "apache_combined", "store": "redis"},
        "metric": {"aggregation": "count", "eventTime": EVENT_TIME, "window": "1h",
                   "allowedLateness": "10m"},
    },
    "rtt": {  # RIPE Atlas pings as JSON: average RTT per probe per hour, lost pings left out
        "mode": "batch",
        "source": {"tag": "atlas", "store": "redis",
                   "filters": [{"field": "rtt", "matches": "^[0-9]"}]},
        "metric": {"aggregation": "avg", "valueField": "rtt", "groupBy": ["probe"],
                   "window": "1h", "allowedLateness": "10m"},
    },
    "errors": {
        "mode": "batch",
        "source": {"tag": TAG, "format": "apache_combined", "store": "redis",
                   "filters": [{"field": "status", "matches": "^5"}]},
        "metric": {"aggregation": "count", "eventTime": EVENT_TIME, "window": "1h",
                   "allowedLateness": "10m"},
    },
}  # fmt: skip


def make_cache_pipeline(
    stack: StackEnv, tmp_path: Path, namespace: str, name: str, backend: str = "elasticsearch",
    retention_seconds: int = RETENTION_SECONDS,
) -> Pipeline:  # fmt: skip
    assert stack.redis is not None
    applied = {**SPECS.get(name, SPECS["requests"]), "sink": {"backend": backend}}
    spec = MetricPipelineSpec.model_validate(applied)
    config = OperatorConfig(kafka_bootstrap=stack.kafka_bootstrap,
                            elasticsearch_url=stack.elasticsearch_url,
                            opensearch_url=stack.opensearch_url, redis_host=stack.redis.host,
                            redis_port=stack.redis.port,
                            cache_retention_seconds=retention_seconds)  # fmt: skip
    ref = PipelineRef(namespace, name, "uid")
    document = build_pipeline_document(ref, spec, spec.topic_name(namespace, name), config)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document))
    sink = build_sink(backend, document["sink"]["endpoint"], document["sink"]["index"], None, None)
    return Pipeline(name, spec, path, sink, document, applied)


def build_job(
    stack: StackEnv, pipeline: Pipeline, engine: SparkAggregator, now_ms: int
) -> CacheBatchJob:
    """The job `python -m metricpipe_consumers batch` builds for a redis-store pipeline, as
    the batch ACL user (reads the cache, writes its dead-letter hash, nothing else)."""
    assert stack.redis is not None
    document = PipelineDocument.model_validate(pipeline.document)
    assert document.cache is not None
    client = stack.redis.connect("batch", decode_responses=False)
    letters = CacheDeadLetters(client, document.cache.dead_letter_key, document.pipeline.key)
    return CacheBatchJob(document, pipeline.sink, engine, letters, None, client=client,
                         now_ms=now_ms)  # fmt: skip


@pytest.fixture
def cache_namespace(stack: StackEnv, unique_name: str) -> Any:
    if stack.redis is None:
        pytest.skip("the stack has no Redis (make stack-up)")
    namespace = f"it-{unique_name}"[:63]
    yield namespace
    delete_cache_keys(stack, namespace)


def test_two_pipelines_over_one_cache_equal_the_reference(
    stack: StackEnv, tmp_path: Path, cache_namespace: str
) -> None:
    assert stack.redis is not None
    now_ms = int(time.time() * 1000)
    end_ms = now_ms // HOUR_MS * HOUR_MS - HOUR_MS  # every window closed, lateness passed
    events = retime(access_log_lines(stack.data_dir), end_ms)
    route = CacheRoute(cache_namespace, TAG, stack.redis.host, stack.redis.port,
                       RETENTION_SECONDS)  # fmt: skip
    requests = make_cache_pipeline(stack, tmp_path, cache_namespace, "requests")
    engine = SparkAggregator("local[1]")
    try:
        with CacheWriter(build_cache_fluent_conf(route),
                         stack.redis.password_files["writer"]) as writer:  # fmt: skip
            writer.send_many((TAG, score, {"message": line}) for score, line in events)
            summary = writer.close()
        assert summary.records == len(events)
        records = cached_records(stack, route.key)
        assert len(records) == len(events)  # identical lines stay apart (the UID)
        first = _run_all(build_job(stack, requests, engine, now_ms), now_ms)
        # created after the data arrived: computes every cached hour at once
        errors = make_cache_pipeline(stack, tmp_path, cache_namespace, "errors")
        second = _run_all(build_job(stack, errors, engine, now_ms), now_ms)
        references = {}
        for pipeline, reports in ((requests, first), (errors, second)):
            reference = references[pipeline.name] = pipeline.expected(records, now_ms)
            assert "late" not in reference.dead_letters
            windows = sorted({start for start, _ in reference.windows})
            # requests: every hour a line falls in; server errors: some of those hours
            if pipeline is requests:
                assert set(windows) == hours_of(events), "the reference misses an hour"
            else:
                assert windows
                assert set(windows) < hours_of(events)
            computed = [r.window_start_ms for r in reports if not r.trimmed]
            assert set(windows) <= set(computed), "an hour with records was not computed"
            assert not any(r.trimmed for r in reports)  # 200 h kept: nothing trimmed
            assert sum(r.counted for r in reports) == sum(
                w.count for w in reference.windows.values()
            )
            dead = sum((r.dead_letters for r in reports), Counter[str]())
            assert dead == reference.dead_letters
            checked = assert_matches_reference(pipeline, reference, end_ms)
            assert checked == len(reference.windows)
        # one letter per dead record, in the pipeline's own hash (malformed lines of the log)
        letters = stack.redis.connect("admin").hlen(
            build_dead_letter_key(cache_namespace, "requests")
        )
        assert letters == sum(references["requests"].dead_letters.values())
        # the same cache read with a 3 h retention: the hours before the horizon are
        # reported as trimmed and get no document; the rest equal the reference
        recent = make_cache_pipeline(stack, tmp_path, cache_namespace, "recent",
                                     retention_seconds=3 * 3600)  # fmt: skip
        reports = _run_all(build_job(stack, recent, engine, now_ms), now_ms)
        trimmed = [r.window_start_ms for r in reports if r.trimmed]
        computed = [r.window_start_ms for r in reports if not r.trimmed]
        horizon = now_ms - 3 * 3600 * 1000 + 5 * 60_000  # the skew: 5 min
        assert trimmed
        assert all(start < horizon for start in trimmed)
        assert computed
        assert all(start >= horizon for start in computed)
        finals, _ = sink_results(recent)
        assert {key[0] for key in finals} <= set(computed)
        # a run stopped half-way (its progress recorded up to a window) and run again: the
        # same documents, none added
        before, _ = sink_results(requests)
        job = build_job(stack, requests, engine, now_ms)
        for report in first[:5]:
            job.run(report.window_start_ms)
        again, _ = sink_results(requests)
        assert comparable(again) == comparable(before)
    finally:
        engine.stop()


def _run_all(job: CacheBatchJob, now_ms: int) -> list[Any]:
    reports: list[Any] = []
    while batch := job.run_due(now_ms, limit=24):
        reports += batch
    print(f"{len(reports)} windows, {sum(r.seconds for r in reports):.1f} s")
    return reports


RTT_HOURS = 48  # of the RTT archive's busiest stretch: ~15,000 pings of up to 50 probes


def retime_rtt(records: list[dict[str, object]], end_ms: int) -> list[tuple[float, dict[str, Any]]]:
    """The archive's last RTT_HOURS of pings moved by whole hours to end in the hour before
    `end_ms`, each with its Fluentd time (its own time plus 0-1.5 s)."""
    stamped = sorted(((datetime.fromisoformat(str(r["time"])).timestamp(), r) for r in records),
                     key=lambda item: item[0])  # fmt: skip
    newest = int(stamped[-1][0] * 1000)
    start = (newest // HOUR_MS + 1 - RTT_HOURS) * HOUR_MS
    shift = (end_ms // HOUR_MS - newest // HOUR_MS - 1) * HOUR_MS
    out = []
    for index, (seconds, record) in enumerate(stamped):
        if seconds * 1000 < start:
            continue
        moved = datetime.fromtimestamp(seconds + shift / 1000, UTC)
        out.append((moved.timestamp() + (index % 7) * 0.25,
                    {**record, "time": moved.strftime("%Y-%m-%dT%H:%M:%SZ")}))  # fmt: skip
    return out


def test_rtt_per_probe_per_hour_through_the_cache(
    stack: StackEnv, tmp_path: Path, cache_namespace: str
) -> None:
    assert stack.redis is not None
    now_ms = int(time.time() * 1000)
    events = retime_rtt(rtt_records(stack.data_dir), now_ms // HOUR_MS * HOUR_MS - HOUR_MS)
    route = CacheRoute(cache_namespace, "atlas", stack.redis.host, stack.redis.port,
                       RETENTION_SECONDS)  # fmt: skip
    with CacheWriter(build_cache_fluent_conf(route),
                     stack.redis.password_files["writer"]) as writer:  # fmt: skip
        writer.send_many(("atlas", score, record) for score, record in events)
        assert writer.close().records == len(events)
    records = cached_records(stack, route.key)
    assert len(records) == len(events)
    pipeline = make_cache_pipeline(stack, tmp_path, cache_namespace, "rtt", backend="opensearch")
    engine = SparkAggregator("local[1]")
    try:
        reports = _run_all(build_job(stack, pipeline, engine, now_ms), now_ms)
    finally:
        engine.stop()
    reference = pipeline.expected(records, now_ms)
    hours = {start for start, *_ in reference.windows}
    assert len(hours) >= RTT_HOURS - 1, sorted(hours)
    assert len({key[1:] for key in reference.windows}) > 1  # several probes
    assert not any(r.trimmed for r in reports)
    assert sum(r.counted for r in reports) == sum(w.count for w in reference.windows.values())
    assert assert_matches_reference(pipeline, reference, now_ms) == len(reference.windows)


def test_a_namespace_user_reads_its_own_caches_only(stack: StackEnv, cache_namespace: str) -> None:
    """Tenancy by the key layout: an ACL user limited to `metricpipe:cache:{<ns>}:*` (and its
    dead-letter hashes), as docs/logcache.md tells an admin to make one per namespace, reads its
    namespace's cache with the job's own reader and is refused another namespace's by Redis."""
    assert stack.redis is not None
    admin = stack.redis.connect("admin")
    other = f"{cache_namespace}-other"
    mine_key, other_key = build_cache_key(cache_namespace, TAG), build_cache_key(other, TAG)
    user, password = f"tenant-{cache_namespace}"[:60], uuid.uuid4().hex
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], reset_keys=True, reset_channels=True,
        commands=["-@all", "+ping", "+zrangebyscore", "+zrange", "+hset"],
        keys=[f"%R~{CACHE_KEY_PREFIX}{{{cache_namespace}}}:*",
              f"{DEAD_LETTER_KEY_PREFIX}{{{cache_namespace}}}:*"],
    )  # fmt: skip
    try:
        for key in (mine_key, other_key):
            admin.zadd(key, {json.dumps({"message": key}): time.time()})
        tenant = redis.Redis(host=stack.redis.host, port=stack.redis.port, username=user,
                             password=password, socket_timeout=5)  # fmt: skip
        now_ms = int(time.time() * 1000)
        rows, _ = fetch_cache_rows(tenant, mine_key, now_ms - HOUR_MS, now_ms + HOUR_MS)
        assert rows.num_rows == 1
        with pytest.raises(redis.exceptions.NoPermissionError):
            fetch_cache_rows(tenant, other_key, now_ms - HOUR_MS, now_ms + HOUR_MS)
        with pytest.raises(redis.exceptions.NoPermissionError):
            tenant.zadd(mine_key, {"forged": 1.0})
        with pytest.raises(redis.exceptions.NoPermissionError):
            tenant.hset(build_dead_letter_key(other, "p"), "f", "v")
    finally:
        admin.acl_deluser(user)
        admin.delete(other_key)
