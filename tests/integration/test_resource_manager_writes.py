"""The ResourceManager's writes on the real API server: a scale goes through the pipeline's
/scale and its status records it (lastScaleTime, lastScaleReason) with an
Event; a status write that meets a concurrent write merges and retries instead of losing it.

The policy is a stand-in that always asks for 3 replicas: what is under test is the realize
step (the policy has its own table tests and the closed loop its e2e test)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from kubernetes import client

from metricpipe_contract.model import GROUP, PLURAL, VERSION
from metricpipe_devstack.env import StackEnv
from metricpipe_operator.reconcile.status import Condition
from metricpipe_operator.scaling.loop import CycleReport, LoopSettings, ResourceManager, StatusWrite
from metricpipe_operator.scaling.model import Decision, MetricSample, PipelineScaling, PolicyConfig
from pipelines import create_pipeline, get_pipeline

SPEC = {"source": {"tag": "rm"}, "metric": {"aggregation": "count"}, "replicas": 1,
        "scaling": {"minReplicas": 1, "maxReplicas": 4}}  # fmt: skip


def ask_for_three(
    history: Sequence[MetricSample], pipeline: PipelineScaling, config: PolicyConfig, now: float
) -> Decision:
    return Decision(3, "test policy: 3 replicas", limited_by="test")


@pytest.mark.usefixtures("metricpipeline_crd")
def test_a_scale_is_recorded_in_status_and_an_event(
    stack: StackEnv, kube: client.ApiClient, namespace: str
) -> None:
    create_pipeline(kube, namespace, "scaled", SPEC)
    settings = LoopSettings(prometheus_url=stack.prometheus_url, namespace=namespace)
    manager = ResourceManager(kube, settings, PolicyConfig(), ask_for_three)
    report = manager.cycle(time.time())
    assert (report.scaled, report.status_patches) == (1, 1), report
    pipeline = get_pipeline(kube, namespace, "scaled")
    assert pipeline["spec"]["replicas"] == 3
    status = pipeline["status"]
    assert "desiredReplicas" not in status  # the reconciler's (spec.replicas as applied)
    assert status["lastScaleReason"] == "test policy: 3 replicas"
    assert status["lastScaleTime"].endswith("Z")
    events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
    assert [(e.reason, e.message) for e in events] == [
        ("ScaledUp", "1 → 3: test policy: 3 replicas")
    ]
    again = manager.cycle(time.time())  # at the target now: no second scale, no write
    assert (again.scaled, again.status_patches) == (0, 0), again


@pytest.mark.usefixtures("metricpipeline_crd")
def test_a_conflicting_status_write_merges_and_retries(
    stack: StackEnv, kube: client.ApiClient, namespace: str
) -> None:
    create_pipeline(kube, namespace, "raced", SPEC)
    objects = client.CustomObjectsApi(kube)
    stale = get_pipeline(kube, namespace, "raced")
    # the reconciler writes its condition after the ResourceManager read the object
    reconciler_condition = {"type": "TopicReady", "status": "True", "reason": "TopicCreated",
                            "message": "topic exists", "lastTransitionTime": "2026-01-01T00:00:00Z",
                            "observedGeneration": 1}  # fmt: skip
    objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "raced",
        {"status": {"conditions": [reconciler_condition]}},
    )
    mine = Condition("FreshnessSLOMet", True, "Met", "freshness 10s vs target 1h00m")
    write = StatusWrite(
        stale, {"desiredReplicas": 2, "lastScaleReason": "burst", "conditions": []}, "k",
        stale["metadata"]["resourceVersion"], (mine,), age=0.0, urgent=True,
    )  # fmt: skip
    settings = LoopSettings(prometheus_url=stack.prometheus_url, namespace=namespace)
    manager = ResourceManager(kube, settings, PolicyConfig(), ask_for_three)
    report = CycleReport()
    manager.write_status(write, time.time(), report)
    assert (report.conflicts, report.status_patches) == (1, 1), report
    status = get_pipeline(kube, namespace, "raced")["status"]
    assert status["lastScaleReason"] == "burst"
    kinds = {c["type"]: c["status"] for c in status["conditions"]}
    # and Ready, rebuilt from the merged parts (route and consumer not evaluated yet)
    assert kinds == {"TopicReady": "True", "FreshnessSLOMet": "True", "Ready": "Unknown"}, status[
        "conditions"
    ]
