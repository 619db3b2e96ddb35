"""Reconcile one LogArchive: topic, route, archiver, then conditions (the I/O shell).

Like a pipeline's reconcile (pipeline.py) and sharing its steps: the topic through the
ownership registry (owner key `<namespace>/<name>.archive`, archive_refs.py), the Fluentd route
without filters (routeapply.py), then the archiver's ConfigMap and Deployment
(archiver.py). A refused or undecided topic stops everything after it. Bytes and files on HDFS
are read by a timer (`refresh_archive_summary`); archivedThrough, lagRecords and Archived by
the ResourceManager (scaling/archive_loop.py). On deletion the route and the archiver go, the
topic per deletionPolicy, and the files on HDFS stay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import requests
import structlog

from metricpipe_contract.archive_model import API_VERSION, KIND, LogArchiveSpec
from metricpipe_contract.archive_refs import ArchiveRef

from ..errors import KubernetesApiError
from .archive_status import (
    ARCHIVED_UNMEASURED,
    HdfsReadError,
    decide_summary_status,
    fetch_archive_summary,
    merge_archive_conditions,
)
from .archiver import (
    build_archive_config_hash,
    build_archive_configmap,
    build_archive_directory,
    build_archive_topic_plan,
    build_archiver_deployment,
)
from .owners import delete_owned_topics
from .pipeline import (
    Change,
    Outcome,
    Runtime,
    ensure_topics,
    evaluate_deployment,
    topic_registry,
    write_status_checked,
)
from .route import FLUENTD_API
from .routeapply import apply_route
from .status import Condition

log = structlog.get_logger("metricpipe.archive")
ROUTE_KINDS = ("ClusterFluentdConfig", "ClusterOutput", "ClusterFilter")


def reconcile_archive(rt: Runtime, ref: ArchiveRef, spec: LogArchiveSpec) -> Outcome:
    with rt.pipeline_lock(ref.key):
        return _reconcile_steps(rt, ref, spec)


def _reconcile_steps(rt: Runtime, ref: ArchiveRef, spec: LogArchiveSpec) -> Outcome:
    plan = build_archive_topic_plan(ref, spec)
    out = Outcome(conditions=[], status={
        "desiredReplicas": spec.replicas, "topic": plan.name, "selector": ref.selector(),
        "directory": build_archive_directory(ref, rt.config),
    })  # fmt: skip
    detail = f"retention {spec.topic.retention}"
    if ensure_topics(rt, ref, [plan], out, detail) is not None:
        route = apply_route(rt.kube, rt.config, ref, spec, plan.name, legacy=False)
        out.changes += route.changes
        out.conditions.append(route.condition)
        out.transient = out.transient or route.transient
        reconcile_archiver(rt, ref, spec, out)
    else:
        stop = out.conditions[-1]
        refused = stop.status is False and not out.transient
        message = f"the spec was not applied: {stop.type} is {stop.reason}"
        for kind in ("RouteReady", "ArchiverReady"):
            out.conditions.append(Condition(kind, False if refused else None, "NotApplied",
                                            message))  # fmt: skip
    if not rt.config.prometheus_url:  # else the ResourceManager writes Archived
        out.conditions.append(ARCHIVED_UNMEASURED)
    return out


def reconcile_archiver(rt: Runtime, ref: ArchiveRef, spec: LogArchiveSpec, out: Outcome) -> None:
    """ArchiverReady: archive.json and the Deployment (replicas: spec.replicas, /scale)."""
    url = rt.config.webhdfs_url
    if not url:
        message = ("the operator has no METRICPIPE_WEBHDFS_URL: set it to the NameNode's WebHDFS "
                   "(http://host:port/webhdfs/v1) as the archiver pods reach it")  # fmt: skip
        out.conditions.append(Condition("ArchiverReady", False, "HdfsNotConfigured", message))
        out.blocked = message
        return
    configmap = build_archive_configmap(ref, spec, rt.config, url)
    config_hash = build_archive_config_hash(configmap, spec)
    try:
        for body in (configmap, build_archiver_deployment(ref, spec, rt.config, config_hash)):
            change = rt.kube.ensure(body)
            if change:
                out.changes.append(change)
        current = rt.kube.fetch("apps/v1", "Deployment", ref.consumer_name, ref.namespace)
    except KubernetesApiError as error:
        out.conditions.append(Condition("ArchiverReady", False, "ApplyFailed", str(error)))
        out.transient = str(error)
        return
    condition, numbers = evaluate_archiver(current.to_dict() if current else None)
    out.status.update(numbers)
    out.conditions.append(condition)


def evaluate_archiver(deployment: dict[str, Any] | None) -> tuple[Condition, dict[str, int]]:
    """ArchiverReady from the Deployment, by the consumers' rule (pipeline.evaluate_deployment)."""
    condition, numbers = evaluate_deployment(deployment)
    message = condition.message.replace("consumer Deployment", "archiver Deployment")
    return replace(condition, type="ArchiverReady", message=message), numbers


def write_archive_status(rt: Runtime, ref: ArchiveRef, outcome: Outcome) -> None:
    """The reconciler's conditions and numbers merged into the object's current conditions."""
    updates = list(outcome.conditions)
    drop = ("IndexReady",)  # no longer a condition: index failures stop the archivers

    def build(current: dict[str, Any]) -> dict[str, Any]:
        previous = (current.get("status") or {}).get("conditions") or []
        conditions = merge_archive_conditions(previous, updates, ref.generation, drop=drop)
        return {"conditions": conditions, "observedGeneration": ref.generation, **outcome.status}

    write_status(rt, ref.namespace, ref.name, build)


def refresh_archiver_status(
    rt: Runtime, namespace: str, name: str, deployment: dict[str, Any]
) -> None:
    """ArchiverReady, Ready and the replica numbers after the Deployment's status moved."""
    condition, numbers = evaluate_archiver(deployment)

    def build(current: dict[str, Any]) -> dict[str, Any] | None:
        generation = int(current["metadata"].get("generation") or 0)
        status = current.get("status") or {}
        previous = status.get("conditions") or []
        conditions = merge_archive_conditions(previous, [condition], generation)
        same = [(c["type"], c["status"], c["reason"]) for c in conditions] == [
            (c.get("type"), c.get("status"), c.get("reason")) for c in previous
        ]
        if same and all(status.get(k) == v for k, v in numbers.items()):
            return None  # nothing moved (most Deployment events): no write
        return {"conditions": conditions, **numbers}

    write_status(rt, namespace, name, build)


def refresh_archive_summary(rt: Runtime, ref: ArchiveRef) -> None:
    """bytes, files and HdfsReady from the archive's directory on HDFS (the timer's)."""
    url = rt.config.webhdfs_url
    if not url:
        return  # ArchiverReady says what to set
    directory = build_archive_directory(ref, rt.config)
    summary, error = None, None
    with requests.Session() as session:
        try:
            summary = fetch_archive_summary(session, url, rt.config.archive_hdfs_user, directory)
        except HdfsReadError as failure:
            error = str(failure)
    numbers, condition = decide_summary_status(summary, error, directory)
    log.info("archive summary", archive=ref.key, directory=directory, **numbers,
             hdfs=condition.reason)  # fmt: skip

    def build(current: dict[str, Any]) -> dict[str, Any]:
        generation = int(current["metadata"].get("generation") or 0)
        previous = (current.get("status") or {}).get("conditions") or []
        return {"conditions": merge_archive_conditions(previous, [condition], generation),
                **numbers}  # fmt: skip

    write_status(rt, ref.namespace, ref.name, build)


def write_status(
    rt: Runtime, namespace: str, name: str,
    build: Callable[[dict[str, Any]], dict[str, Any] | None],
) -> None:  # fmt: skip
    write_status_checked(rt, namespace, name, build, api_version=API_VERSION, kind=KIND)


def finalize_archive(rt: Runtime, ref: ArchiveRef, spec: LogArchiveSpec | None) -> list[Change]:
    """On deletion: the route (cluster-scoped: no owner reference can remove it) and the
    archiver's Deployment and ConfigMaps (the garbage collector would too, later); the topic
    only with deletionPolicy Delete and only if this archive created it. HDFS files are kept."""
    with rt.pipeline_lock(ref.key):
        changes = _finalize_steps(rt, ref, spec)
    rt.forget_pipeline(ref.key)
    return changes


def _finalize_steps(rt: Runtime, ref: ArchiveRef, spec: LogArchiveSpec | None) -> list[Change]:
    changes: list[Change] = []
    for kind in ROUTE_KINDS:
        if rt.kube.delete(FLUENTD_API, kind, ref.cluster_route_name):
            changes.append((f"{kind}Deleted", f"deleted {kind} {ref.cluster_route_name}"))
    for api_version, kind, name in (
        ("apps/v1", "Deployment", ref.consumer_name),
        ("v1", "ConfigMap", ref.config_name),
        ("v1", "ConfigMap", ref.route_configmap_name),
    ):
        if rt.kube.delete(api_version, kind, name, ref.namespace):
            changes.append((f"{kind}Deleted", f"deleted {kind} {name}"))
    directory = build_archive_directory(ref, rt.config)
    changes.append(("ArchiveKept", f"kept the archive's files on HDFS in {directory}"))
    if spec is None:
        changes.append(("TopicRetained", "kept the archive's topic: its stored spec does not "
                                         "parse, so its deletionPolicy is unknown"))  # fmt: skip
        return changes
    topic = build_archive_topic_plan(ref, spec).name
    if spec.topic.deletion_policy == "Delete":
        changes += delete_owned_topics(rt.kafka, topic_registry(rt), ref, [topic],
                                       config=rt.config)  # fmt: skip
    else:
        changes.append(("TopicRetained", f"kept topic {topic} (deletionPolicy Retain)"))
    return changes
