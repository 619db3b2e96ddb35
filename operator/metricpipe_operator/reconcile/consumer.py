"""The consumer Deployment, its metrics Service and its configuration (pure builders)."""

from __future__ import annotations

import json
import math
from typing import Any

from metricpipe_contract.cache import build_cache_key, build_dead_letter_key
from metricpipe_contract.durations import parse_duration
from metricpipe_contract.kafka import KafkaEndpoint
from metricpipe_contract.model import (
    CaSecretRef,
    KafkaCredentialsRef,
    MetricPipelineSpec,
    SinkConnection,
)
from metricpipe_contract.refs import PipelineRef

from ..config import OperatorConfig
from .repair import REPLICAS_ANNOTATION

CONFIG_MOUNT = "/etc/metricpipe"
# The root filesystem is read-only: a process writes only to the pod's two emptyDirs (the
# consumer's sparkconf.py turns TMPDIR and SPARK_LOCAL_DIRS into Spark's settings).
TMP_MOUNT = "/tmp"  # noqa: S108 - a private emptyDir: Python's and Java's temporary files, HOME
TMP_SIZE_LIMIT = "256Mi"  # holds small files only (JVM perf data, native libraries, py4j)
SCRATCH_MOUNT = "/var/lib/metricpipe/scratch"  # Spark's scratch: shuffle, spill, Arrow files
MEMORY_LIMIT_ENV = "METRICPIPE_MEMORY_LIMIT_BYTES"
# metricpipe's workloads may run on the local development node, whose taint keeps every other
# pod off it; on a real cluster no node has this taint.
DEV_NODE_TOLERATION = {
    "key": "metricpipe.io/dev-node",
    "operator": "Exists",
    "effect": "NoSchedule",
}
CONFIG_FILE = "pipeline.json"
# the pipeline's Kafka credentials Secret (readable by the pod's group only: defaultMode 0440)
KAFKA_CREDENTIALS_MOUNT = "/var/run/secrets/metricpipe/kafka"
KAFKA_CREDENTIALS_MODE = 0o440
# the CA of the sink's HTTPS certificate (spec.sink.caSecretRef), as ca.crt
SINK_CA_MOUNT = "/var/run/secrets/metricpipe/sink-ca"


def build_pipeline_document(
    ref: PipelineRef, spec: MetricPipelineSpec, topic: str, config: OperatorConfig
) -> dict[str, Any]:
    """Everything a consumer process needs to know, as the file it reads at start-up."""
    return {
        "pipeline": {"namespace": ref.namespace, "name": ref.name, "uid": ref.uid},
        "topic": topic,
        "consumerGroup": ref.consumer_group,
        "deadLetterTopic": f"{topic}.dlq",
        "kafka": build_kafka_endpoint(spec, config).model_dump(by_alias=True, mode="json"),
        "sink": {
            "backend": spec.sink.backend,
            "endpoint": sink_endpoint(spec, config),
            "index": spec.index_name(ref.namespace, ref.name),
            **({"caFile": f"{SINK_CA_MOUNT}/ca.crt"} if spec.sink.ca_secret_ref else {}),
        },
        "spec": spec.model_dump(by_alias=True, mode="json"),
        **({"cache": build_cache_source(ref, spec, config)} if spec.source.store == "redis"
           else {}),
    }  # fmt: skip


def build_cache_source(
    ref: PipelineRef, spec: MetricPipelineSpec, config: OperatorConfig
) -> dict[str, Any]:
    """pipeline.json's `cache` (source.store redis): where the tag's cache is, how long it
    keeps records, and the pipeline's own dead-letter hash (contract/cache.py)."""
    return {
        "host": config.redis_host, "port": config.redis_port,
        "key": build_cache_key(ref.namespace, spec.source.tag),
        "deadLetterKey": build_dead_letter_key(ref.namespace, ref.name),
        "retentionSeconds": config.cache_retention_seconds,
    }  # fmt: skip


def build_redis_credential_env(spec: MetricPipelineSpec, config: OperatorConfig) -> list[Any]:
    """METRICPIPE_REDIS_USERNAME/PASSWORD from the operator's Redis Secret in the pipeline's
    namespace (source.store redis only; never the values)."""
    if spec.source.store != "redis":
        return []
    return [
        {"name": f"METRICPIPE_REDIS_{key.upper()}",
         "valueFrom": {"secretKeyRef": {"name": config.redis_secret, "key": key}}}
        for key in ("username", "password")
    ]  # fmt: skip


def decide_kafka_secret(
    spec: MetricPipelineSpec, config: OperatorConfig
) -> KafkaCredentialsRef | None:
    """The Secret whose Kafka credentials the pipeline's pods mount: the pipeline's own, else
    the operator's default name (in the pipeline's namespace); none with PLAINTEXT Kafka."""
    if config.kafka_security_protocol == "PLAINTEXT":
        return None
    own = spec.kafka.credentials_secret_ref if spec.kafka else None
    return own if own is not None else decide_default_kafka_secret(config)


def decide_default_kafka_secret(config: OperatorConfig) -> KafkaCredentialsRef | None:
    """The operator's default credentials Secret (METRICPIPE_KAFKA_PIPELINE_SECRET), in the
    namespace of the pods that mount it; none with PLAINTEXT Kafka."""
    if config.kafka_security_protocol == "PLAINTEXT" or not config.kafka_pipeline_secret:
        return None
    return KafkaCredentialsRef(name=config.kafka_pipeline_secret)


def build_kafka_endpoint(spec: MetricPipelineSpec, config: OperatorConfig) -> KafkaEndpoint:
    """pipeline.json's `kafka`: the operator's Kafka and protocol, the pipeline's credentials
    as the files of its mounted Secret (no secret value ever goes into the ConfigMap)."""
    return build_kafka_endpoint_with(decide_kafka_secret(spec, config), config)


def build_kafka_endpoint_with(
    secret: KafkaCredentialsRef | None, config: OperatorConfig
) -> KafkaEndpoint:
    keys = (
        {}
        if secret is None
        else {
            **secret.model_dump(exclude={"name"}), "credentials_dir": KAFKA_CREDENTIALS_MOUNT,
            "credentials_secret": secret.name,
        }
    )  # fmt: skip
    return KafkaEndpoint(
        bootstrap=config.kafka_bootstrap, security_protocol=config.kafka_security_protocol,
        sasl_mechanism=config.kafka_sasl_mechanism, **keys,
    )  # fmt: skip


def sink_endpoint(spec: MetricPipelineSpec, config: OperatorConfig) -> str:
    return resolve_sink_endpoint(spec.sink, config)


def resolve_sink_endpoint(sink: SinkConnection, config: OperatorConfig) -> str:
    """The cluster's URL: the resource's own, else the operator's for the backend."""
    if sink.endpoint:
        return sink.endpoint
    return config.elasticsearch_url if sink.backend == "elasticsearch" else config.opensearch_url


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


def build_sink_credential_env(sink: SinkConnection) -> list[dict[str, Any]]:
    """METRICPIPE_SINK_* from the resource's credentials Secret (never the values)."""
    secret = sink.credentials_secret_ref
    if secret is None:
        return []
    keys = (
        [("METRICPIPE_SINK_API_KEY", secret.api_key_key)]
        if secret.api_key_key
        else [
            ("METRICPIPE_SINK_USERNAME", secret.username_key),
            ("METRICPIPE_SINK_PASSWORD", secret.password_key),
        ]
    )
    return [
        {"name": env_name, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}}}
        for env_name, key in keys
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


# A consumer's start (Python imports, the JVM, Spark's session and warm-up, the sink's indices,
# the first poll) takes 20-35 s alone on the 2-core dev machine and up to STARTUP_MEASURED_SECONDS
# when twelve start at once (tests/e2e/test_startup_under_load.py; docs/consumer.md, "Probes"):
# the startup probe allows STARTUP_BUDGET_SECONDS before it gives up (room for a machine
# twice as loaded), and liveness is not probed before then.
STARTUP_MEASURED_SECONDS = 160
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURE_THRESHOLD = 60
STARTUP_BUDGET_SECONDS = STARTUP_PERIOD_SECONDS * STARTUP_FAILURE_THRESHOLD
PROBE_TIMEOUT_SECONDS = 5  # a busy machine answers late; a late answer is not a dead consumer


TERMINATION_MESSAGE_PATH = "/dev/termination-log"


def build_stream_jvm_options(threads: int) -> str:
    """The stream consumer's JVM: as many processors as Spark has threads (what a container
    limited to that CPU would show it: its GC and JIT thread counts follow), and the C1
    compiler only: a start costs about half the CPU (22-28 -> 12.5 CPU-seconds measured alone),
    which twelve consumers starting at once on two cores are short of; the price is some
    steady-state JIT quality (docs/consumer.md, "Probes"). A pipeline replaces them with its
    own JAVA_TOOL_OPTIONS in spec.consumer.env."""
    return f"-XX:ActiveProcessorCount={threads} -XX:TieredStopAtLevel=1"


LIVENESS_KILL_GRACE_SECONDS = 15


def build_probes() -> dict[str, Any]:
    """Startup (/startupz: Spark up, group subscribed, first poll back), then liveness
    (/healthz: the loop makes progress) and readiness (/readyz: it can do work)."""

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "metrics"},
            "periodSeconds": period,
            "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
            "failureThreshold": failures,
        }

    return {
        "startupProbe": probe("/startupz", STARTUP_PERIOD_SECONDS, STARTUP_FAILURE_THRESHOLD),
        # after start-up: killed once /healthz has failed for 2 minutes (it fails after 2
        # minutes without a loop iteration), never for a slow start
        # a liveness failure means the loop has not turned for minutes: the process is hung and
        # will not use the pod's 90 s grace to finish a batch, so the kill comes sooner
        "livenessProbe": {
            **probe("/healthz", 20, 6),
            "terminationGracePeriodSeconds": LIVENESS_KILL_GRACE_SECONDS,
        },
        "readinessProbe": probe("/readyz", 5, 3),
    }


def build_runtime_env() -> list[dict[str, Any]]:
    """Where the container's processes write (all on emptyDirs: HOME also holds Spark's Ivy
    cache, were it ever used) and its memory limit in bytes, from which the consumer sizes
    Spark's heap (the downward API; the container's own limit when no container is named)."""
    return [
        {"name": "HOME", "value": TMP_MOUNT},
        {"name": "TMPDIR", "value": TMP_MOUNT},
        {"name": "SPARK_LOCAL_DIRS", "value": SCRATCH_MOUNT},
        {
            "name": MEMORY_LIMIT_ENV,
            "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1"}},
        },
    ]


def build_container(
    ref: PipelineRef, spec: MetricPipelineSpec, config: OperatorConfig, config_hash: str
) -> dict[str, Any]:
    port = config.consumer_metrics_port
    env = [
        {"name": "METRICPIPE_PIPELINE_CONFIG", "value": f"{CONFIG_MOUNT}/{CONFIG_FILE}"},
        {"name": "METRICPIPE_METRICS_PORT", "value": str(port)},
        {"name": "METRICPIPE_CONFIG_HASH", "value": config_hash},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "METRICPIPE_TERMINATION_MESSAGE_PATH", "value": TERMINATION_MESSAGE_PATH},
        *build_runtime_env(),
        *build_sink_credential_env(spec.sink),
        *build_redis_credential_env(spec, config),
        *_batch_env(spec),
    ]
    # a memory limit of the user's own without a request: the request is left to Kubernetes,
    # which sets it to the limit (the 1Gi default above a smaller limit would be refused)
    default_memory = {} if "memory" in spec.consumer.resources.limits else {"memory": "1Gi"}
    requests = {"cpu": "500m", **default_memory, **spec.consumer.resources.requests}
    threads = _spark_threads(requests)
    if spec.mode == "stream":
        env.append({"name": "JAVA_TOOL_OPTIONS", "value": build_stream_jvm_options(threads)})
    env += [{"name": e.name, "value": e.value} for e in spec.consumer.env]  # the user's last
    env.append({"name": "METRICPIPE_SPARK_MASTER", "value": f"local[{threads}]"})
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
        **build_probes(),
        # why a consumer stopped (a sink refusing it, a spec it cannot apply), else its last
        # log lines: the ResourceManager turns it into SinkReady / ConsumerReady messages
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": build_container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": TMP_MOUNT},
            {"name": "scratch", "mountPath": SCRATCH_MOUNT},
            *(
                [
                    {
                        "name": "kafka-credentials",
                        "mountPath": KAFKA_CREDENTIALS_MOUNT,
                        "readOnly": True,
                    }
                ]
                if decide_kafka_secret(spec, config) is not None
                else []
            ),
            *(
                [{"name": "sink-ca", "mountPath": SINK_CA_MOUNT, "readOnly": True}]
                if spec.sink.ca_secret_ref
                else []
            ),
        ],
    }


def build_container_security_context() -> dict[str, Any]:
    """Every metricpipe workload container: non-root, read-only root, no capability."""
    return {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_kafka_credentials_volume(secret: KafkaCredentialsRef) -> dict[str, Any]:
    """The Kafka credentials Secret as files readable by the pod's group only; optional, so
    that a missing Secret is named by the process rather than hidden in the pod's Events."""
    return {
        "name": "kafka-credentials",
        "secret": {"secretName": secret.name, "defaultMode": KAFKA_CREDENTIALS_MODE,
                   "optional": True},
    }  # fmt: skip


# The consumer image's user (consumers/Dockerfile: USER 65532), by number so that the kubelet
# can check runAsNonRoot without reading the image's /etc/passwd.
RUN_AS_ID = 65532


def build_pod_security_context() -> dict[str, Any]:
    """Every metricpipe workload pod: a fixed non-root user, the runtime's seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_ID,
        "runAsGroup": RUN_AS_ID,
        "fsGroup": RUN_AS_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_pod_volumes(
    ref: PipelineRef, spec: MetricPipelineSpec, config: OperatorConfig
) -> list[dict[str, Any]]:
    """The pipeline's configuration file, a private /tmp and Spark's scratch space (the root
    filesystem is read-only; the kubelet evicts a pod whose emptyDir outgrows its limit), and
    with a secured Kafka the pipeline's credentials Secret. The kubelet keeps the mounted
    Secret's files current, so a fixed Secret reaches the consumer without a new pod. The
    Secrets are mounted as optional: a missing one leaves its directory empty, the consumer
    names it in its last words and the pipeline's status says which to create (a required
    mount would hold the pod in ContainerCreating, said only in the pod's Events)."""
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": ref.config_name}},
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE_LIMIT}},
        {"name": "scratch", "emptyDir": {"sizeLimit": config.consumer_scratch_size_limit}},
    ]
    secret = decide_kafka_secret(spec, config)
    if secret is not None:
        volumes.append(build_kafka_credentials_volume(secret))
    if spec.sink.ca_secret_ref is not None:
        volumes.append(build_sink_ca_volume(spec.sink.ca_secret_ref))
    return volumes


def build_sink_ca_volume(ca: CaSecretRef) -> dict[str, Any]:
    """Only the CA's key, as ca.crt (the Secret may hold more); mounted at SINK_CA_MOUNT."""
    return {
        "name": "sink-ca",
        "secret": {"secretName": ca.name, "items": [{"key": ca.key, "path": "ca.crt"}],
                   "defaultMode": KAFKA_CREDENTIALS_MODE, "optional": True},
    }  # fmt: skip


def build_deployment(
    ref: PipelineRef,
    spec: MetricPipelineSpec,
    config: OperatorConfig,
    config_hash: str,
    replicas: int,
) -> dict[str, Any]:
    container = build_container(ref, spec, config, config_hash)
    pod = build_workload_pod_spec(container, build_pod_volumes(ref, spec, config), config)
    return build_workload_deployment(ref, "consumer", replicas, config_hash, pod)


def build_workload_pod_spec(
    container: dict[str, Any], volumes: list[dict[str, Any]], config: OperatorConfig
) -> dict[str, Any]:
    """The pod of a consumer or an archiver: one confined container, no API token."""
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": config.consumer_termination_grace_seconds,
        "securityContext": build_pod_security_context(),
        "containers": [container],
        "tolerations": [DEV_NODE_TOLERATION],
        "volumes": volumes,
    }


def build_workload_deployment(
    ref: PipelineRef, component: str, replicas: int, config_hash: str, pod: dict[str, Any]
) -> dict[str, Any]:
    """The Deployment of a consumer group's members (a pipeline's consumers, an archive's
    archivers), named ref.consumer_name."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **ref.owned_metadata(ref.consumer_name, component),
            # what spec.replicas should be: a hand-made change shows against it (repair.py)
            "annotations": {REPLICAS_ANNOTATION: str(replicas)},
        },
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
                    "labels": ref.labels(component),
                    "annotations": {"metricpipe.io/config-hash": config_hash},
                },
                "spec": pod,
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
