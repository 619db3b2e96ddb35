"""Baseline policies for the autoscaling benchmark (pure, same signature style as the policy).

- `decide_keda`: what KEDA's Kafka scaler and the Kubernetes HPA do with their defaults.
  KEDA reports the total consumer lag as an external metric with target average value
  `lagThreshold`, capped at the partition count (allowIdleConsumers false); the HPA computes
  desired = ceil(total lag / lagThreshold), keeps the current count within a 10 % tolerance,
  limits scale-up to max(+4 pods, +100 %) per 15 s sync period, and scales down only to the
  highest recommendation of the last 300 s (stabilisation). Recommendations are recomputed from
  the samples in that window (the HPA keeps them in memory; the result is the same when samples
  and syncs line up), so this function too keeps no state.
- `decide_fixed`: always the maximum replicas (the over-provisioned safe choice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .model import Decision, MetricSample, PipelineScaling


@dataclass(frozen=True)
class KedaConfig:
    """KEDA Kafka scaler + HPA defaults (seconds); only `lag_threshold` has no good default."""

    lag_threshold: float  # records of lag per replica (KEDA's default is 10)
    sync_period_seconds: float = 15.0  # HPA --horizontal-pod-autoscaler-sync-period
    stabilization_seconds: float = 300.0  # HPA behavior.scaleDown.stabilizationWindowSeconds
    tolerance: float = 0.1  # HPA --horizontal-pod-autoscaler-tolerance
    scale_up_pods: int = 4  # HPA default scaleUp policy: 4 pods ...
    scale_up_percent: float = 100.0  # ... or 100 % per period, whichever is more
    stale_after_seconds: float = 60.0  # no usable metric: the HPA leaves replicas alone


def decide_keda(
    history: Sequence[MetricSample], pipeline: PipelineScaling, config: KedaConfig, now: float
) -> Decision:
    """One HPA sync of a KEDA ScaledObject on the consumer group's lag."""
    current = pipeline.current_replicas
    samples = [s for s in history if s.at <= now and s.lag_records is not None]
    if not samples or now - samples[-1].at > config.stale_after_seconds:
        return Decision(current, "lag metric unavailable: no change", metrics_available=False)
    newest = samples[-1]
    upper = pipeline.max_replicas
    if newest.partitions is not None:
        upper = min(upper, newest.partitions)
    lower = max(1, pipeline.min_replicas)
    upper = max(upper, lower)

    def recommend(sample: MetricSample) -> int:
        lag = max(0.0, sample.lag_records or 0.0)
        ratio = lag / (config.lag_threshold * current) if current > 0 else math.inf
        if current > 0 and abs(ratio - 1.0) <= config.tolerance:
            return current
        return min(upper, max(lower, math.ceil(lag / config.lag_threshold)))

    wanted = recommend(newest)
    lag_text = f"lag {newest.lag_records or 0.0:,.0f} rec / threshold {config.lag_threshold:,.0f}"
    if wanted > current:
        step = max(config.scale_up_pods, math.ceil(current * config.scale_up_percent / 100.0))
        target = min(wanted, current + step)
        limited = "max_step" if target < wanted else None
        if target == upper and wanted >= upper:
            limited = "partitions" if upper < pipeline.max_replicas else "max_replicas"
        return Decision(target, f"{lag_text}: {current} → {target}", limited_by=limited)
    if wanted < current:
        window = [s for s in samples if s.at > newest.at - config.stabilization_seconds]
        highest = max(recommend(s) for s in window)
        if highest >= current:
            return Decision(current, f"{lag_text}: stabilising at {current}", "stabilization")
        return Decision(highest, f"{lag_text}: {current} → {highest}")
    return Decision(current, f"{lag_text}: {current} → {current}")


def decide_fixed(
    history: Sequence[MetricSample], pipeline: PipelineScaling, now: float
) -> Decision:
    """Always the maximum replicas, whatever the metrics say."""
    del history, now
    return Decision(pipeline.max_replicas, "fixed at max_replicas", limited_by="max_replicas")
