"""The ResourceManager's plan for a LogArchive (pure): its sample, status and Archived
condition from the exporter's series, and its replicas from the freshness policy."""

from __future__ import annotations

from typing import Any

import pytest

from metricpipe_operator.scaling.archive_plan import (
    ARCHIVE_QUERIES,
    build_archive_sample,
    decide_archived_condition,
    plan_archive,
)
from metricpipe_operator.scaling.model import MetricSample, PolicyConfig
from metricpipe_operator.scaling.policy import decide

NOW = 1_764_000_000.0  # 2025-11-24T16:00:00Z
KEY = "web/edge"


def archive(replicas: int = 1, scaling: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = {"source": {"tag": "edge.**"}, "freshness": {"target": "10m"}, "replicas": replicas,
            "scaling": scaling or {"minReplicas": 1, "maxReplicas": 6}}  # fmt: skip
    return {"metadata": {"namespace": "web", "name": "edge", "uid": "u"}, "spec": spec,
            "status": {"readyReplicas": replicas}}  # fmt: skip


def values(through: float | None, lag: float = 0, rate: float = 1000, processed: float = 1000,
           busy: float = 0.5, partitions: int = 6) -> dict[str, dict[str, float]]:  # fmt: skip
    found = {"input_rate": rate, "processing_rate": processed, "busy_fraction": busy,
             "lag_records": lag, "partitions": partitions}  # fmt: skip
    if through is not None:
        found["archived_through"] = through
    return {name: {KEY: value} for name, value in found.items()}


def test_every_query_reads_by_archive() -> None:
    assert ARCHIVE_QUERIES.keys() >= {"input_rate", "processing_rate", "busy_fraction",
                                      "lag_records", "archived_through", "partitions"}  # fmt: skip
    assert all("by (archive)" in promql for promql in ARCHIVE_QUERIES.values())


def test_the_sample_is_aged_by_the_archived_through_time() -> None:
    sample = build_archive_sample(KEY, values(NOW - 90, lag=5000), 2, NOW)
    assert (sample.time_lag_seconds, sample.freshness_seconds) == (90, 90)
    assert (sample.lag_records, sample.partitions, sample.replicas) == (5000, 6, 2)
    ahead = build_archive_sample(KEY, values(NOW + 5), 1, NOW)  # an exporter clock ahead
    assert ahead.time_lag_seconds == 0
    assert build_archive_sample(KEY, values(None), 1, NOW).time_lag_seconds is None


@pytest.mark.parametrize(
    ("through", "lag", "status", "reason"),
    [
        (NOW - 60, 60.0, True, "WithinTarget"),
        (NOW - 600, 600.0, True, "WithinTarget"),  # the target itself is met
        (NOW - 601, 601.0, False, "BehindTarget"),
        (None, None, None, "Unknown"),
    ],
)
def test_archived_condition(through: float | None, lag: float | None, status: bool | None,
                            reason: str) -> None:  # fmt: skip
    got = decide_archived_condition(through, lag, 600.0, "why")
    assert (got.type, got.status, got.reason) == ("Archived", status, reason)
    if through is not None:
        assert "2025-11-24T15:" in got.message  # the time itself, in UTC


def plan(obj: dict[str, Any], found: Any, history: tuple[MetricSample, ...] = ()) -> Any:
    return plan_archive(obj, history, values=found, unavailable="refused", policy=decide,
                        config=PolicyConfig(), now=NOW, keep_seconds=3600)  # fmt: skip


def test_status_numbers_are_what_the_exporter_said() -> None:
    got = plan(archive(), values(NOW - 125.04, lag=777))
    assert got.status == {"archivedThrough": "2025-11-24T15:57:54Z", "timeLagSeconds": 125.0,
                          "timeLag": "2m05s", "lagRecords": 777}  # fmt: skip
    assert got.condition.status is True


def test_prometheus_down_changes_nothing() -> None:
    got = plan(archive(3), None)
    assert (got.status, got.scale, got.decision.replicas) == ({}, False, 3)
    assert got.condition.status is None
    assert "refused" in got.condition.message


def behind(replicas: int, n: int = 8) -> tuple[MetricSample, ...]:
    """A backlog an hour old growing at 5,000/s against one replica's 1,000/s (fully busy)."""
    return tuple(
        MetricSample(at=NOW - 15 * (n - i), replicas=replicas, input_rate=5000,
                     processing_rate=1000 * replicas, busy_fraction=1.0,
                     lag_records=3_600_000 + 60_000 * i, time_lag_seconds=3600 + 15 * i,
                     freshness_seconds=3600 + 15 * i, partitions=6)
        for i in range(n)
    )  # fmt: skip


def test_an_archive_behind_its_target_scales_up_within_its_bounds() -> None:
    found = values(NOW - 3720, lag=4_000_000, rate=5000, processed=1000, busy=1.0)
    got = plan(archive(1), found, behind(1))
    assert got.scale
    assert got.decision.replicas == 6
    assert got.condition.reason == "BehindTarget"
    held = plan(archive(1, {"enabled": False, "minReplicas": 1, "maxReplicas": 6}), found,
                behind(1))  # fmt: skip
    assert not held.scale  # scaling disabled: the numbers still go to status
    assert held.status["lagRecords"] == 4_000_000


def test_history_is_kept_for_the_policy_and_old_samples_dropped() -> None:
    old = MetricSample(at=NOW - 7200, replicas=1)
    got = plan(archive(), values(NOW - 10), (old, *behind(1, 2)))
    assert [s.at for s in got.history] == [NOW - 30, NOW - 15, NOW]


def test_an_unparsable_spec_is_left_to_the_reconciler() -> None:
    broken = archive()
    broken["spec"] = {"source": {}}
    assert plan(broken, values(NOW)) is None
