"""The Redis log cache's pure parts, by table: which windows may have lost records to the
trim, the score bounds of a read, the cache route's two renderings and its shared owners."""

from __future__ import annotations

import json
from typing import Any

import pytest

from metricpipe_consumers.batch import BatchReport, build_run_summary
from metricpipe_consumers.cachebatch import build_score_range, decide_trimmed
from metricpipe_contract.cache import build_cache_key, build_dead_letter_key, build_member_id
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_operator.reconcile.cache_route import (
    CacheRoute,
    build_cache_configmap,
    build_cache_fluent_conf,
    build_cache_objects,
    build_store_match,
    build_uid_filter,
)
from metricpipe_operator.reconcile.cacheapply import build_cache_manager
from metricpipe_operator.scaling.batchruns import (
    build_batch_runs,
    build_cache_condition,
    build_run_record,
)
from metricpipe_operator.scaling.cache import decide_cache_writable
from metricpipe_operator.scaling.model import PolicyConfig
from metricpipe_operator.scaling.observe import Observed
from metricpipe_operator.scaling.plan import CycleInputs, Kept, plan_batch_pipeline

HOUR = 3_600_000
MINUTE = 60_000


@pytest.mark.parametrize(
    ("start", "now", "retention", "skew", "trimmed"),
    [
        # a run at 10:10 for 09:00 with 3 h kept and 5 min skew reads from 08:55: all there
        (9 * HOUR, 10 * HOUR + 10 * MINUTE, 3 * HOUR, 5 * MINUTE, False),
        # the oldest hour a 3 h cache can still hold whole at 10:10 starts at 07:15 + skew
        (7 * HOUR, 10 * HOUR + 10 * MINUTE, 3 * HOUR, 5 * MINUTE, True),
        (8 * HOUR, 10 * HOUR + 10 * MINUTE, 3 * HOUR, 5 * MINUTE, False),
        # the boundary: the read starting exactly at the horizon is whole
        (7 * HOUR + 5 * MINUTE, 10 * HOUR, 3 * HOUR, 5 * MINUTE, False),
        (7 * HOUR + 5 * MINUTE - 1, 10 * HOUR, 3 * HOUR, 5 * MINUTE, True),
        # no skew: the window's own start decides
        (7 * HOUR, 10 * HOUR, 3 * HOUR, 0, False),
    ],
)
def test_a_window_is_trimmed_when_its_read_starts_before_the_horizon(
    start: int, now: int, retention: int, skew: int, trimmed: bool
) -> None:
    assert decide_trimmed(start, now, retention, skew) is trimmed


@pytest.mark.parametrize(
    ("from_ms", "until_ms", "bounds"),
    [
        (1_000, 2_000, ("1.0", "(2.0")),
        (1_431_842_100_000, 1_431_846_000_000, ("1431842100.0", "(1431846000.0")),
        (1_500, 2_001, ("1.5", "(2.001")),
    ],
)
def test_score_bounds_are_seconds_inclusive_then_exclusive(
    from_ms: int, until_ms: int, bounds: tuple[str, str]
) -> None:
    assert build_score_range(from_ms, until_ms) == bounds


def test_names_keep_namespaces_apart() -> None:
    assert build_cache_key("team-a", "web.**") == "metricpipe:cache:{team-a}:web.**"
    assert build_cache_key("team-a", "x") != build_cache_key("team-b", "x")
    assert build_dead_letter_key("team-a", "p") == "metricpipe:dlq:{team-a}:p"
    # a member's identity: the same member and score, the same id; another byte, another
    assert build_member_id(1.5, b"{}") == build_member_id(1.5, b"{}")
    assert build_member_id(1.5, b"{}") != build_member_id(1.5, b"{ }")
    assert build_member_id(1.5, b"{}") != build_member_id(2.5, b"{}")


ROUTE = CacheRoute("team-a", "apache.access", "10.0.0.1", 6379, 10_800)


def test_both_renderings_carry_the_same_blocks() -> None:
    conf = build_cache_fluent_conf(ROUTE)
    inside = [line[2:] for line in conf.splitlines() if line.startswith("  ")]
    assert "\n".join(inside) == build_uid_filter(ROUTE) + "\n" + build_store_match(ROUTE)
    filt, out, config = build_cache_objects(ROUTE, "config.fluentd.fluent.io/enabled")
    assert filt["spec"]["filters"] == [{"customPlugin": {"config": build_uid_filter(ROUTE)}}]
    assert out["spec"]["outputs"] == [{"customPlugin": {"config": build_store_match(ROUTE)}}]
    selector = config["spec"]["clusterOutputSelector"]["matchLabels"]
    assert all(obj["metadata"]["labels"].items() >= selector.items() for obj in (filt, out))


def test_the_store_block_says_what_the_plugin_needs_and_no_secret() -> None:
    block = build_store_match(ROUTE)
    lines = [line.strip() for line in block.splitlines()]
    assert "@type redis_store" in lines
    assert "store_type zset" in lines
    assert f"key {ROUTE.key}" in lines
    assert "value_expire 10800" in lines
    assert "retry_forever true" in lines
    assert "overflow_action block" in lines
    assert "password \"#{ENV['METRICPIPE_REDIS_PASSWORD']}\"" in lines


def test_two_tags_or_namespaces_get_two_routes() -> None:
    names = {
        CacheRoute(ns, tag, "h", 1, 600).name
        for ns, tag in (("a", "x"), ("b", "x"), ("a", "y"), ("a", "x.**"))
    }
    assert len(names) == 4
    assert all(len(name) <= 63 for name in names)


A = PipelineRef("team-a", "requests", "uid-a", 1)
B = PipelineRef("team-a", "errors", "uid-b", 1)


def test_each_reader_applies_as_its_own_manager_and_none_is_controller() -> None:
    assert build_cache_manager(A) != build_cache_manager(B)
    assert build_cache_manager(A) == build_cache_manager(A)
    mine = {**A.owner_reference(), "controller": False}
    configmap = build_cache_configmap(ROUTE, [mine])
    assert configmap["metadata"]["namespace"] == "team-a"
    assert configmap["metadata"]["ownerReferences"] == [mine]
    assert not configmap["metadata"]["ownerReferences"][0]["controller"]


def _report(start: int, *, trimmed: bool = False, records: int = 0, seconds: float = 0.0) -> Any:
    return BatchReport("ns/p", start, start + HOUR, records_read=records, seconds=seconds,
                       trimmed=trimmed)  # fmt: skip


def test_a_run_summary_counts_trimmed_windows_apart_from_the_work() -> None:
    reports = [_report(0, trimmed=True), _report(HOUR, trimmed=True),
               _report(2 * HOUR, records=10, seconds=1.5),
               _report(3 * HOUR, records=5)]  # fmt: skip
    summary = build_run_summary(reports, 2)
    assert summary == {
        "windows": 2, "records": 15, "workSeconds": 1.5, "parallelism": 2,
        "trimmedWindows": 2, "lastTrimmedWindowStartMs": HOUR,
        "firstWindowStartMs": 2 * HOUR, "lastWindowEndMs": 4 * HOUR,
    }  # fmt: skip
    only_trimmed = build_run_summary([_report(0, trimmed=True)], 1)
    assert only_trimmed["windows"] == 0
    assert "firstWindowStartMs" not in only_trimmed


def _job_and_pod(report: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    job = {"metadata": {"name": "p-1", "uid": "j1"},
           "status": {"succeeded": 1, "startTime": "2026-01-01T00:10:00Z",
                      "completionTime": "2026-01-01T00:11:00Z"}}  # fmt: skip
    pod = {"metadata": {"ownerReferences": [{"uid": "j1"}]},
           "status": {"containerStatuses": [{"state": {"terminated": {
               "exitCode": 0, "message": json.dumps(report)}}}]}}  # fmt: skip
    return job, [pod]


@pytest.mark.parametrize(
    ("report", "status", "reason", "sized"),
    [
        (
            {"windows": 1, "records": 100, "workSeconds": 10, "parallelism": 1},
            "True",
            "Complete",
            1,
        ),
        (
            {
                "windows": 1,
                "records": 100,
                "workSeconds": 10,
                "parallelism": 1,
                "trimmedWindows": 2,
                "lastTrimmedWindowStartMs": 3_600_000,
            },
            "False",
            "Trimmed",
            1,
        ),
        # every window of the run trimmed: recorded for the condition, no work for the sizing
        (
            {
                "windows": 0,
                "records": 0,
                "workSeconds": 0,
                "parallelism": 1,
                "trimmedWindows": 1,
                "lastTrimmedWindowStartMs": 0,
            },
            "False",
            "Trimmed",
            0,
        ),
    ],
)
def test_the_cache_condition_follows_the_newest_run(
    report: dict[str, Any], status: str, reason: str, sized: int
) -> None:
    record = build_run_record(*_job_and_pod(report))
    assert record is not None
    condition = build_cache_condition([record])
    assert (condition.status, condition.reason) == ({"True": True, "False": False}[status], reason)
    if reason == "Trimmed":
        assert "p-1" in condition.message
        assert "retention" in condition.message
    assert len(build_batch_runs([record])) == sized


@pytest.mark.parametrize(
    ("values", "status", "reason", "words"),
    [
        (None, None, "MetricsUnavailable", "Prometheus"),
        ({}, None, "NoCacheMetrics", "METRICPIPE_REDIS_HOST"),
        ({"refused_writes": {"r:1": 0.0}, "used_ratio": {"r:1": 0.42}}, True, "Writable", "42%"),
        (
            {"refused_writes": {"r:1": 3.0}, "used_ratio": {"r:1": 1.0}},
            False,
            "WritesRefused",
            "refused 3 cache writes",
        ),
        # no limit set: no ratio, still a verdict on the refusals
        ({"refused_writes": {"r:1": 0.0}}, True, "Writable", "every cache write"),
    ],
)
def test_cache_writable_follows_the_refusals(
    values: dict[str, dict[str, float]] | None, status: bool | None, reason: str, words: str
) -> None:
    condition = decide_cache_writable(values)
    assert (condition.status, condition.reason) == (status, reason)
    assert words in condition.message


def test_a_cache_pipeline_without_runs_still_gets_its_cache_conditions() -> None:
    obj: dict[str, Any] = {
        "metadata": {"namespace": "team-a", "name": "requests", "uid": "u", "generation": 1},
        "spec": {"mode": "batch", "source": {"tag": "t", "store": "redis"},
                 "metric": {"aggregation": "count", "window": "1h"}},
        "status": {},
    }  # fmt: skip
    refused = {"refused_writes": {"r:1": 2.0}}
    inputs = CycleInputs(None, "", Observed(), 100.0, refused)
    plan = plan_batch_pipeline(
        obj, MetricPipelineSpec.model_validate(obj["spec"]), inputs, Kept(), PolicyConfig()
    )
    assert plan is not None
    assert plan.scale is None
    assert plan.due
    [written] = plan.status["conditions"]
    assert (written["type"], written["status"], written["reason"]) == (
        "CacheWritable", "False", "WritesRefused",
    )  # fmt: skip
    kafka = {**obj, "spec": {**obj["spec"], "source": {"tag": "t"}}}
    spec = MetricPipelineSpec.model_validate(kafka["spec"])
    assert plan_batch_pipeline(kafka, spec, inputs, Kept(), PolicyConfig()) is None
