"""Realize, the pure half: what the status and the Events say about a decision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metricpipe_contract.names import LATE_REASONS

from ..reconcile.status import Condition
from .collect import LATE_WINDOW, REJECTED_WINDOW
from .model import Decision, MetricSample

AT_RISK_FRACTION = 0.8  # freshness above this share of the target: AtRisk
REJECTED_SHARE = 0.10  # dead letters above this share of the records read: RecordsRejected


def format_seconds(seconds: float) -> str:
    """`kubectl get` style: 45s, 3m05s, 2h04m."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def decide_slo_state(freshness: float | None, target: float, late: float | None = None) -> str:
    """Met / AtRisk / Breached by freshness; Incomplete when records were dead-lettered as late
    or future (windows were finalised without them: fresh, but not complete)."""
    if late is not None and late >= 0.5:  # whole records (collect.build_counted_within)
        return "Incomplete"
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
    # desiredReplicas is the reconciler's (spec.replicas as applied): one writer, and never a
    # decision whose /scale write failed
    status: dict[str, Any] = {}
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
    late = sample.late_records if sample else None
    status["slo"] = decide_slo_state(freshness, target, late)
    if late is not None:
        status["lateRecords"] = round(late)
    share = decide_rejected_share(sample)
    if share is not None:
        status["rejectedShare"] = round(share, 4)
        status["rejected"] = f"{share:.0%}"
    attainment = build_attainment(history, target)
    if attainment is not None:
        status["sloAttainment"] = attainment
    return status


def build_scaling_conditions(
    decision: Decision, sample: MetricSample | None, target: float
) -> list[Condition]:
    """MetricsAvailable: False when Prometheus did not answer (MetricsUnavailable) or the policy
    could not size the group from what it said (MetricsIncomplete; the message says which).
    FreshnessSLOMet: by freshness, but False (RecordsLate) whenever records were dead-lettered
    as late or future. RecordsRejected: the share of the input dead-lettered."""
    freshness = sample.freshness_seconds if sample else None
    if decision.metrics_available:
        available = Condition("MetricsAvailable", True, "MetricsCurrent", "Prometheus answers")
    else:
        reason = "MetricsUnavailable" if sample is None else "MetricsIncomplete"
        available = Condition("MetricsAvailable", False, reason, decision.reason)
    slo = build_late_condition(sample, freshness, target)
    if slo is None and freshness is None:
        why = "no current freshness" if not decision.metrics_available else "no freshness yet"
        slo = Condition("FreshnessSLOMet", None, "Unknown", why)
    elif slo is None and freshness is not None:
        met = freshness <= target
        slo = Condition("FreshnessSLOMet", met, "Met" if met else "Breached",
                        _freshness_message(freshness, target))  # fmt: skip
    assert slo is not None
    return [available, slo, build_rejected_condition(sample)]


def _freshness_message(freshness: float, target: float) -> str:
    return f"freshness {format_seconds(freshness)} vs target {format_seconds(target)}"


def decide_rejected_share(sample: MetricSample | None) -> float | None:
    """Dead letters / records read over the window; None without input (nothing to judge)."""
    if sample is None or sample.records_read is None or sample.records_read < 0.5:
        return None
    return min(1.0, max(0.0, (sample.dead_letters or 0.0) / sample.records_read))


def build_rejected_condition(sample: MetricSample | None) -> Condition:
    share = decide_rejected_share(sample)
    if sample is None:
        return Condition("RecordsRejected", None, "MetricsUnavailable", "Prometheus did not answer")
    if share is None:
        return Condition("RecordsRejected", None, "NoInput",
                         f"no records read in the last {REJECTED_WINDOW}")  # fmt: skip
    numbers = (f"{round(sample.dead_letters or 0)} of {round(sample.records_read or 0)} records "
               f"read in the last {REJECTED_WINDOW} were dead-lettered ({share:.0%})")  # fmt: skip
    if share > REJECTED_SHARE:
        return Condition("RecordsRejected", True, "DeadLetterShareHigh",
                         f"{numbers}, above {REJECTED_SHARE:.0%}: read the dead-letter topic "
                         "(header metricpipe.reason) and fix the source or the spec")  # fmt: skip
    return Condition("RecordsRejected", False, "WithinThreshold", numbers)


def build_late_condition(
    sample: MetricSample | None, freshness: float | None, target: float
) -> Condition | None:
    """FreshnessSLOMet False when records were dead-lettered as late or future: the windows they
    belonged to were finalised without them. None: no such record (freshness decides)."""
    late = sample.late_records if sample else None
    if late is None or late < 0.5:
        return None
    fresh = "" if freshness is None else f"; {_freshness_message(freshness, target)}"
    return Condition(
        "FreshnessSLOMet",
        False,
        "RecordsLate",
        f"{round(late)} records dead-lettered as {' or '.join(LATE_REASONS)} in the "
        f"last {LATE_WINDOW}: their windows were finalised without them{fresh}",
    )
