"""What the ResourceManager reads from Kubernetes besides the pipelines: metricpipe's pods (one
list call per cycle for all pipelines) and, with batch pipelines, their Jobs (one more).

The pods serve two purposes: batch runs' reports (their termination messages) and the consumer
pods' health — ConsumerReady with the kubelet's reason, SinkReady (`reconcile/health.py`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import MANAGED_BY, PIPELINE_LABEL

from ..reconcile.health import (
    PodsView,
    build_pods_view,
    decide_consumer_ready,
    decide_sink_ready,
)
from ..reconcile.status import Condition
from .batchruns import build_run_record

log = structlog.get_logger("metricpipe.resourcemanager")
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
BATCH_SELECTOR = f"app.kubernetes.io/component=batch,{MANAGED_SELECTOR}"
COMPONENT = "app.kubernetes.io/component"


@dataclass
class Observed:
    """One cycle's reads. `consumer_pods` is None when the pods could not be listed (then no
    health condition is written: fail static, as with metrics)."""

    consumer_pods: dict[str, list[dict[str, Any]]] | None = None  # pipeline key -> its pods
    finished_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def fetch_observed(
    core: client.CoreV1Api,
    jobs: client.BatchV1Api,
    namespace: str | None,
    pipelines: Sequence[dict[str, Any]],
) -> Observed:
    observed = Observed()
    if not pipelines:
        return observed
    try:  # raw answers (not decoded into models): the JSON as the API server sent it
        answer: Any = (
            core.list_namespaced_pod(
                namespace, label_selector=MANAGED_SELECTOR, _preload_content=False
            )
            if namespace
            else core.list_pod_for_all_namespaces(
                label_selector=MANAGED_SELECTOR, _preload_content=False
            )
        )
        pods: list[dict[str, Any]] = json.loads(answer.data)["items"]
    except ApiException as error:
        log.warning("pods not read", status=error.status, reason=error.reason)
        return observed
    observed.consumer_pods = build_consumer_pods(pods)
    if any((p.get("spec") or {}).get("mode") == "batch" for p in pipelines):
        observed.finished_runs = _fetch_finished_runs(jobs, namespace, pods)
    return observed


def build_consumer_pods(pods: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Stream consumer pods by pipeline key (namespace/name), from their labels (pure)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(COMPONENT) == "consumer" and labels.get(PIPELINE_LABEL):
            found.setdefault(f"{meta['namespace']}/{labels[PIPELINE_LABEL]}", []).append(pod)
    return found


def _fetch_finished_runs(
    jobs: client.BatchV1Api, namespace: str | None, pods: Sequence[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Batch pipelines' finished runs (pipeline key -> status entries): their Jobs and the
    Jobs' pods."""
    listed: Any
    try:
        listed = (
            jobs.list_namespaced_job(
                namespace, label_selector=BATCH_SELECTOR, _preload_content=False
            )
            if namespace
            else jobs.list_job_for_all_namespaces(
                label_selector=BATCH_SELECTOR, _preload_content=False
            )
        )
    except ApiException as error:
        log.warning("batch runs not read", status=error.status, reason=error.reason)
        return {}
    pods_by_namespace: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        if ((pod["metadata"].get("labels") or {}).get(COMPONENT)) == "batch":
            pods_by_namespace.setdefault(pod["metadata"]["namespace"], []).append(pod)
    runs: dict[str, list[dict[str, Any]]] = {}
    for job in json.loads(listed.data)["items"]:
        meta = job["metadata"]
        record = build_run_record(job, pods_by_namespace.get(meta["namespace"], []))
        pipeline = (meta.get("labels") or {}).get(PIPELINE_LABEL)
        if record is not None and pipeline:
            runs.setdefault(f"{meta['namespace']}/{pipeline}", []).append(record)
    return runs


def build_health_conditions(
    spec: MetricPipelineSpec, pods: list[dict[str, Any]] | None
) -> list[Condition]:
    """ConsumerReady and SinkReady of a stream pipeline from its consumer pods (pure); nothing
    when the pods could not be listed."""
    if pods is None:
        return []
    view: PodsView = build_pods_view(pods)
    secret = spec.sink.credentials_secret_ref
    return [
        decide_consumer_ready(spec.replicas, view.ready, view),
        decide_sink_ready(secret.name if secret else None, view),
    ]
