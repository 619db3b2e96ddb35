"""Level-triggered repair's decisions (repair.py, owners.build_recreation_warning), by table."""

from __future__ import annotations

from typing import Any

import pytest

from metricpipe_operator.reconcile.owners import TopicOwner, build_recreation_warning
from metricpipe_operator.reconcile.repair import (
    build_repair_events,
    decide_repair,
    decide_repair_target,
)

OWNER = [{"apiVersion": "metricpipe.io/v1alpha1", "kind": "MetricPipeline", "name": "web",
          "uid": "u-1", "controller": True}]  # fmt: skip


def child(kind: str, *, owned: bool = True, annotations: dict[str, str] | None = None,
          replicas: int | None = None) -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": "web-x", "namespace": "team-a",
                            "annotations": annotations or {}}  # fmt: skip
    if owned:
        meta["ownerReferences"] = OWNER
    body: dict[str, Any] = {"kind": kind, "metadata": meta}
    if replicas is not None:
        body["spec"] = {"replicas": replicas}
    return body


ROUTE = {"kind": "ClusterOutput", "metadata": {
    "name": "mp.team-a.web", "annotations": {"metricpipe.io/owner": "team-a/web"}}}  # fmt: skip
WANTS_2 = {"metricpipe.io/replicas": "2"}


@pytest.mark.parametrize(
    ("event", "body", "owner", "why"),
    [
        ("DELETED", child("Deployment"), ("team-a", "web"), "Deployment web-x was deleted"),
        ("DELETED", child("ConfigMap"), ("team-a", "web"), "ConfigMap web-x was deleted"),
        ("DELETED", child("Service"), ("team-a", "web"), "Service web-x was deleted"),
        ("DELETED", child("CronJob"), ("team-a", "web"), "CronJob web-x was deleted"),
        ("DELETED", ROUTE, ("team-a", "web"), "ClusterOutput mp.team-a.web was deleted"),
        ("MODIFIED", child("Deployment", annotations=WANTS_2, replicas=5), ("team-a", "web"),
         "set to 5 replicas; the pipeline has 2"),
        (None, child("Deployment", annotations=WANTS_2, replicas=0), ("team-a", "web"),
         "set to 0 replicas"),
        # nothing to repair
        ("MODIFIED", child("Deployment", annotations=WANTS_2, replicas=2), None, None),
        ("MODIFIED", child("Deployment", replicas=7), None, None),  # written before the mark
        ("ADDED", child("ConfigMap"), None, None),
        ("MODIFIED", child("ConfigMap"), None, None),
        ("DELETED", child("ConfigMap", owned=False), None, None),  # not a pipeline's
        ("DELETED", {"kind": "ClusterOutput", "metadata": {"name": "x"}}, None, None),
        ("DELETED", {"kind": "ClusterOutput", "metadata": {
            "name": "x", "annotations": {"metricpipe.io/owner": "no-slash"}}}, None, None),
    ],
)  # fmt: skip
def test_decide_repair(event: str | None, body: dict[str, Any], owner: tuple[str, str] | None,
                       why: str | None) -> None:  # fmt: skip
    request = decide_repair(event, body)
    if owner is None:
        assert request is None
        return
    assert request is not None
    assert (request.namespace, request.name) == owner
    assert why is not None
    assert why in request.why


def pipeline(**meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team-a", "name": "web", "uid": "u-1", "generation": 3, **meta},
        "spec": {"source": {"tag": "web"}, "metric": {"aggregation": "count", "window": "1m"}},
    }


def test_a_repair_runs_for_a_live_pipeline_with_a_valid_spec() -> None:
    target = decide_repair_target(pipeline())
    assert target is not None
    ref, spec = target
    assert (ref.key, ref.uid, ref.generation) == ("team-a/web", "u-1", 3)
    assert spec.source.tag == "web"


def test_no_repair_while_deleting_or_with_an_unparsable_spec() -> None:
    assert decide_repair_target(pipeline(deletionTimestamp="2026-12-05T10:00:00Z")) is None
    broken = pipeline()
    broken["spec"]["metric"]["window"] = "soon"
    assert decide_repair_target(broken) is None


def test_repair_events_say_why_and_warn_when_data_was_lost() -> None:
    events = build_repair_events(
        [("DeploymentCreated", "created Deployment web-consumer"),
         ("TopicRecreated", "topic t was deleted ...")],
        "Deployment web-consumer was deleted",
    )  # fmt: skip
    assert events == [
        ("Normal", "DeploymentCreated",
         "created Deployment web-consumer (Deployment web-consumer was deleted)"),
        ("Warning", "TopicRecreated",
         "topic t was deleted ... (Deployment web-consumer was deleted)"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("record", "warned"),
    [
        (None, False),  # first creation
        (TopicOwner("team-a/web", "u-1", None), False),  # claimed, creation never confirmed
        (TopicOwner("team-a/web", "u-1", "id-1"), True),  # it existed: its records are lost
        (TopicOwner("team-a/web", "u-1", "id-1", adopted=True), True),
    ],
)  # fmt: skip
def test_a_recreated_topic_is_a_warning_with_its_old_id(
    record: TopicOwner | None, warned: bool
) -> None:
    changes = build_recreation_warning("metricpipe.team-a.web", record)
    assert bool(changes) is warned
    if warned:
        ((reason, message),) = changes
        assert reason == "TopicRecreated"
        assert "id-1" in message
        assert "lost" in message
