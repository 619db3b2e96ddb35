"""Realize, the pure half: what the status and the Events say about a decision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..reconcile.status import Condition
from .model import Decision, MetricSample

AT_RISK_FRACTION = 0.8  # freshness above this share of the target: AtRisk


def format_seconds(seconds: float) -> str:
    """`kubectl get` style: 45s, 3m05s, 2h04m."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def decide_slo_state(freshness: float | None, target: float) -> str:
    if freshness is None:
        return "Unknown"
    if freshness > target:
        return "Breached"
    return "AtRisk" if freshness > AT_RISK_FRACTION * target else "Met"


def build_attainment(history: Sequence[MetricSample], target: float) -> float | None:
    """Share of the observed samples (the history kept) in which freshness met the target."""
    known = [s.freshness_seconds for s in history if s.freshness_seconds is not None]
    if not known:
        return None
    return round(sum(1 for f in known if f <= target) / len(known), 4)


def build_scaling_status(
    decision: Decision, sample: MetricSample | None, history: Sequence[MetricSample],
    target: float,
) -> dict[str, Any]:  # fmt: skip
    status: dict[str, Any] = {"desiredReplicas": decision.replicas}
    # The numbers are what Prometheus said, even when the policy could not decide on them.
    freshness = sample.freshness_seconds if sample else None
    if sample is not None:
        if sample.lag_records is not None:
            status["lag"] = int(sample.lag_records)
        if sample.time_lag_seconds is not None:
            status["timeLagSeconds"] = round(sample.time_lag_seconds, 1)
            status["timeLag"] = format_seconds(sample.time_lag_seconds)
        if sample.input_rate is not None:
            status["inputRate"] = round(sample.input_rate, 1)
        if freshness is not None:
            status["freshnessSeconds"] = round(freshness, 1)
            status["freshness"] = format_seconds(freshness)
    if decision.per_replica_rate is not None:
        status["capacityPerReplica"] = round(decision.per_replica_rate, 1)
    status["slo"] = decide_slo_state(freshness, target)
    attainment = build_attainment(history, target)
    if attainment is not None:
        status["sloAttainment"] = attainment
    return status


def build_scaling_conditions(
    decision: Decision, sample: MetricSample | None, target: float
) -> list[Condition]:
    """MetricsAvailable: False when Prometheus did not answer (MetricsUnavailable) or the policy
    could not size the group from what it said (MetricsIncomplete; the message says which)."""
    freshness = sample.freshness_seconds if sample else None
    if not decision.metrics_available:
        reason = "MetricsUnavailable" if sample is None else "MetricsIncomplete"
        slo = (
            Condition("FreshnessSLOMet", freshness <= target, "Met" if freshness <= target
                      else "Breached", _freshness_message(freshness, target))
            if freshness is not None
            else Condition("FreshnessSLOMet", None, "Unknown", "no current freshness")
        )  # fmt: skip
        return [Condition("MetricsAvailable", False, reason, decision.reason), slo]
    available = Condition("MetricsAvailable", True, "MetricsCurrent", "Prometheus answers")
    if freshness is None:
        return [available, Condition("FreshnessSLOMet", None, "Unknown", "no freshness yet")]
    met = freshness <= target
    message = _freshness_message(freshness, target)
    return [available, Condition("FreshnessSLOMet", met, "Met" if met else "Breached", message)]


def _freshness_message(freshness: float, target: float) -> str:
    return f"freshness {format_seconds(freshness)} vs target {format_seconds(target)}"
