"""The consumer Deployment, its metrics Service and its configuration (pure builders)."""

from __future__ import annotations

import json
import math
from typing import Any

from ..api.durations import parse_duration
from ..api.model import MetricPipelineSpec
from ..config import OperatorConfig
from .names import PipelineRef

CONFIG_MOUNT = "/etc/metricpipe"
# metricpipe's workloads may run on the local development node (hack/metricpipe_nodeagent),
# whose taint keeps every other pod off it; on a real cluster no node has this taint.
DEV_NODE_TOLERATION = {
    "key": "metricpipe.io/dev-node",
    "operator": "Exists",
    "effect": "NoSchedule",
}
CONFIG_FILE = "pipeline.json"


def build_pipeline_document(
    ref: PipelineRef, spec: MetricPipelineSpec, topic: str, config: OperatorConfig
) -> dict[str, Any]:
    """Everything a consumer process needs to know, as the file it reads at start-up."""
    return {
        "pipeline": {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid},
        "topic": topic,
        "consumerGroup": ref.consumer_group,
        "deadLetterTopic": f"{topic}.dlq",
        "kafkaBootstrap": config.kafka_bootstrap,
        "sink": {
            "backend": spec.sink.backend,
            "endpoint": sink_endpoint(spec, config),
            "index": spec.index_name(ref.namespace, ref.name),
        },
        "spec": spec.model_dump(by_alias=True, mode="json"),
    }


def sink_endpoint(spec: MetricPipelineSpec, config: OperatorConfig) -> str:
    if spec.sink.endpoint:
        return spec.sink.endpoint
    return (
        config.elasticsearch_url if spec.sink.backend == "elasticsearch" else config.opensearch_url
    )


def build_consumer_configmap(
    ref: PipelineRef, spec: MetricPipelineSpec, topic: str, config: OperatorConfig
) -> dict[str, Any]:
    document = build_pipeline_document(ref, spec, topic, config)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ref.owned_metadata(ref.config_name, "consumer"),
        "data": {CONFIG_FILE: json.dumps(document, indent=2, sort_keys=True)},
    }


def _credential_env(spec: MetricPipelineSpec) -> list[dict[str, Any]]:
    secret = spec.sink.credentials_secret_ref
    if secret is None:
        return []
    return [
        {
            "name": env_name,
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}},
        }
        for env_name, key in (
            ("METRICPIPE_SINK_USERNAME", secret.username_key),
            ("METRICPIPE_SINK_PASSWORD", secret.password_key),
        )
    ]


def _batch_env(spec: MetricPipelineSpec) -> list[dict[str, Any]]:
    env = []
    if spec.consumer.max_batch_records is not None:
        env.append({"name": "METRICPIPE_MAX_BATCH_RECORDS",
                    "value": str(spec.consumer.max_batch_records)})  # fmt: skip
    if spec.consumer.max_batch_wait is not None:
        seconds = parse_duration(spec.consumer.max_batch_wait)
        env.append({"name": "METRICPIPE_MAX_BATCH_SECONDS", "value": f"{seconds:g}"})
    return env


def _spark_threads(requests: dict[str, str]) -> int:
    """Spark's local threads = the container's CPU request in whole cores, at least 1."""
    cpu = str(requests.get("cpu", "1"))
    try:
        cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    except ValueError:  # a suffix other than m is no CPU amount anyone writes
        return 1
    return max(1, math.floor(cores))


def build_container(
    ref: PipelineRef, spec: MetricPipelineSpec, config: OperatorConfig, config_hash: str
) -> dict[str, Any]:
    port = config.consumer_metrics_port
    env = [
        {"name": "METRICPIPE_PIPELINE_CONFIG", "value": f"{CONFIG_MOUNT}/{CONFIG_FILE}"},
        {"name": "METRICPIPE_METRICS_PORT", "value": str(port)},
        {"name": "METRICPIPE_CONFIG_HASH", "value": config_hash},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *_credential_env(spec),
        *_batch_env(spec),
        *({"name": e.name, "value": e.value} for e in spec.consumer.env),
    ]
    requests = {"cpu": "500m", "memory": "1Gi", **spec.consumer.resources.requests}
    env.append({"name": "METRICPIPE_SPARK_MASTER", "value": f"local[{_spark_threads(requests)}]"})
    limits = {"memory": "2Gi", **spec.consumer.resources.limits}
    return {
        "name": "consumer",
        "image": spec.consumer.image or config.consumer_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "metricpipe_consumers"],
        "args": ["stream" if spec.mode == "stream" else "batch"],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "resources": {"requests": requests, "limits": limits},
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
            "failureThreshold": 6,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
        ],
    }


def build_pod_security_context() -> dict[str, Any]:
    """Every metricpipe workload pod: a fixed non-root user, the runtime's seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_pod_volumes(ref: PipelineRef) -> list[dict[str, Any]]:
    """The pipeline's configuration file and a private /tmp (the root filesystem is read-only)."""
    return [
        {"name": "config", "configMap": {"name": ref.config_name}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
    ]


def build_deployment(
    ref: PipelineRef,
    spec: MetricPipelineSpec,
    config: OperatorConfig,
    config_hash: str,
    replicas: int,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": ref.owned_metadata(ref.consumer_name, "consumer"),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": ref.selector_labels()},
            # A consumer group rebalances on every membership change: replace pods one by one.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            },
            "template": {
                "metadata": {
                    "labels": ref.labels("consumer"),
                    "annotations": {"metricpipe.io/config-hash": config_hash},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": config.consumer_termination_grace_seconds,
                    "securityContext": build_pod_security_context(),
                    "containers": [build_container(ref, spec, config, config_hash)],
                    "tolerations": [DEV_NODE_TOLERATION],
                    "volumes": build_pod_volumes(ref),
                },
            },
        },
    }


def build_metrics_service(ref: PipelineRef, config: OperatorConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ref.owned_metadata(ref.consumer_name, "consumer"),
        "spec": {
            "clusterIP": "None",
            "selector": ref.selector_labels(),
            "ports": [
                {"name": "metrics", "port": config.consumer_metrics_port, "targetPort": "metrics"}
            ],
        },
    }
