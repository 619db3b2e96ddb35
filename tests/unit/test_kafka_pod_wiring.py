"""How a pipeline's pods get their Kafka connection: which Secret they mount (the pipeline's own,
else the operator's default, none with PLAINTEXT), and pipeline.json's `kafka`, which names the
mounted files and never holds a secret value. Expected values are written out by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from metricpipe_consumers.document import PipelineDocument
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.batchjob import build_cronjob
from metricpipe_operator.reconcile.consumer import (
    build_consumer_configmap,
    build_deployment,
    decide_kafka_secret,
)

REF = PipelineRef("team-a", "web", "uid-1", 1)
MOUNT = "/var/run/secrets/metricpipe/kafka"
SASL: dict[str, Any] = {"kafka_bootstrap": "kafka:9093", "kafka_security_protocol": "SASL_SSL"}


def spec_of(mode: str = "stream", kafka: dict[str, Any] | None = None) -> MetricPipelineSpec:
    return MetricPipelineSpec.model_validate({
        "mode": mode, "source": {"tag": "web.**"},
        "metric": {"aggregation": "count", "window": "1h"},
        **({"kafka": kafka} if kafka is not None else {}),
    })  # fmt: skip


OWN = {"credentialsSecretRef": {"name": "team-a-kafka", "username": "team-a-user",
                                "passwordKey": "pw"}}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "kafka", "secret"),
    [
        ({}, None, None),
        ({}, OWN, None),  # PLAINTEXT: nothing to authenticate with, nothing mounted
        ({"kafka_pipeline_secret": "metricpipe-kafka"}, None, None),
        (SASL, None, None),  # the consumer then stops and says where to name one
        ({**SASL, "kafka_pipeline_secret": "metricpipe-kafka"}, None, "metricpipe-kafka"),
        ({**SASL, "kafka_pipeline_secret": "metricpipe-kafka"}, OWN, "team-a-kafka"),
        ({**SASL, "kafka_security_protocol": "SSL"}, OWN, "team-a-kafka"),
    ],
)
def test_which_secret_a_pipeline_mounts(
    config: dict[str, Any], kafka: dict[str, Any] | None, secret: str | None
) -> None:
    chosen = decide_kafka_secret(spec_of(kafka=kafka), OperatorConfig(**config))
    assert (chosen.name if chosen else None) == secret


def pod_of(workload: dict[str, Any]) -> dict[str, Any]:
    template = workload["spec"].get("jobTemplate", {}).get("spec", workload["spec"])
    pod: dict[str, Any] = template["template"]["spec"]
    return pod


@pytest.mark.parametrize("mode", ["stream", "batch"])
def test_the_pods_mount_the_pipelines_secret_read_only_for_their_group(mode: str) -> None:
    config = OperatorConfig(**SASL)
    spec = spec_of(mode, OWN)
    workload = (
        build_deployment(REF, spec, config, "h", replicas=1)
        if mode == "stream"
        else build_cronjob(REF, spec, config, "h", parallelism=1)
    )
    pod = pod_of(workload)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["kafka-credentials"] == {
        "name": "kafka-credentials",
        "secret": {"secretName": "team-a-kafka", "defaultMode": 0o440, "optional": True},
    }
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["kafka-credentials"] == {
        "name": "kafka-credentials", "mountPath": MOUNT, "readOnly": True,
    }  # fmt: skip
    assert pod["securityContext"]["fsGroup"] == 65532  # the group the files are readable by
    assert not any("KAFKA" in e["name"] for e in container["env"])  # files only, no env


def test_no_secret_volume_with_plaintext_kafka() -> None:
    pod = pod_of(build_deployment(REF, spec_of(kafka=OWN), OperatorConfig(), "h", replicas=1))
    assert "kafka-credentials" not in {v["name"] for v in pod["volumes"]}
    (container,) = pod["containers"]
    assert "kafka-credentials" not in {m["name"] for m in container["volumeMounts"]}


def test_pipeline_json_names_the_files_and_holds_no_secret() -> None:
    config = OperatorConfig(**SASL, kafka_sasl_mechanism="SCRAM-SHA-256")
    configmap = build_consumer_configmap(REF, spec_of(kafka=OWN), "logs.web", config)
    document = json.loads(configmap["data"]["pipeline.json"])
    assert document["kafka"] == {
        "bootstrap": "kafka:9093",
        "securityProtocol": "SASL_SSL",
        "saslMechanism": "SCRAM-SHA-256",
        "credentialsDir": MOUNT,
        "credentialsSecret": "team-a-kafka",
        "username": "team-a-user",
        "usernameKey": "username",
        "passwordKey": "pw",
        "caKey": "ca.crt",
        "certificateKey": "tls.crt",
        "keyKey": "tls.key",
    }
    parsed = PipelineDocument.model_validate(document)  # the consumer's side of the contract
    assert parsed.kafka.credentials_dir is not None
    assert str(parsed.kafka.credentials_dir) == MOUNT
    assert parsed.kafka.password_key == "pw"


def test_a_plaintext_pipeline_json_has_no_credentials_dir() -> None:
    configmap = build_consumer_configmap(REF, spec_of(), "logs.web", OperatorConfig())
    kafka = json.loads(configmap["data"]["pipeline.json"])["kafka"]
    assert (kafka["bootstrap"], kafka["securityProtocol"], kafka["credentialsDir"]) == (
        "127.0.0.1:9092", "PLAINTEXT", None,
    )  # fmt: skip
