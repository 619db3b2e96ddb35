"""The ResourceManager's plan for one LogArchive (pure): its archivers are sized by the same
freshness policy as a pipeline's consumers (policy.decide), on the archive's own series.

A record is on HDFS once its batch is committed, and the archiver commits its Kafka offset only
after that; the exporter turns the archiver group's positions into the archived-through time
(the Kafka time of the oldest record not archived, over all partitions). So an archive's time
lag — now minus archived-through — is the age of the oldest record not yet on HDFS: the
archive's freshness. Its processing rate is the records committed to HDFS, its busy fraction
the archivers' time spent on records (not waiting for Kafka).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from metricpipe_contract import names
from metricpipe_contract.archive_model import LogArchiveSpec
from metricpipe_contract.durations import parse_duration

from ..reconcile.status import Condition, parse_rfc3339
from .collect import MetricValues
from .model import Decision, MetricSample, PipelineScaling, PolicyConfig
from .plan import Policy
from .report import format_seconds

ARCHIVE_LABEL = "archive"
ARCHIVE_QUERIES: dict[str, str] = {
    "input_rate": f"sum by (archive) (rate({names.ARCHIVE_TOPIC_OFFSET}[1m]))",
    "processing_rate": f"sum by (archive) (rate({names.ARCHIVE_RECORDS}[1m]))",
    "busy_fraction": f"avg by (archive) (rate({names.ARCHIVE_BUSY_SECONDS}[1m]))",
    "lag_records": f"sum by (archive) ({names.ARCHIVE_LAG})",
    "archived_through": f"min by (archive) ({names.ARCHIVE_THROUGH})",
    "partitions": f"max by (archive) ({names.ARCHIVE_TOPIC_PARTITIONS})",
}


@dataclass(frozen=True)
class ArchivePlan:
    key: str  # namespace/name: the archive label of its series
    decision: Decision
    history: tuple[MetricSample, ...]  # to keep for the next cycle
    status: dict[str, Any]  # archivedThrough, lagRecords, timeLagSeconds, timeLag
    condition: Condition  # Archived
    scale: bool  # set spec.replicas to decision.replicas through /scale


def build_archive_sample(key: str, values: MetricValues, replicas: int, at: float) -> MetricSample:
    """One observation of an archive; its time lag is the freshness (see the module doc)."""

    def get(name: str) -> float | None:
        return values.get(name, {}).get(key)

    through, partitions = get("archived_through"), get("partitions")
    lag = max(0.0, at - through) if through is not None else None
    return MetricSample(
        at=at, replicas=replicas, input_rate=get("input_rate"),
        processing_rate=get("processing_rate"), busy_fraction=get("busy_fraction"),
        lag_records=get("lag_records"), time_lag_seconds=lag, freshness_seconds=lag,
        partitions=int(partitions) if partitions is not None else None,
    )  # fmt: skip


def build_archive_scaling(spec: LogArchiveSpec, status: Mapping[str, Any]) -> PipelineScaling:
    last = status.get("lastScaleTime")
    return PipelineScaling(
        current_replicas=spec.replicas, min_replicas=spec.scaling.min_replicas,
        max_replicas=spec.scaling.max_replicas,
        target_utilization=spec.scaling.target_utilization,
        freshness_target_seconds=parse_duration(spec.freshness.target),
        allowed_lateness_seconds=0.0,  # an archive has no windows: nothing waits for late data
        scale_down_stabilization_seconds=parse_duration(spec.scaling.scale_down_stabilization),
        last_scale_at=parse_rfc3339(last) if last else None,
    )  # fmt: skip


def decide_archived_condition(
    through: float | None, time_lag: float | None, target: float, why_unknown: str
) -> Condition:
    """Archived: True while the oldest record not on HDFS is within the freshness target."""
    if through is None or time_lag is None:
        return Condition("Archived", None, "Unknown", why_unknown)
    stamp = format_time(through)
    if time_lag <= target:
        return Condition("Archived", True, "WithinTarget",
                         f"every record before {stamp} is on HDFS: {format_seconds(time_lag)} "
                         f"behind, target {format_seconds(target)}")  # fmt: skip
    return Condition("Archived", False, "BehindTarget",
                     f"records since {stamp} are not on HDFS yet: {format_seconds(time_lag)} "
                     f"behind, over the target of {format_seconds(target)}")  # fmt: skip


def format_time(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_archive(
    obj: Mapping[str, Any], history: Sequence[MetricSample], *, values: MetricValues | None,
    unavailable: str, policy: Policy, config: PolicyConfig, now: float, keep_seconds: float,
) -> ArchivePlan | None:  # fmt: skip
    """None for an object whose spec does not parse (the reconciler says what to change)."""
    meta = obj["metadata"]
    key = f"{meta['namespace']}/{meta['name']}"
    try:
        spec = LogArchiveSpec.model_validate(obj.get("spec") or {})
    except ValueError:
        return None
    status = dict(obj.get("status") or {})
    scaling = build_archive_scaling(spec, status)
    running = int(status.get("readyReplicas") or 0)
    kept = [s for s in history if s.at >= now - keep_seconds]
    sample = None
    if values is not None:
        sample = build_archive_sample(key, values, running, now)
        kept.append(sample)
    decision = policy(kept, scaling, config, now)
    through = values.get("archived_through", {}).get(key) if values is not None else None
    numbers: dict[str, Any] = {}
    if through is not None and sample is not None and sample.time_lag_seconds is not None:
        numbers["archivedThrough"] = format_time(through)
        numbers["timeLagSeconds"] = round(sample.time_lag_seconds, 1)
        numbers["timeLag"] = format_seconds(sample.time_lag_seconds)
    if sample is not None and sample.lag_records is not None:
        numbers["lagRecords"] = int(sample.lag_records)
    why = (f"Prometheus did not answer: {unavailable}" if values is None
           else "the exporter has not reported every partition's position yet")  # fmt: skip
    condition = decide_archived_condition(
        through, sample.time_lag_seconds if sample else None, scaling.freshness_target_seconds,
        why,
    )  # fmt: skip
    scale = spec.scaling.enabled and decision.replicas != spec.replicas
    return ArchivePlan(key, decision, tuple(kept), numbers, condition, scale)
