"""The ResourceManager's plan (scaling/plan.py), pure: what one cycle decides for a pipeline
from its reads and kept state, with a stand-in policy, by table; and what the status write
looks like once a /scale went through or failed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from metricpipe_operator.scaling.collect import QUERIES
from metricpipe_operator.scaling.model import Decision, MetricSample, PipelineScaling, PolicyConfig
from metricpipe_operator.scaling.observe import Observed
from metricpipe_operator.scaling.plan import (
    CycleInputs,
    Kept,
    PlanRules,
    build_status_write_status,
    plan_cycle,
    plan_pipeline,
)

KEY = "team-a/web"
NOW = 10_000.0


def ask_for_three(history: Sequence[MetricSample], facts: PipelineScaling,
                  _config: PolicyConfig, _now: float) -> Decision:  # fmt: skip
    return Decision(3, f"burst ({len(history)} samples, at {facts.current_replicas})")


RULES = PlanRules(ask_for_three, PolicyConfig(), keep_seconds=60.0)
VALUES = {name: {KEY: 1.0} for name in QUERIES}


def pipeline(*, enabled: bool = True, mode: str = "stream", uid: str = "u-1",
             status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "metadata": {"namespace": "team-a", "name": "web", "uid": uid, "generation": 1,
                     "resourceVersion": "7"},
        "spec": {"source": {"tag": "web"}, "metric": {"aggregation": "count"}, "replicas": 1,
                 "mode": mode, "scaling": {"enabled": enabled, "maxReplicas": 4}, **spec},
        "status": status if status is not None else {"replicas": 1, "readyReplicas": 1},
    }  # fmt: skip


def inputs(values: Any = VALUES, observed: Observed | None = None) -> CycleInputs:
    return CycleInputs(values, "" if values else "connection refused",
                       observed or Observed(consumer_pods={}), NOW)  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "reads", "scale_to", "available", "reason"),
    [
        (pipeline(), inputs(), 3, True, "burst (1 samples, at 1)"),
        (pipeline(enabled=False), inputs(), None, True, "scaling disabled in the spec"),
        (pipeline(), inputs(values=None), None, False, "metrics unavailable, no change: "
                                                        "connection refused"),
        (pipeline(replicas=3), inputs(), None, True, "burst (1 samples, at 3)"),  # at target
    ],
)  # fmt: skip
def test_what_a_stream_pipeline_s_plan_decides(
    obj: dict[str, Any], reads: CycleInputs, scale_to: int | None, available: bool, reason: str
) -> None:
    plan = plan_pipeline(obj, reads, None, RULES)
    assert plan is not None
    assert plan.decision.reason == reason
    assert plan.decision.metrics_available is available
    assert (plan.scale.decision.replicas if plan.scale else None) == scale_to
    assert plan.due  # the first cycle of a pipeline: its conditions are news


def test_a_scale_that_went_through_adds_its_time_and_reason_and_a_failed_one_nothing() -> None:
    plan = plan_pipeline(pipeline(), inputs(), None, RULES)
    assert plan is not None
    written = build_status_write_status(plan, True, "2026-12-05T10:00:00Z")
    assert written is not None
    assert written["lastScaleTime"] == "2026-12-05T10:00:00Z"
    assert written["lastScaleReason"] == "burst (1 samples, at 1)"
    failed = build_status_write_status(plan, False, "2026-12-05T10:00:00Z")
    assert failed is not None
    assert "lastScaleTime" not in failed
    assert "desiredReplicas" not in failed  # the reconciler's, from spec.replicas as applied


def test_history_is_the_pipeline_object_s_and_trimmed_to_the_kept_time() -> None:
    old = MetricSample(at=NOW - 61, replicas=1)  # older than keep_seconds
    recent = MetricSample(at=NOW - 15, replicas=1)
    plan = plan_pipeline(pipeline(), inputs(), Kept((old, recent), NOW - 15), RULES)
    assert plan is not None
    assert [s.at for s in plan.kept.history] == [NOW - 15, NOW]
    assert plan.decision.reason == "burst (2 samples, at 1)"
    # the same name, a new object (UID): plan_cycle looks its state up by UID, finds none
    (fresh,) = plan_cycle([pipeline(uid="u-2")], inputs(), {"u-1": plan.kept}, RULES)
    assert fresh.decision.reason == "burst (1 samples, at 1)"


def test_only_ready_replicas_count_as_running() -> None:
    starting = pipeline(status={"replicas": 2, "readyReplicas": 0})
    plan = plan_pipeline(starting, inputs(), None, RULES)
    assert plan is not None
    assert plan.kept.history[-1].replicas == 0


def test_metrics_unavailable_keeps_the_history_as_it_was() -> None:
    recent = MetricSample(at=NOW - 15, replicas=1)
    plan = plan_pipeline(pipeline(), inputs(values=None), Kept((recent,), NOW - 15), RULES)
    assert plan is not None
    assert plan.kept.history == (recent,)


def test_no_plan_for_a_spec_that_does_not_parse_or_a_batch_pipeline_without_runs() -> None:
    broken = pipeline()
    broken["spec"]["metric"]["window"] = "soon"
    assert plan_pipeline(broken, inputs(), None, RULES) is None
    assert plan_pipeline(pipeline(mode="batch"), inputs(), None, RULES) is None


def test_a_batch_budget_that_cannot_fit_warns_once() -> None:
    # four units (maxReplicas) needed 3,590 s for an hour's records: over a 1 h budget
    run = {"job": "r1", "windowStartMs": 0, "windows": 1, "records": 50_000_000,
           "seconds": 3600.0, "workSeconds": 3590.0, "parallelism": 4}  # fmt: skip
    reads = inputs(observed=Observed(consumer_pods={}, finished_runs={KEY: [run]}))
    obj = pipeline(mode="batch", freshness={"target": "1h"})
    first = plan_pipeline(obj, reads, None, RULES)
    assert first is not None
    assert first.conditions[0].status is False, first.conditions
    assert [(e.reason, e.kind) for e in first.events] == [("BatchBudgetExceeded", "Warning")]
    assert first.kept.budget_warned
    again = plan_pipeline(obj, reads, first.kept, RULES)  # the status write still pending
    assert again is not None
    assert again.events == ()
