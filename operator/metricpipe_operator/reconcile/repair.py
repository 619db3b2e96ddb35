"""Level-triggered repair: a pipeline's children are put back when they go or drift.

The reconcile is idempotent (server-side apply by name), so repairing is running it again for
the owner. Two triggers:
- watch events of the children (`decide_repair`, pure): a child deleted (consumer Deployment,
  CronJob, metrics Service, consumer or route ConfigMap, fluent-operator route objects), or
  the consumer Deployment's replicas changed by hand (they differ from the replicas the
  operator wrote in `REPLICAS_ANNOTATION`): repaired within seconds;
- a timer per pipeline (`OperatorConfig.repair_interval_seconds`): catches drift no event
  tells of, and the Kafka topic (Kafka has no watch). A topic this pipeline created that is
  gone is created anew, empty, with a Warning Event: the records it held are lost.

A pipeline being deleted is left to its finalizer and the garbage collector; one whose
stored spec does not parse is not touched (its handler says what to change)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metricpipe_contract.model import API_VERSION, KIND, MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef

REPLICAS_ANNOTATION = "metricpipe.io/replicas"  # on the consumer Deployment: what it should have
OWNER_ANNOTATION = "metricpipe.io/owner"  # namespace/name, on cluster-scoped route objects
# Changes that lost or discarded something: Warning Events, the rest Normal.
WARNING_CHANGES = frozenset({"TopicRecreated"})


@dataclass(frozen=True)
class RepairRequest:
    namespace: str
    name: str  # of the MetricPipeline
    why: str  # for the Events and the log: what was found


def _owner_of(child: Mapping[str, Any]) -> tuple[str, str] | None:
    meta = child.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == KIND and owner.get("apiVersion") == API_VERSION:
            return str(meta.get("namespace") or ""), str(owner.get("name"))
    namespace, _, name = str((meta.get("annotations") or {}).get(OWNER_ANNOTATION, "")).partition(
        "/"
    )
    return (namespace, name) if namespace and name else None


def decide_repair(event_type: str | None, child: Mapping[str, Any]) -> RepairRequest | None:
    """Whether a watch event of a child calls for the owner's reconcile (pure)."""
    owner = _owner_of(child)
    if owner is None:
        return None
    kind = str(child.get("kind") or "object")
    child_name = str((child.get("metadata") or {}).get("name"))
    if event_type == "DELETED":
        return RepairRequest(*owner, f"{kind} {child_name} was deleted")
    if kind != "Deployment" or event_type not in (None, "ADDED", "MODIFIED"):
        return None
    wanted = ((child.get("metadata") or {}).get("annotations") or {}).get(REPLICAS_ANNOTATION)
    actual = (child.get("spec") or {}).get("replicas")
    if wanted is None or actual is None or str(actual) == str(wanted):
        return None
    return RepairRequest(*owner, f"Deployment {child_name} was set to {actual} replicas; the "
                                 f"pipeline has {wanted} (spec.replicas, /scale)")  # fmt: skip


Target = tuple[PipelineRef, MetricPipelineSpec]


def decide_repair_target(pipeline: Mapping[str, Any]) -> Target | None:
    """The owner as read now, if a reconcile may run for it: not being deleted, spec parses."""
    meta = pipeline.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    try:
        spec = MetricPipelineSpec.model_validate(dict(pipeline.get("spec") or {}))
    except ValueError:
        return None
    ref = PipelineRef(
        namespace=str(meta["namespace"]), name=str(meta["name"]), uid=str(meta["uid"]),
        generation=int(meta.get("generation") or 0),
    )  # fmt: skip
    return ref, spec


def build_repair_events(changes: list[tuple[str, str]], why: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events a repair posts: one per change it made."""
    return [
        ("Warning" if reason in WARNING_CHANGES else "Normal", reason, f"{message} ({why})")
        for reason, message in changes
    ]
