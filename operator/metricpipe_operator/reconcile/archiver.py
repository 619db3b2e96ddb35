"""A LogArchive's topic plan, archiver Deployment and its `archive.json` (pure builders).

The archiver (`python -m metricpipe_consumers.archive`, in the consumer image) reads
`archive.json` (consumers/metricpipe_consumers/archive/document.py) and its roll settings from
the environment; it runs with the consumer pods' confinement (consumer.py): a fixed non-root
user, a read-only root filesystem, no capability, the runtime's seccomp profile.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from metricpipe_contract.archive import build_archive_dir
from metricpipe_contract.archive_model import ArchiveIndex, LogArchiveSpec
from metricpipe_contract.archive_refs import ArchiveRef
from metricpipe_contract.durations import parse_duration
from metricpipe_contract.naming import build_archive_topic

from ..config import OperatorConfig
from .consumer import (
    CONFIG_MOUNT,
    KAFKA_CREDENTIALS_MOUNT,
    SINK_CA_MOUNT,
    TMP_MOUNT,
    TMP_SIZE_LIMIT,
    build_container_security_context,
    build_kafka_credentials_volume,
    build_kafka_endpoint_with,
    build_probes,
    build_sink_ca_volume,
    build_sink_credential_env,
    build_workload_deployment,
    build_workload_pod_spec,
    decide_default_kafka_secret,
    resolve_sink_endpoint,
)
from .topic import MANAGED_DEFAULTS, TopicPlan

ARCHIVE_FILE = "archive.json"
COMMAND = ["python", "-m", "metricpipe_consumers.archive"]
CONTAINER = "archiver"
# A partition's records wait in memory until roll.maxBytes: the default limit holds a few
# partitions' worth at the default 64 MiB plus Parquet's encoding buffers.
REQUESTS = {"cpu": "100m", "memory": "256Mi"}
LIMITS = {"memory": "1Gi"}


def build_archive_topic_plan(ref: ArchiveRef, spec: LogArchiveSpec) -> TopicPlan:
    retention_ms = int(parse_duration(spec.topic.retention) * 1000)
    return TopicPlan(
        name=build_archive_topic(ref.namespace, ref.name),
        partitions=spec.topic.partitions,
        replication_factor=spec.topic.replication_factor,
        config={**MANAGED_DEFAULTS, "retention.ms": str(retention_ms)},
    )


def build_archive_document(
    ref: ArchiveRef, spec: LogArchiveSpec, config: OperatorConfig, webhdfs_url: str
) -> dict[str, Any]:
    """`archive.json`: what one archiver process is told (ArchiveDocument)."""
    secret = decide_default_kafka_secret(config)
    kafka = build_kafka_endpoint_with(secret, config)
    index = enabled_index(spec)
    return {
        "archive": {"namespace": ref.namespace, "name": ref.name},
        "topic": build_archive_topic(ref.namespace, ref.name),
        "consumerGroup": ref.consumer_group,
        "kafka": kafka.model_dump(by_alias=True, mode="json"),
        "hdfs": {
            "webhdfsUrl": webhdfs_url,
            "user": config.archive_hdfs_user,
            "root": config.archive_root,
        },
        "format": spec.source.format,
        "retentionDays": spec.retention_days,
        **({"index": build_index_target(ref, index, config)} if index else {}),
    }


def enabled_index(spec: LogArchiveSpec) -> ArchiveIndex | None:
    """spec.index when it is enabled."""
    return spec.index if spec.index is not None and spec.index.enabled else None


def build_index_target(ref: ArchiveRef, index: ArchiveIndex, config: OperatorConfig
                       ) -> dict[str, Any]:  # fmt: skip
    """archive.json's `index` (IndexTarget): the cluster, the daily indices' prefix."""
    return {
        "backend": index.backend, "endpoint": resolve_sink_endpoint(index, config),
        "prefix": index.index_prefix(ref.namespace, ref.name),
        "retentionDays": index.retention_days,
        **({"caFile": f"{SINK_CA_MOUNT}/ca.crt"} if index.ca_secret_ref else {}),
    }  # fmt: skip


def build_archive_directory(ref: ArchiveRef, config: OperatorConfig) -> str:
    return build_archive_dir(config.archive_root, ref.namespace, ref.name)


def build_archive_configmap(
    ref: ArchiveRef, spec: LogArchiveSpec, config: OperatorConfig, webhdfs_url: str
) -> dict[str, Any]:
    document = build_archive_document(ref, spec, config, webhdfs_url)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ref.owned_metadata(ref.config_name, "archiver"),
        "data": {ARCHIVE_FILE: json.dumps(document, indent=2, sort_keys=True)},
    }


def build_archive_config_hash(configmap: dict[str, Any], spec: LogArchiveSpec) -> str:
    """Changes when archive.json or the roll settings change: the pods are replaced."""
    inputs = {"data": configmap["data"], "roll": spec.roll.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def build_archiver_env(spec: LogArchiveSpec, config_hash: str) -> list[dict[str, Any]]:
    return [
        {"name": "METRICPIPE_ARCHIVE_CONFIG", "value": f"{CONFIG_MOUNT}/{ARCHIVE_FILE}"},
        {"name": "METRICPIPE_ARCHIVE_ROLL_BYTES", "value": str(spec.roll.max_bytes)},
        {"name": "METRICPIPE_ARCHIVE_ROLL_SECONDS", "value": f"{spec.roll_seconds():g}"},
        {"name": "METRICPIPE_CONFIG_HASH", "value": config_hash},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "HOME", "value": TMP_MOUNT},
        {"name": "TMPDIR", "value": TMP_MOUNT},
    ]


def build_archiver_container(
    spec: LogArchiveSpec, config: OperatorConfig, config_hash: str
) -> dict[str, Any]:
    with_secret = decide_default_kafka_secret(config) is not None
    index = enabled_index(spec)
    credentials = {"name": "kafka-credentials", "mountPath": KAFKA_CREDENTIALS_MOUNT,
                   "readOnly": True}  # fmt: skip
    return {
        "name": CONTAINER,
        "image": config.consumer_image,
        "imagePullPolicy": "IfNotPresent",
        "command": COMMAND,
        "env": [
            *build_archiver_env(spec, config_hash),
            {"name": "METRICPIPE_METRICS_PORT", "value": str(config.consumer_metrics_port)},
            *(build_sink_credential_env(index) if index else []),
        ],
        "ports": [
            {"name": "metrics", "containerPort": config.consumer_metrics_port, "protocol": "TCP"}
        ],
        **build_probes(),  # the archiver answers /startupz, /healthz and /readyz as consumers do
        "resources": {"requests": dict(REQUESTS), "limits": dict(LIMITS)},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": build_container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": TMP_MOUNT},
            *([credentials] if with_secret else []),
            *([{"name": "sink-ca", "mountPath": SINK_CA_MOUNT, "readOnly": True}]
              if index and index.ca_secret_ref else []),
        ],
    }  # fmt: skip


def build_archiver_volumes(
    ref: ArchiveRef, spec: LogArchiveSpec, config: OperatorConfig
) -> list[dict[str, Any]]:
    """archive.json, a private /tmp, and with a secured Kafka the operator's default
    credentials Secret (in the archive's namespace)."""
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": ref.config_name}},
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
    ]
    secret = decide_default_kafka_secret(config)
    if secret is not None:
        volumes.append(build_kafka_credentials_volume(secret))
    index = enabled_index(spec)
    if index is not None and index.ca_secret_ref is not None:
        volumes.append(build_sink_ca_volume(index.ca_secret_ref))
    return volumes


def build_archiver_deployment(
    ref: ArchiveRef, spec: LogArchiveSpec, config: OperatorConfig, config_hash: str
) -> dict[str, Any]:
    container = build_archiver_container(spec, config, config_hash)
    pod = build_workload_pod_spec(container, build_archiver_volumes(ref, spec, config), config)
    return build_workload_deployment(ref, "archiver", spec.replicas, config_hash, pod)
