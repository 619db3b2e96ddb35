"""LogArchive: the model and its generated CRD, the names an archive owns, the archiver's
builders (Deployment confinement, archive.json, route without filters) and its status
decisions (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from metricpipe_contract.archive_model import LogArchiveSpec
from metricpipe_contract.archive_refs import ArchiveRef
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_operator.api.archive_crd import LOG_ARCHIVE
from metricpipe_operator.api.crd import build_crd, build_spec_schema, render_crd_yaml
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.archive_status import (
    Summary,
    decide_archive_ready,
    decide_committed_summary,
    decide_summary_status,
    merge_archive_conditions,
)
from metricpipe_operator.reconcile.archiver import (
    ARCHIVE_FILE,
    build_archive_config_hash,
    build_archive_configmap,
    build_archive_document,
    build_archive_topic_plan,
    build_archiver_deployment,
)
from metricpipe_operator.reconcile.route import (
    build_cluster_filter,
    build_cluster_output,
    build_fluent_conf,
    build_route_configmap,
)
from metricpipe_operator.reconcile.status import Condition

REPO = Path(__file__).resolve().parents[2]
REF = ArchiveRef("team-a", "edge", "uid-7", 2)
CONFIG = OperatorConfig(kafka_bootstrap="kafka:9092", webhdfs_url="http://nn:9870/webhdfs/v1")
URL = "http://nn:9870/webhdfs/v1"
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def spec_of(**extra: Any) -> LogArchiveSpec:
    return LogArchiveSpec.model_validate({"source": {"tag": "edge.**"}, **extra})


# -- the model and its CRD ---------------------------------------------------------------------


def test_committed_crd_is_the_generated_one() -> None:
    committed = (REPO / "crds" / "logarchives.metricpipe.io.yaml").read_text()
    assert committed == render_crd_yaml(LOG_ARCHIVE), "run `make crds` and commit the result"
    assert yaml.safe_load(committed) == build_crd(LOG_ARCHIVE)
    kustomization = yaml.safe_load((REPO / "crds" / "kustomization.yaml").read_text())
    assert "logarchives.metricpipe.io.yaml" in kustomization["resources"]


def test_crd_names_subresources_and_columns() -> None:
    crd = build_crd(LOG_ARCHIVE)
    assert crd["metadata"]["name"] == "logarchives.metricpipe.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "LogArchive", "logarchives", ["la"],
    )  # fmt: skip
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }  # fmt: skip
    shown = [c["name"].upper() for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert shown == ["READY", "ARCHIVED-THROUGH", "LAG", "BYTES", "FILES", "AGE"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for field in ("conditions", "archivedThrough", "lagRecords", "bytes", "files", "replicas",
                  "observedGeneration", "selector"):  # fmt: skip
        assert field in status, field


def _rules(schema: dict[str, Any]) -> list[str]:
    return [rule["message"] for rule in schema.get("x-kubernetes-validations", [])]


def test_cel_rules_say_what_to_change() -> None:
    spec = build_spec_schema(LOG_ARCHIVE)
    messages = " | ".join(_rules(spec))
    assert "freshness.target must be at least roll.maxAge" in messages
    assert "replicas must lie within scaling.minReplicas..scaling.maxReplicas" in messages
    assert "retentionDays must be between 1 and 3650" in messages
    props = spec["properties"]
    assert "scaling.minReplicas must not exceed" in " ".join(_rules(props["scaling"]))
    assert "roll.maxAge must lie between 1s and 1h" in " ".join(_rules(props["roll"]))
    assert "replicationFactor cannot be changed" in " ".join(_rules(props["topic"]))
    assert "filters" not in props["source"]["properties"]  # an archive keeps every record


def test_schema_defaults_are_the_model_defaults() -> None:
    dumped = spec_of().model_dump(by_alias=True, mode="json", exclude_none=True)
    props = build_spec_schema(LOG_ARCHIVE)["properties"]
    for section in ("topic", "freshness", "scaling", "roll"):
        assert props[section]["default"] == dumped[section], section
    assert dumped["topic"] == {"partitions": 6, "replicationFactor": 1, "retention": "24h",
                               "deletionPolicy": "Retain"}  # fmt: skip
    assert (dumped["retentionDays"], dumped["freshness"], dumped["roll"]) == (
        30, {"target": "15m"}, {"maxBytes": 64 * 1024 * 1024, "maxAge": "60s"},
    )  # fmt: skip
    assert "index" not in dumped
    assert dumped["source"]["format"] == "json"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"retentionDays": 0}, "retentionDays"),
        ({"retentionDays": 3651}, "retentionDays"),
        ({"roll": {"maxBytes": 1000}}, "roll.maxBytes"),
        ({"source": {"tag": "edge.**", "format": "csv"}}, "format"),
        ({"source": {"tag": "edge.**", "filters": []}}, "filters"),
        ({"topic": {"name": "logs"}}, "name"),
        ({"index": {"enabled": True, "retentionDays": 0}}, "index.retentionDays"),
        ({"freshness": {"target": "15 minutes"}}, "target"),
    ],
)  # fmt: skip
def test_model_refuses(extra: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        spec_of(**extra)


# -- names -------------------------------------------------------------------------------------


def test_an_archive_and_a_pipeline_of_the_same_name_share_nothing() -> None:
    pipeline = PipelineRef("team-a", "edge", "uid-1")
    pipeline_spec = MetricPipelineSpec.model_validate(
        {"source": {"tag": "edge.**"}, "metric": {"aggregation": "count"}}
    )
    assert REF.key == "team-a/edge.archive" != pipeline.key
    assert build_archive_topic_plan(REF, spec_of()).name == "metricpipe.team-a.edge.archive"
    assert pipeline_spec.topic_name("team-a", "edge") == "metricpipe.team-a.edge"
    assert REF.consumer_group == "metricpipe.team-a.edge.archive" != pipeline.consumer_group
    assert REF.cluster_route_name == "mp-team-a.edge.archive" != pipeline.cluster_route_name
    archive_names = {REF.consumer_name, REF.config_name, REF.route_configmap_name}
    assert archive_names == {"edge-archiver", "edge-archive-route"}
    assert archive_names.isdisjoint({pipeline.consumer_name, pipeline.config_name,
                                     pipeline.route_configmap_name})  # fmt: skip
    assert REF.selector_labels()["app.kubernetes.io/name"] == "metricpipe-archiver"
    assert "metricpipe.io/pipeline" not in REF.labels("archiver")
    assert REF.owner_reference()["kind"] == "LogArchive"


def test_long_names_get_a_hashed_route_name_of_their_own() -> None:
    ref = ArchiveRef("n" * 63, "a" * 63, "u")
    name = ref.cluster_route_name
    assert len(name) <= 63
    assert name != PipelineRef("n" * 63, "a" * 63, "u").cluster_route_name


# -- builders ----------------------------------------------------------------------------------


def test_archiver_deployment_is_confined_like_the_consumers() -> None:
    deployment = build_archiver_deployment(REF, spec_of(replicas=3,
                                           scaling={"maxReplicas": 3}), CONFIG, "h1")  # fmt: skip
    assert deployment["metadata"]["name"] == "edge-archiver"
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "LogArchive"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["selector"]["matchLabels"] == REF.selector_labels()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == CONFIG.consumer_image
    assert container["command"] == ["python", "-m", "metricpipe_consumers.archive"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"]
    assert container["resources"]["requests"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["METRICPIPE_ARCHIVE_CONFIG"] == f"/etc/metricpipe/{ARCHIVE_FILE}"
    assert env["METRICPIPE_ARCHIVE_ROLL_BYTES"] == str(64 * 1024 * 1024)
    assert env["METRICPIPE_ARCHIVE_ROLL_SECONDS"] == "60"
    assert env["TMPDIR"] == "/tmp"  # noqa: S108 - the pod's emptyDir
    assert env["METRICPIPE_METRICS_PORT"] == str(CONFIG.consumer_metrics_port)
    assert container["ports"] == [{"name": "metrics", "containerPort": CONFIG.consumer_metrics_port,
                                   "protocol": "TCP"}]  # fmt: skip
    probes = {kind: container[kind]["httpGet"]["path"] for kind in
              ("startupProbe", "livenessProbe", "readinessProbe")}  # fmt: skip
    assert probes == {"startupProbe": "/startupz", "livenessProbe": "/healthz",
                      "readinessProbe": "/readyz"}  # fmt: skip
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/etc/metricpipe", "/tmp"}  # noqa: S108
    assert {v["name"] for v in pod["volumes"]} == {"config", "tmp"}


def test_archive_json_is_what_the_archiver_reads() -> None:
    spec = spec_of(source={"tag": "edge.**", "format": "apache_combined"}, retentionDays=90)
    configmap = build_archive_configmap(REF, spec, CONFIG, URL)
    assert configmap["metadata"]["name"] == "edge-archiver"
    document = json.loads(configmap["data"][ARCHIVE_FILE])
    assert document == {
        "archive": {"namespace": "team-a", "name": "edge"},
        "topic": "metricpipe.team-a.edge.archive",
        "consumerGroup": "metricpipe.team-a.edge.archive",
        "kafka": document["kafka"],
        "hdfs": {"webhdfsUrl": URL, "user": "metricpipe-archiver",
                 "root": "/metricpipe/archives"},
        "format": "apache_combined",
        "retentionDays": 90,
    }  # fmt: skip
    assert document["kafka"]["bootstrap"] == "kafka:9092"
    assert build_archive_document(REF, spec, CONFIG, URL) == document


def test_secured_kafka_mounts_the_default_credentials() -> None:
    secured = OperatorConfig(kafka_bootstrap="kafka:9093", kafka_security_protocol="SASL_SSL",
                             kafka_sasl_mechanism="SCRAM-SHA-512",
                             kafka_pipeline_secret="kafka-user")  # fmt: skip
    document = build_archive_document(REF, spec_of(), secured, URL)
    assert document["kafka"]["securityProtocol"] == "SASL_SSL"
    assert document["kafka"]["credentialsSecret"] == "kafka-user"
    pod = build_archiver_deployment(REF, spec_of(), secured, "h")["spec"]["template"]["spec"]
    (secret,) = [v for v in pod["volumes"] if "secret" in v]
    assert secret["secret"]["secretName"] == "kafka-user"


def test_config_hash_follows_archive_json_and_roll() -> None:
    base = build_archive_configmap(REF, spec_of(), CONFIG, URL)
    same = build_archive_config_hash(base, spec_of())
    assert build_archive_config_hash(base, spec_of()) == same
    assert build_archive_config_hash(base, spec_of(roll={"maxAge": "30s"})) != same
    other = build_archive_configmap(REF, spec_of(retentionDays=7), CONFIG, URL)
    assert build_archive_config_hash(other, spec_of()) != same


def test_topic_plan() -> None:
    plan = build_archive_topic_plan(REF, spec_of(topic={"partitions": 3, "retention": "48h"}))
    assert (plan.partitions, plan.replication_factor) == (3, 1)
    assert plan.config == {"cleanup.policy": "delete", "retention.ms": str(48 * 3600 * 1000)}


def test_route_forwards_every_record_of_the_tag() -> None:
    spec = spec_of(source={"tag": "edge.nginx.**", "format": "apache_combined"})
    topic = "metricpipe.team-a.edge.archive"
    assert build_cluster_filter(REF, spec) is None
    output = build_cluster_output(REF, spec, topic, "kafka:9092")
    assert output["metadata"]["name"] == "mp-team-a.edge.archive"
    assert output["metadata"]["annotations"]["metricpipe.io/owner"] == "team-a/edge.archive"
    (forward,) = output["spec"]["outputs"]
    assert (forward["tag"], forward["kafka"]["defaultTopic"]) == ("edge.nginx.**", topic)
    conf = build_fluent_conf(REF, spec, topic, "kafka:9092")
    assert "@type grep" not in conf
    assert "@type parser" not in conf
    assert f"default_topic {topic}" in conf
    configmap = build_route_configmap(REF, spec, topic, "kafka:9092")
    assert configmap["metadata"]["name"] == "edge-archive-route"


# -- status ------------------------------------------------------------------------------------


def _c(kind: str, status: bool | None, reason: str = "R") -> dict[str, Any]:
    text = "Unknown" if status is None else str(status)
    return {"type": kind, "status": text, "reason": reason, "message": f"{kind} {reason}"}


READY_CASES = [
    ([], None, "TopicReadyPending"),
    ([_c("TopicReady", True), _c("RouteReady", True), _c("ArchiverReady", True)], True,
     "AllReady"),
    ([_c("TopicReady", False, "Conflict"), _c("RouteReady", None, "NotApplied")], False,
     "TopicReadyConflict"),
    ([_c("TopicReady", True), _c("RouteReady", True), _c("ArchiverReady", False, "Down")],
     False, "ArchiverReadyDown"),
    ([_c("TopicReady", True), _c("RouteReady", True), _c("ArchiverReady", True),
      _c("HdfsReady", False, "WebHdfsUnavailable")], False, "HdfsReadyWebHdfsUnavailable"),
    ([_c("TopicReady", True), _c("RouteReady", True), _c("ArchiverReady", True),
      _c("HdfsReady", None), _c("Archived", False, "BehindTarget")], True, "AllReady"),
]  # fmt: skip


@pytest.mark.parametrize(("conditions", "status", "reason"), READY_CASES)
def test_ready(conditions: list[dict[str, Any]], status: bool | None, reason: str) -> None:
    ready = decide_archive_ready(conditions)
    assert (ready.status, ready.reason) == (status, reason)


def test_an_index_condition_of_an_older_operator_is_dropped() -> None:
    parts = [_c(k, True) for k in ("TopicReady", "RouteReady", "ArchiverReady")]
    older = [*parts, _c("IndexReady", False, "NotImplemented")]
    merged = merge_archive_conditions(older, [], 2, NOW, drop=("IndexReady",))
    assert [c["type"] for c in merged] == ["Ready", "TopicReady", "RouteReady", "ArchiverReady"]


def test_the_index_goes_to_archive_json_with_credentials_by_secret_reference() -> None:
    plain = build_archive_document(REF, spec_of(index={"enabled": False}), CONFIG, "http://nn")
    assert "index" not in plain
    spec = spec_of(index={
        "enabled": True, "backend": "opensearch", "retentionDays": 3,
        "credentialsSecretRef": {"name": "search-user"}, "caSecretRef": {"name": "search-ca"},
    })  # fmt: skip
    document = build_archive_document(REF, spec, CONFIG, "http://nn")
    assert document["index"] == {
        "backend": "opensearch", "endpoint": CONFIG.opensearch_url,
        "prefix": "metricpipe-logs-team-a.edge", "retentionDays": 3,
        "caFile": "/var/run/secrets/metricpipe/sink-ca/ca.crt",
    }  # fmt: skip
    pod = build_archiver_deployment(REF, spec, CONFIG, "h")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                  if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]}  # fmt: skip
    assert secret_env == {
        "METRICPIPE_SINK_USERNAME": {"name": "search-user", "key": "username"},
        "METRICPIPE_SINK_PASSWORD": {"name": "search-user", "key": "password"},
    }
    assert not any("value" in e and "search" in str(e["value"]) for e in container["env"])
    (ca,) = [v for v in pod["volumes"] if v["name"] == "sink-ca"]
    assert ca["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert {"name": "sink-ca", "mountPath": "/var/run/secrets/metricpipe/sink-ca",
            "readOnly": True} in container["volumeMounts"]  # fmt: skip


@pytest.mark.parametrize(
    ("whole", "offsets", "staging", "expected"),
    [
        (None, None, None, Summary(0, 0)),  # nothing written yet
        ((5000, 7), (0, 3), None, Summary(5000, 4)),  # 3 offset markers (empty files)
        ((9000, 9), (0, 3), (4000, 2), Summary(5000, 4)),  # a batch staged, not committed
        ((10, 1), (0, 3), (20, 2), Summary(0, 0)),  # read mid-change: never negative
    ],
)  # fmt: skip
def test_committed_summary(
    whole: tuple[int, int] | None, offsets: tuple[int, int] | None,
    staging: tuple[int, int] | None, expected: Summary,
) -> None:  # fmt: skip
    assert decide_committed_summary(whole, offsets, staging) == expected


def test_summary_status() -> None:
    numbers, condition = decide_summary_status(Summary(123, 4), None, "/a/ns/x", NOW)
    assert numbers == {"bytes": 123, "files": 4, "lastSummaryTime": "2026-12-05T10:00:00Z"}
    assert condition == Condition("HdfsReady", True, "Read",
                                  "4 committed files, 123 bytes in /a/ns/x")  # fmt: skip
    numbers, condition = decide_summary_status(None, "HTTP 403", "/a/ns/x", NOW)
    assert numbers == {}  # the last numbers stay
    assert (condition.status, condition.reason) == (False, "WebHdfsUnavailable")
    assert "HTTP 403" in condition.message
