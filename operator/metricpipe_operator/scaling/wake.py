"""Scale to zero in the operator (pure): which decision a stream pipeline gets, and what its
status says of sleeping — `status.scalingState` (`Sleeping` at 0 replicas, else `Active`) and,
while asleep, `status.nextWakeTime`: when the sleep layer's rule wakes it if the input stays as
measured (the layer's own `wake_in_seconds`), rounded to 10 s so that small moves of the input
do not rewrite the status every cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .model import Decision, MetricSample, PipelineScaling, PolicyConfig
from .policy import decide
from .sleep import decide_with_sleep

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


def plan_wake_in_seconds(decision: Decision, pipeline: PipelineScaling) -> float | None:
    """Seconds until an asleep pipeline is woken (None: not asleep yet, or nothing predicted;
    the decision that puts a pipeline to sleep has no wake estimate, so the first one comes
    with the next cycle)."""
    wake_in = decision.details.get("wake_in_seconds")
    if decision.replicas != 0 or pipeline.current_replicas != 0 or wake_in is None:
        return None
    return max(0.0, wake_in)


def build_sleep_status(decision: Decision, pipeline: PipelineScaling, now: float) -> dict[str, Any]:
    """`scalingState` and `nextWakeTime` (None removes it from the status)."""
    if decision.replicas != 0:
        return {"scalingState": "Active", "nextWakeTime": None}
    wake_in = plan_wake_in_seconds(decision, pipeline)
    if wake_in is None:
        return {"scalingState": "Sleeping", "nextWakeTime": None}
    at = round((now + wake_in) / WAKE_ROUNDING_SECONDS) * WAKE_ROUNDING_SECONDS
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"scalingState": "Sleeping", "nextWakeTime": stamp}
