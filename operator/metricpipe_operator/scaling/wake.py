"""Scale to zero in the operator (pure): which decision a stream pipeline gets, and what its
status says of sleeping — `status.scalingState` (`Sleeping` at 0 replicas, else `Active`) and,
while asleep, `status.nextWakeTime`, the time the sleep layer's rule would wake it if the input
stays as measured.

The estimate: asleep, the layer wakes one replica when P, the freshness peak predicted for a
wake one decision later, reaches its limit (0.9 x target - allowed lateness). P grows with the
oldest record's age (1 s a second) and with the records that arrive meanwhile (r / (c - r) s a
second), so it reaches the limit after (limit - P) (c - r) / c seconds; asleep as a probe (no
capacity measured) P = 2 (age + lead + start) grows 2 s a second. It is rounded to 10 s so
that small moves of the input do not rewrite the status every cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .model import Decision, MetricSample, PipelineScaling, PolicyConfig
from .policy import decide
from .sleep import PEAK_FRACTION, decide_with_sleep

WAKE_ROUNDING_SECONDS = 10.0


def decide_stream(
    history: Sequence[MetricSample], pipeline: PipelineScaling, config: PolicyConfig, now: float
) -> Decision:
    """The stream policy: with minReplicas 0 the sleep layer, else `policy.decide`. A pipeline
    set to run but whose replica has not been seen running (a new pipeline, a wake whose pod is
    still starting) keeps its replicas: its lag says nothing yet of what sleeping costs."""
    if pipeline.min_replicas != 0:
        return decide(history, pipeline, config, now)
    if pipeline.current_replicas > 0 and not decide_seen_running(history, now):
        return Decision(pipeline.current_replicas,
                        "waiting for a running replica before deciding to sleep")  # fmt: skip
    return decide_with_sleep(history, pipeline, config, now)


def decide_seen_running(history: Sequence[MetricSample], now: float) -> bool:
    """Whether the newest sample saw a replica ready and measured how busy it was."""
    seen = [s for s in history if s.at <= now]
    if not seen:
        return False
    newest = max(seen, key=lambda s: s.at)
    return newest.replicas > 0 and newest.busy_fraction is not None


def plan_wake_in_seconds(
    decision: Decision, sample: MetricSample | None, pipeline: PipelineScaling
) -> float | None:
    """Seconds until an asleep pipeline is woken (None: not asleep yet, or nothing predicted;
    the decision that puts a pipeline to sleep predicts for one replica, so the first estimate
    comes with the next cycle)."""
    peak = decision.predicted_freshness_seconds
    if decision.replicas != 0 or pipeline.current_replicas != 0 or peak is None:
        return None
    limit = PEAK_FRACTION * pipeline.freshness_target_seconds - pipeline.allowed_lateness_seconds
    left = max(0.0, limit - peak)
    capacity = decision.per_replica_rate
    if capacity is None:  # a probe's bound grows twice as fast as the age
        return left / 2
    rate = sample.input_rate if sample is not None and sample.input_rate is not None else 0.0
    if rate >= capacity:
        return 0.0
    return left * (capacity - rate) / capacity


def build_sleep_status(
    decision: Decision, sample: MetricSample | None, pipeline: PipelineScaling, now: float
) -> dict[str, Any]:
    """`scalingState` and `nextWakeTime` (None removes it from the status)."""
    if decision.replicas != 0:
        return {"scalingState": "Active", "nextWakeTime": None}
    wake_in = plan_wake_in_seconds(decision, sample, pipeline)
    if wake_in is None:
        return {"scalingState": "Sleeping", "nextWakeTime": None}
    at = round((now + wake_in) / WAKE_ROUNDING_SECONDS) * WAKE_ROUNDING_SECONDS
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"scalingState": "Sleeping", "nextWakeTime": stamp}
