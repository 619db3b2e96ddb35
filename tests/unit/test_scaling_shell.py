"""The ResourceManager's pure pieces around the policy: queries, samples, status, lease."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from metricpipe_contract import names
from metricpipe_operator.leader import decide_lease_free
from metricpipe_operator.scaling.collect import QUERIES, build_sample, build_values
from metricpipe_operator.scaling.model import Decision, MetricSample
from metricpipe_operator.scaling.plan import decide_refresh_age, decide_status_due
from metricpipe_operator.scaling.report import (
    build_attainment,
    build_scaling_conditions,
    build_scaling_status,
    decide_slo_state,
    format_seconds,
)


def test_a_constant_number_of_queries_each_for_all_pipelines() -> None:
    assert len(QUERIES) <= 10
    known = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    for promql in QUERIES.values():
        assert "by (pipeline)" in promql  # one answer holds every pipeline
        used = set(re.findall(r"\b(?:kafka|metricpipe)_[a-z_]+\b", promql))
        assert used
        assert used <= known, used - known


def test_values_drop_nan_and_unlabelled() -> None:
    body = {"data": {"result": [
        {"metric": {"pipeline": "a/x"}, "value": [0, "12.5"]},
        {"metric": {"pipeline": "a/y"}, "value": [0, "NaN"]},
        {"metric": {"pipeline": "a/z"}, "value": [0, "+Inf"]},
        {"metric": {}, "value": [0, "3"]},
    ]}}  # fmt: skip
    assert build_values(body) == {"a/x": 12.5}


def test_sample_from_values() -> None:
    values = {"input_rate": {"a/x": 100.0}, "partitions": {"a/x": 6.0}, "lag_records": {}}
    sample = build_sample("a/x", values, replicas=2, at=50.0)
    assert sample == MetricSample(at=50.0, replicas=2, input_rate=100.0, partitions=6)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.4, "59s"), (65, "1m05s"), (3599, "59m59s"), (7440, "2h04m"), (-3, "0s")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


@pytest.mark.parametrize(
    ("freshness", "state"), [(None, "Unknown"), (10, "Met"), (85, "AtRisk"), (101, "Breached")]
)
def test_slo_state(freshness: float | None, state: str) -> None:
    assert decide_slo_state(freshness, 100) == state


def test_status_and_conditions_say_what_happened() -> None:
    sample = MetricSample(at=0, replicas=2, lag_records=1234.0, time_lag_seconds=65.2,
                          freshness_seconds=70.0, input_rate=812.34)  # fmt: skip
    history = [MetricSample(at=i, replicas=2, freshness_seconds=f) for i, f in enumerate([50, 150])]
    decision = Decision(3, "up", per_replica_rate=420.06)
    status = build_scaling_status(decision, sample, history, target=100)
    assert status == {"lag": 1234, "timeLagSeconds": 65.2,
                      "timeLag": "1m05s", "inputRate": 812.3, "freshnessSeconds": 70.0,
                      "freshness": "1m10s", "capacityPerReplica": 420.1, "slo": "Met",
                      "sloAttainment": 0.5}  # fmt: skip
    blind = Decision(2, "metrics unavailable: connection refused", metrics_available=False)
    assert build_scaling_status(blind, None, [], 100) == {"slo": "Unknown"}
    (available, slo, _) = build_scaling_conditions(blind, None, 100)
    assert (available.type, available.status, available.reason) == (
        "MetricsAvailable", False, "MetricsUnavailable",
    )  # fmt: skip
    assert "connection refused" in available.message
    assert slo.status is None
    late = MetricSample(at=0, replicas=2, freshness_seconds=130.0)
    (_, breached, _) = build_scaling_conditions(Decision(2, "x"), late, 100)
    assert (breached.type, breached.status) == ("FreshnessSLOMet", False)
    unsure = Decision(2, "per-replica capacity unknown", metrics_available=False)
    (incomplete, still_known, _) = build_scaling_conditions(unsure, late, 100)
    assert (incomplete.status, incomplete.reason) == (False, "MetricsIncomplete")
    assert still_known.status is False  # the freshness Prometheus gave is still reported
    assert build_attainment([], 100) is None


def test_status_is_written_only_when_something_visible_changed() -> None:
    slo = {"type": "FreshnessSLOMet", "status": "True", "reason": "Met"}
    consumer = {"type": "ConsumerReady", "status": "False", "reason": "Error",
                "message": "pod c: Error (restarted 1 time)"}  # fmt: skip
    old = {"desiredReplicas": 2, "lag": 1000, "freshnessSeconds": 30.0, "slo": "Met",
           "conditions": [slo, consumer]}  # fmt: skip
    same = {**old, "lag": 1050, "freshnessSeconds": 33.0}  # small moves
    assert not decide_status_due(old, same, age=10, max_age=60)
    assert decide_status_due(old, same, age=60, max_age=60)  # but never older than max_age
    assert decide_status_due(old, {**old, "lag": 5000}, 10, 60)
    assert decide_status_due(old, {**old, "desiredReplicas": 3}, 10, 60)
    assert decide_status_due(old, {**old, "slo": "AtRisk"}, 10, 60)
    flipped = {**old, "conditions": [{"type": "FreshnessSLOMet", "status": "False"}]}
    assert decide_status_due(old, flipped, 10, 60)
    # the same status with a new reason is what a user acts on: written at once
    said = [slo, {**consumer, "reason": "KafkaAuthFailed"}]
    assert decide_status_due(old, {**old, "conditions": said}, 10, 60)
    # a message alone (a restart count) waits for max_age
    counted = [slo, {**consumer, "message": "restarted 2 times"}]
    assert not decide_status_due(old, {**old, "conditions": counted}, 10, 60)


def test_lease_is_free_when_unheld_ours_or_expired() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fresh = now - timedelta(seconds=10)
    assert decide_lease_free({}, "me", now)
    assert decide_lease_free({"holderIdentity": "me", "renewTime": fresh}, "me", now)
    other = {"holderIdentity": "other", "renewTime": fresh, "leaseDurationSeconds": 45}
    assert not decide_lease_free(other, "me", now)
    expired = {**other, "renewTime": "2025-12-31T23:59:00.000000Z"}
    assert decide_lease_free(expired, "me", now)


def test_refresh_ages_spread_over_half_to_full_max_age() -> None:
    ages = [decide_refresh_age(f"ns/p{i:04d}", 60.0) for i in range(1000)]
    assert all(30.0 <= age <= 60.0 for age in ages)
    assert decide_refresh_age("ns/p0001", 60.0) == ages[1]  # stable for a key
    per_15s_cycle = [sum(1 for age in ages if lo <= age < lo + 15) for lo in (30.0, 45.0)]
    assert min(per_15s_cycle) > 400, per_15s_cycle  # both cycles share the refreshes
