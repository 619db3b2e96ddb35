"""Reconcile one MetricPipeline: spec, topic, route, consumer, then conditions (the I/O shell).

Every step is idempotent, so a crash at any point followed by a rerun converges without
duplicates. The spec check (SpecValid: what the API server cannot check, and names another
pipeline has) and the topic step (ownership, replication factor, partition decrease) come
first: when either refuses or cannot decide, nothing after it is created or changed. Route and
consumer each report their own condition, so one failing does not hide the other.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka.admin import AdminClient

from metricpipe_contract.model import API_VERSION, KIND, MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef

from ..api.checks import decide_spec_refusal
from ..config import OperatorConfig
from ..errors import (
    KafkaUnavailableError,
    KubernetesApiError,
    TopicChangeRefusedError,
    TopicConflictError,
)
from .batchjob import build_cronjob
from .cacheapply import apply_cache_route, remove_cache_route
from .consumer import build_consumer_configmap, build_deployment, build_metrics_service
from .health import decide_consumer_ready, keep_pod_reason
from .indices import decide_index_refusal, fetch_index_claims
from .kubeapply import KubeApplier
from .legacy import remove_legacy_route
from .owners import TopicRegistry, delete_owned_topics, ensure_owned_topics
from .repair import decide_repair_target
from .route import FLUENTD_API
from .routeapply import apply_route
from .status import Condition, build_ready, merge_conditions, rebuild_ready
from .statuswrite import write_pipeline_status
from .topic import TopicPlan, build_dead_letter_plan, build_topic_plan

Change = tuple[str, str]
log = structlog.get_logger("metricpipe.reconcile")


@dataclass
class Runtime:
    """The clients a reconcile needs; built once per operator process."""

    config: OperatorConfig
    kube: KubeApplier
    kafka: AdminClient
    kafka_settings: dict[str, str]  # the operator's librdkafka settings (its other clients)
    owners: TopicRegistry | None = None  # opened on first use (topic_registry)
    # one reconcile, repair or finalize at a time per pipeline (namespace/name): the handlers,
    # the repair timer and the children's watchers run in Kopf's thread pool
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def pipeline_lock(self, key: str) -> threading.Lock:
        with self.locks_guard:
            return self.locks.setdefault(key, threading.Lock())

    def forget_pipeline(self, key: str) -> None:
        with self.locks_guard:
            self.locks.pop(key, None)


_REGISTRY_LOCK = threading.Lock()


def topic_registry(rt: Runtime) -> TopicRegistry:
    with _REGISTRY_LOCK:
        if rt.owners is None:
            rt.owners = TopicRegistry(
                rt.kafka, rt.kafka_settings, rt.config.topic_owners_topic,
                rt.config.kafka_timeout_seconds,
            )  # fmt: skip
        return rt.owners


@dataclass
class Outcome:
    conditions: list[Condition]
    status: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    transient: str | None = None  # retry later
    permanent: str | None = None  # needs a spec change
    blocked: str | None = None  # refused for something outside this object: retry slowly


def reconcile_spec(rt: Runtime, ref: PipelineRef, spec: MetricPipelineSpec, out: Outcome) -> bool:
    """SpecValid: the checks the API server cannot make (strftime layout, names reserved for
    other namespaces) and the sink index against every other pipeline. False: stop here."""
    index = spec.index_name(ref.namespace, ref.name)
    refusal = decide_spec_refusal(spec, ref.namespace)
    reason, message = (refusal.reason, refusal.message) if refusal else ("", "")
    if refusal is None:
        try:
            claims = fetch_index_claims(rt.kube.dynamic.client, ref.namespace)
        except KubernetesApiError as error:
            out.conditions.append(Condition("SpecValid", None, "ApiUnavailable", str(error)))
            out.transient = str(error)
            return False
        conflict = decide_index_refusal(ref.namespace, ref.name, index, claims)
        reason, message = ("Conflict", conflict) if conflict else ("", "")
    if not reason:
        accepted = f"checked; index {index}"
        out.conditions.append(Condition("SpecValid", True, "Accepted", accepted))
        return True
    out.conditions.append(Condition("SpecValid", False, reason, message))
    if reason == "Conflict":
        out.blocked = message
    else:
        out.permanent = message
    return False


def reconcile_topic(rt: Runtime, ref: PipelineRef, spec: MetricPipelineSpec, out: Outcome) -> bool:
    """TopicReady: the topic and its dead-letter topic, owned by this pipeline (see owners.py).
    False (Conflict, ReplicationFactorTooHigh, PartitionDecreaseRefused, KafkaUnavailable):
    nothing changed in Kafka, and nothing after this step may change either."""
    plan = build_topic_plan(spec, ref.namespace, ref.name)
    out.status["topic"] = {"name": plan.name}
    partitions = ensure_topics(rt, ref, [plan, build_dead_letter_plan(plan)], out,
                               f"retention {spec.topic.retention}")  # fmt: skip
    if partitions is None:
        return False
    out.status["topic"] = {"name": plan.name, "partitions": partitions}
    return True


def ensure_topics(
    rt: Runtime, ref: PipelineRef, plans: list[TopicPlan], out: Outcome, detail: str
) -> int | None:
    """TopicReady for an owner's topics (the first is its main topic): its partitions, or None
    when nothing may go on (the condition and the outcome say why)."""
    try:
        results = ensure_owned_topics(rt.kafka, topic_registry(rt), ref, plans, rt.config)
    except KafkaUnavailableError as error:
        out.conditions.append(Condition("TopicReady", False, "KafkaUnavailable", str(error)))
        out.transient = str(error)
        return None
    except TopicConflictError as error:
        out.conditions.append(Condition("TopicReady", False, "Conflict", str(error)))
        out.blocked = str(error)
        return None
    except TopicChangeRefusedError as error:
        out.conditions.append(Condition("TopicReady", False, error.reason, str(error)))
        if error.reason == "ReplicationFactorTooHigh":
            out.blocked = str(error)  # brokers may be added: check again later
        else:
            out.permanent = str(error)
        return None
    for result in results:
        out.changes += result.changes
    partitions = results[0].partitions
    message = f"topic {plans[0].name}: {partitions} partitions, {detail}"
    out.conditions.append(Condition("TopicReady", True, "TopicInSync", message))
    return partitions


def reconcile_store(rt: Runtime, ref: PipelineRef, spec: MetricPipelineSpec, out: Outcome) -> bool:
    """The topic step for a pipeline over its own topic; none over the Redis log cache."""
    if spec.source.store != "redis":
        return reconcile_topic(rt, ref, spec, out)
    message = (f"source.store redis: records come from the namespace's Redis log cache of tag "
               f"{spec.source.tag}; no topic")  # fmt: skip
    out.conditions.append(Condition("TopicReady", True, "NoTopic", message))
    return True


def reconcile_route(rt: Runtime, ref: PipelineRef, spec: MetricPipelineSpec, out: Outcome) -> None:
    if spec.source.store == "redis":
        result = apply_cache_route(rt.kube, rt.config, ref, spec)
    else:
        topic = spec.topic_name(ref.namespace, ref.name)
        result = apply_route(rt.kube, rt.config, ref, spec, topic, legacy=True)
    out.changes += result.changes
    out.conditions.append(result.condition)
    if result.transient:
        out.transient = result.transient


def build_config_hash(configmap: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(configmap["data"], sort_keys=True).encode()).hexdigest()[:16]


def reconcile_consumer(
    rt: Runtime, ref: PipelineRef, spec: MetricPipelineSpec, out: Outcome
) -> None:
    """Stream mode: the consumer Deployment. Batch mode: the CronJob, with the pipeline's
    replicas (what /scale and the ResourceManager set) as each run's parallelism. A switch
    removes the other mode's workload: the stream consumers stop gracefully (finish, write,
    commit) and the first batch run starts where the stream finalizer stopped, or the other
    way round (see docs/batch.md)."""
    topic = spec.topic_name(ref.namespace, ref.name)
    configmap = build_consumer_configmap(ref, spec, topic, rt.config)
    config_hash = build_config_hash(configmap)
    if spec.mode == "batch":
        workload = build_cronjob(ref, spec, rt.config, config_hash, parallelism=spec.replicas)
        other = ("apps/v1", "Deployment")
    else:
        workload = build_deployment(ref, spec, rt.config, config_hash, replicas=spec.replicas)
        other = ("batch/v1", "CronJob")
    try:
        for body in (configmap, workload, build_metrics_service(ref, rt.config)):
            change = rt.kube.ensure(body)
            if change:
                out.changes.append(change)
        if rt.kube.delete(*other, ref.consumer_name, ref.namespace):
            out.changes.append((f"{other[1]}Deleted", f"mode {spec.mode}: {other[1]} removed"))
        if spec.mode == "batch":
            out.status["selector"] = ref.selector()
            out.conditions.append(evaluate_cronjob(workload, spec.replicas))
            return
        current = rt.kube.fetch("apps/v1", "Deployment", ref.consumer_name, ref.namespace)
    except KubernetesApiError as error:
        out.conditions.append(Condition("ConsumerReady", False, "ApplyFailed", str(error)))
        out.transient = str(error)
        return
    out.status["selector"] = ref.selector()
    condition, replicas = evaluate_deployment(current.to_dict() if current else None)
    out.status.update(replicas)
    out.conditions.append(condition)


def evaluate_cronjob(cronjob: dict[str, Any], parallelism: int) -> Condition:
    schedule = cronjob["spec"]["schedule"]
    return Condition(
        "ConsumerReady", True, "Scheduled",
        f"batch runs at '{schedule}' (UTC), parallelism {parallelism}",
    )  # fmt: skip


def evaluate_deployment(deployment: dict[str, Any] | None) -> tuple[Condition, dict[str, int]]:
    """ConsumerReady from a Deployment, by the rule every writer applies
    (`health.decide_consumer_ready`): True once the replicas wanted are available, False
    while none is. The Deployment cannot say why; the ResourceManager adds the kubelet's
    reason from the pods, and `health.keep_pod_reason` keeps it while replicas are missing."""
    if deployment is None:
        return Condition("ConsumerReady", None, "NotFound", "consumer Deployment not found"), {}
    meta, status = deployment.get("metadata", {}), deployment.get("status") or {}
    spec_replicas = int(deployment.get("spec", {}).get("replicas") or 0)
    numbers = {
        "replicas": int(status.get("replicas") or 0),
        "readyReplicas": int(status.get("readyReplicas") or status.get("ready_replicas") or 0),
    }
    observed = int(status.get("observedGeneration") or status.get("observed_generation") or 0)
    if observed < int(meta.get("generation") or 0):
        return Condition(
            "ConsumerReady",
            None,
            "RolloutPending",
            "the deployment controller has not seen this version yet",
        ), numbers
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Condition(
            "ConsumerReady", False, "ProgressDeadlineExceeded", str(progressing.get("message", ""))
        ), numbers
    available = status.get("availableReplicas", status.get("available_replicas"))
    count = int(available if available is not None else numbers["readyReplicas"])
    return decide_consumer_ready(spec_replicas, count, None), numbers


def reconcile_pipeline(rt: Runtime, ref: PipelineRef, spec: MetricPipelineSpec) -> Outcome:
    with rt.pipeline_lock(ref.key):
        return _reconcile_steps(rt, ref, spec)


def _reconcile_steps(rt: Runtime, ref: PipelineRef, spec: MetricPipelineSpec) -> Outcome:
    out = Outcome(conditions=[], status={"desiredReplicas": spec.replicas})
    if reconcile_spec(rt, ref, spec, out) and reconcile_store(rt, ref, spec, out):
        out.status["sinkIndex"] = spec.index_name(ref.namespace, ref.name)
        reconcile_route(rt, ref, spec, out)
        reconcile_consumer(rt, ref, spec, out)
    else:  # the parts after the step that stopped keep what they had: say so
        stop = out.conditions[-1]
        refused = stop.status is False and not out.transient
        done = {c.type for c in out.conditions}
        for kind in ("TopicReady", "RouteReady", "ConsumerReady"):
            if kind not in done:
                message = f"the spec was not applied: {stop.type} is {stop.reason}"
                out.conditions.append(
                    Condition(kind, False if refused else None, "NotApplied", message)
                )
    out.conditions.insert(0, build_ready(out.conditions))
    return out


def finalize_pipeline(
    rt: Runtime, ref: PipelineRef, spec: MetricPipelineSpec | None
) -> list[Change]:
    """On deletion: cluster-scoped route objects always go (no owner references possible);
    the topic only with deletionPolicy Delete, so not when the stored spec no longer parses
    (`spec` None: its policy is unknown, and a kept topic can still be deleted by hand).
    Namespaced children go by garbage collection."""
    with rt.pipeline_lock(ref.key):
        changes = _finalize_steps(rt, ref, spec)
    rt.forget_pipeline(ref.key)
    return changes


def _finalize_steps(rt: Runtime, ref: PipelineRef, spec: MetricPipelineSpec | None) -> list[Change]:
    changes: list[Change] = []
    for kind in ("ClusterFluentdConfig", "ClusterOutput", "ClusterFilter"):
        if rt.kube.delete(FLUENTD_API, kind, ref.cluster_route_name):
            changes.append((f"{kind}Deleted", f"deleted {kind} {ref.cluster_route_name}"))
    changes += remove_legacy_route(rt.kube, ref)
    if spec is None:
        changes.append(("TopicRetained", "kept the pipeline's topic: its stored spec does not "
                                         "parse, so its deletionPolicy is unknown"))  # fmt: skip
        return changes
    if spec.source.store == "redis":  # no topic; the cache's route goes with its last reader
        return changes + remove_cache_route(rt.kube, rt.config, ref, spec)
    plan = build_topic_plan(spec, ref.namespace, ref.name)
    topic = plan.name
    if spec.topic.deletion_policy == "Delete":  # only what this pipeline created
        topics = [topic, build_dead_letter_plan(plan).name]
        changes += delete_owned_topics(rt.kafka, topic_registry(rt), ref, topics, config=rt.config)
    else:
        changes.append(("TopicRetained", f"kept topic {topic} (deletionPolicy Retain)"))
    return changes


def repair_pipeline(
    rt: Runtime, namespace: str, name: str
) -> tuple[dict[str, Any], Outcome] | None:
    """Reconcile the pipeline as it is stored now (see repair.py) and write its status; None
    when it is gone, being deleted, or its spec does not parse. Read under the pipeline's
    lock, so a finalizer that ran meanwhile is seen (nothing is put back after it)."""
    with rt.pipeline_lock(f"{namespace}/{name}"):
        current = rt.kube.fetch(API_VERSION, KIND, name, namespace)
        target = decide_repair_target(current.to_dict()) if current is not None else None
        if current is None or target is None:
            return None
        ref, spec = target
        outcome = _reconcile_steps(rt, ref, spec)
        write_reconcile_status(rt, ref, outcome)
        return current.to_dict(), outcome


def refresh_consumer_status(
    rt: Runtime, namespace: str, name: str, deployment: dict[str, Any]
) -> None:
    """Write ConsumerReady, Ready and the replica numbers after the Deployment's status moved."""
    evaluated, numbers = evaluate_deployment(deployment)

    def build(current: dict[str, Any]) -> dict[str, Any] | None:
        if (current.get("spec") or {}).get("mode") == "batch":
            return None  # the last events of a Deployment removed by a switch to batch
        generation = int(current["metadata"].get("generation") or 0)
        previous = (current.get("status") or {}).get("conditions") or []
        condition = keep_pod_reason(evaluated, _find(previous, "ConsumerReady"))
        conditions = rebuild_ready(merge_conditions(previous, [condition], generation), generation)
        known = current.get("status") or {}
        if conditions == previous and all(known.get(k) == v for k, v in numbers.items()):
            return None  # nothing moved (most Deployment events): no write
        return {"conditions": conditions, **numbers}

    write_status_checked(rt, namespace, name, build)


def write_reconcile_status(rt: Runtime, ref: PipelineRef, outcome: Outcome) -> None:
    """The reconciler's conditions and numbers, merged into the conditions the object has *now*
    (the ResourceManager writes its own meanwhile: a merge patch of the list read when the
    handler started would drop them)."""

    def build(current: dict[str, Any]) -> dict[str, Any]:
        previous = (current.get("status") or {}).get("conditions") or []
        consumer = _find(previous, "ConsumerReady")
        updates = [keep_pod_reason(c, consumer) for c in outcome.conditions if c.type != "Ready"]
        conditions = rebuild_ready(merge_conditions(previous, updates, ref.generation),
                                   ref.generation)  # fmt: skip
        return {"conditions": conditions, "observedGeneration": ref.generation, **outcome.status}

    write_status_checked(rt, ref.namespace, ref.name, build)


def _find(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def write_status_checked(
    rt: Runtime, namespace: str, name: str,
    build: Callable[[dict[str, Any]], dict[str, Any] | None],
    *, api_version: str = API_VERSION, kind: str = KIND,
) -> None:  # fmt: skip
    """The reconciler's status writes (statuswrite.py): read now, build, patch under the
    resourceVersion read (of a MetricPipeline unless another kind is named)."""

    def read() -> dict[str, Any] | None:
        found = rt.kube.fetch(api_version, kind, name, namespace)
        return None if found is None else dict(found.to_dict())

    def patch(status: dict[str, Any], version: str | None) -> bool:
        return rt.kube.patch_status(api_version, kind, name, namespace, status,
                                    resource_version=version)  # fmt: skip

    write_pipeline_status(read, patch, build)
