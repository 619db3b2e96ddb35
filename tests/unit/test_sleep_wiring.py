"""Scale to zero in the operator (scaling/wake.py and the plan around it), pure, by table: which
policy a pipeline gets, the sleeping status and its wake estimate, the Event reasons, and that a
sleeping pipeline is woken when Prometheus does not answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from metricpipe_operator.scaling.collect import QUERIES
from metricpipe_operator.scaling.events import decide_event_reason
from metricpipe_operator.scaling.model import Decision, MetricSample, PipelineScaling, PolicyConfig
from metricpipe_operator.scaling.observe import Observed
from metricpipe_operator.scaling.plan import CycleInputs, PlanRules, plan_pipeline
from metricpipe_operator.scaling.wake import (
    build_sleep_status,
    decide_seen_running,
    decide_stream,
    plan_wake_in_seconds,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def facts(current: int, minimum: int = 0) -> PipelineScaling:
    return PipelineScaling(current_replicas=current, min_replicas=minimum, max_replicas=4,
                           target_utilization=0.7, freshness_target_seconds=600.0,
                           allowed_lateness_seconds=40.0,
                           scale_down_stabilization_seconds=60.0)  # fmt: skip


def asleep(wake_in: float | None) -> Decision:
    details = {} if wake_in is None else {"wake_in_seconds": wake_in, "peak_limit_seconds": 500.0}
    return Decision(0, "asleep", per_replica_rate=100.0, details=details)


@pytest.mark.parametrize(
    ("decision", "current", "expected"),
    [
        (asleep(200.0), 0, 200.0),
        (asleep(0.0), 0, 0.0),  # due now
        (asleep(-3.0), 0, 0.0),  # overdue: now
        (asleep(None), 0, None),  # nothing predicted
        (asleep(200.0), 1, None),  # going to sleep now: the next cycle says when it wakes
        (Decision(1, "awake", details={"wake_in_seconds": 5.0}), 1, None),
    ],
)  # fmt: skip
def test_when_a_sleeping_pipeline_is_woken(
    decision: Decision, current: int, expected: float | None
) -> None:
    assert plan_wake_in_seconds(decision, facts(current)) == expected


@pytest.mark.parametrize(
    ("decision", "current", "expected"),
    [
        (asleep(200.0), 0, {"scalingState": "Sleeping", "nextWakeTime": "2027-01-15T08:03:20Z"}),
        (asleep(200.0), 1, {"scalingState": "Sleeping", "nextWakeTime": None}),
        (Decision(2, "up"), 1, {"scalingState": "Active", "nextWakeTime": None}),
    ],
)  # fmt: skip
def test_the_sleeping_status(decision: Decision, current: int, expected: dict[str, Any]) -> None:
    assert build_sleep_status(decision, facts(current), NOW) == expected


def test_the_wake_time_is_rounded_to_ten_seconds() -> None:
    status = build_sleep_status(asleep(200.0), facts(0), NOW + 4.0)
    assert status["nextWakeTime"] == "2027-01-15T08:03:20Z"  # 204 s ahead, shown as 200


@pytest.mark.parametrize(
    ("current", "target", "reason"),
    [(1, 0, "Sleeping"), (0, 1, "Woken"), (0, 3, "Woken"), (1, 2, "ScaledUp"),
     (3, 1, "ScaledDown")],
)  # fmt: skip
def test_event_reasons(current: int, target: int, reason: str) -> None:
    assert decide_event_reason(current, target) == reason


def test_min_replicas_zero_takes_the_sleep_layer_and_one_the_policy() -> None:
    """No samples: the sleep layer, asleep, wakes (it cannot tell when to); the policy keeps
    what it has."""
    config = PolicyConfig()
    woken = decide_stream([], facts(0, minimum=0), config, NOW)
    assert woken.replicas == 1
    assert "asleep without current metrics" in woken.reason
    kept = decide_stream([], facts(2, minimum=1), config, NOW)
    assert kept.replicas == 2


def sleep_forever(history: Sequence[MetricSample], pipeline: PipelineScaling,
                  config: PolicyConfig, now: float) -> Decision:  # fmt: skip
    return decide_stream(history, pipeline, config, now)


def pipeline_obj(replicas: int, minimum: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team-a", "name": "web", "uid": "u-1", "generation": 1,
                     "resourceVersion": "7"},
        "spec": {"source": {"tag": "web"}, "metric": {"aggregation": "count"},
                 "replicas": replicas, "scaling": {"minReplicas": minimum, "maxReplicas": 4}},
        "status": {"replicas": replicas, "readyReplicas": replicas, "capacityPerReplica": 80.0},
    }  # fmt: skip


def test_a_sleeping_pipeline_is_woken_when_prometheus_does_not_answer() -> None:
    rules = PlanRules(sleep_forever, PolicyConfig())
    blind = CycleInputs(None, "connection refused", Observed(consumer_pods={}), NOW)
    plan = plan_pipeline(pipeline_obj(0, 0), blind, None, rules)
    assert plan is not None
    assert plan.scale is not None
    assert plan.scale.decision.replicas == 1
    assert plan.status["scalingState"] == "Active"
    # a pipeline that does not sleep keeps its replicas on no metrics, as before
    kept = plan_pipeline(pipeline_obj(2, 1), blind, None, rules)
    assert kept is not None
    assert kept.scale is None


def test_the_last_measured_capacity_reaches_the_policy() -> None:
    seen: list[float | None] = []

    def record(history: Sequence[MetricSample], pipeline: PipelineScaling,
               config: PolicyConfig, now: float) -> Decision:  # fmt: skip
        seen.append(pipeline.known_capacity)
        return Decision(pipeline.current_replicas, "kept")

    values = {name: {"team-a/web": 1.0} for name in QUERIES}
    reads = CycleInputs(values, "", Observed(consumer_pods={}), NOW)
    plan_pipeline(pipeline_obj(0, 0), reads, None, PlanRules(record, PolicyConfig()))
    assert seen == [80.0]


@pytest.mark.parametrize(
    ("samples", "running"),
    [
        ([], False),
        ([MetricSample(at=NOW - 5, replicas=0, busy_fraction=None)], False),  # pod starting
        ([MetricSample(at=NOW - 5, replicas=1, busy_fraction=None)], False),  # not measured yet
        ([MetricSample(at=NOW - 5, replicas=1, busy_fraction=0.02)], True),
        ([MetricSample(at=NOW - 10, replicas=1, busy_fraction=0.02),
          MetricSample(at=NOW - 5, replicas=0, busy_fraction=None)], False),  # newest decides
        ([MetricSample(at=NOW + 5, replicas=1, busy_fraction=0.02)], False),  # not yet
    ],
)  # fmt: skip
def test_a_replica_seen_running(samples: list[MetricSample], running: bool) -> None:
    assert decide_seen_running(samples, NOW) is running


def test_a_pipeline_whose_replica_never_ran_does_not_sleep() -> None:
    """A new pipeline's lag is small before anything consumed it: that is not being caught up."""
    starting = [MetricSample(at=NOW - 5, replicas=0, input_rate=40.0, lag_records=10.0,
                             time_lag_seconds=1.0, busy_fraction=None)]  # fmt: skip
    decision = decide_stream(starting, facts(1), PolicyConfig(), NOW)
    assert decision.replicas == 1
    assert "waiting for a running replica" in decision.reason
