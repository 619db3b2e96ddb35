"""Pure builders: consumer Deployment, route, conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.consumer import (
    STARTUP_BUDGET_SECONDS,
    STARTUP_MEASURED_SECONDS,
    build_consumer_configmap,
    build_deployment,
    build_pipeline_document,
)
from metricpipe_operator.reconcile.pipeline import build_config_hash, evaluate_deployment
from metricpipe_operator.reconcile.status import (
    Condition,
    build_ready,
    merge_conditions,
    rebuild_ready,
)

REF = PipelineRef("team-a", "http-5xx", "uid-1", 3)
CONFIG = OperatorConfig(kafka_bootstrap="kafka:9092")


def spec_of(**extra: Any) -> MetricPipelineSpec:
    base: dict[str, Any] = {"source": {"tag": "web.**"}, "metric": {"aggregation": "count"}}
    return MetricPipelineSpec.model_validate({**base, **extra})


def test_deployment_has_a_secure_pod_spec() -> None:
    deployment = build_deployment(REF, spec_of(), CONFIG, "h", replicas=2)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts >= {"/tmp", "/var/lib/metricpipe/scratch"}  # noqa: S108 - emptyDirs
    assert pod["automountServiceAccountToken"] is False
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "metricpipe-operator"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_credentials_only_through_secret_references() -> None:
    spec = spec_of(sink={"credentialsSecretRef": {"name": "es-creds"}})
    container = build_deployment(REF, spec, CONFIG, "h", 1)["spec"]["template"]["spec"][
        "containers"
    ][0]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                  if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]}  # fmt: skip
    assert secret_env == {
        "METRICPIPE_SINK_USERNAME": {"name": "es-creds", "key": "username"},
        "METRICPIPE_SINK_PASSWORD": {"name": "es-creds", "key": "password"},
    }
    document = build_pipeline_document(REF, spec, "t", CONFIG)
    # The ConfigMap handed to the pod carries the reference only, never a credential.
    assert document["spec"]["sink"]["credentialsSecretRef"] == {
        "name": "es-creds",
        "usernameKey": "username",
        "passwordKey": "password",
        "apiKeyKey": None,
    }


def test_an_api_key_replaces_user_and_password() -> None:
    spec = spec_of(sink={"credentialsSecretRef": {"name": "es-key", "apiKeyKey": "api_key"}})
    container = build_deployment(REF, spec, CONFIG, "h", 1)["spec"]["template"]["spec"][
        "containers"
    ][0]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                  if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]}  # fmt: skip
    assert secret_env == {"METRICPIPE_SINK_API_KEY": {"name": "es-key", "key": "api_key"}}


def test_the_sink_ca_is_mounted_from_its_secret_key_only() -> None:
    spec = spec_of(sink={"caSecretRef": {"name": "es-http-certs-public", "key": "tls.crt"}})
    pod = build_deployment(REF, spec, CONFIG, "h", 1)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "sink-ca"]
    assert volume["secret"]["secretName"] == "es-http-certs-public"
    assert volume["secret"]["items"] == [{"key": "tls.crt", "path": "ca.crt"}]
    assert volume["secret"]["defaultMode"] == 0o440
    assert volume["secret"]["optional"] is True  # a missing one is named by the consumer
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "sink-ca"]
    assert mount["readOnly"] is True
    document = build_pipeline_document(REF, spec, "t", CONFIG)
    assert document["sink"]["caFile"] == f"{mount['mountPath']}/ca.crt"
    plain = build_deployment(REF, spec_of(), CONFIG, "h", 1)["spec"]["template"]["spec"]
    assert "sink-ca" not in {v["name"] for v in plain["volumes"]}
    assert "caFile" not in build_pipeline_document(REF, spec_of(), "t", CONFIG)["sink"]


def test_config_hash_follows_the_spec() -> None:
    one = build_config_hash(build_consumer_configmap(REF, spec_of(), "t", CONFIG))
    same = build_config_hash(build_consumer_configmap(REF, spec_of(), "t", CONFIG))
    other = build_config_hash(
        build_consumer_configmap(REF, spec_of(metric={"aggregation": "rate"}), "t", CONFIG)
    )
    assert one == same != other


# -- conditions --------------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)


def test_last_transition_time_changes_only_with_status() -> None:
    first = merge_conditions([], [Condition("TopicReady", False, "KafkaUnavailable", "x")], 1, T0)
    same = merge_conditions(first, [Condition("TopicReady", False, "KafkaUnavailable", "y")], 2, T1)
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert (same[0]["message"], same[0]["observedGeneration"]) == ("y", 2)
    flipped = merge_conditions(same, [Condition("TopicReady", True, "TopicInSync", "ok")], 2, T1)
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert flipped[0]["status"] == "True"


def test_ready_names_the_first_part_that_is_not_ready() -> None:
    parts = [
        Condition("TopicReady", True, "TopicInSync", ""),
        Condition("RouteReady", False, "ApplyFailed", "forbidden"),
        Condition("ConsumerReady", None, "RolloutPending", ""),
    ]
    ready = build_ready(parts)
    assert (ready.status, ready.reason, ready.message) == (
        False,
        "RouteReadyApplyFailed",
        "forbidden",
    )
    assert build_ready(parts[:1]).status is True


@pytest.mark.parametrize(
    ("deployment", "status", "reason"),
    [
        (None, None, "NotFound"),
        ({"metadata": {"generation": 2}, "status": {"observedGeneration": 1}}, None,
         "RolloutPending"),
        ({"metadata": {"generation": 2}, "spec": {"replicas": 2},
          "status": {"observedGeneration": 2, "replicas": 2, "readyReplicas": 1,
                     "conditions": [{"type": "Progressing", "status": "True",
                                     "reason": "NewReplicaSetAvailable"}]}}, True,
         "PartiallyAvailable"),
        ({"metadata": {"generation": 2}, "spec": {"replicas": 1},
          "status": {"observedGeneration": 2, "replicas": 1, "readyReplicas": 0,
                     "conditions": [{"type": "Progressing", "status": "True",
                                     "reason": "NewReplicaSetAvailable"}]}}, False,
         "ReplicasUnavailable"),  # the rollout is done, but nothing runs: not ready
        ({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "timed out"}]}}, False, "ProgressDeadlineExceeded"),
    ],
)  # fmt: skip
def test_evaluate_deployment(
    deployment: dict[str, Any] | None, status: bool | None, reason: str
) -> None:
    condition, _ = evaluate_deployment(deployment)
    assert (condition.status, condition.reason) == (status, reason)


def test_ready_is_not_true_while_a_part_is_missing() -> None:
    only_consumer = merge_conditions([], [Condition("ConsumerReady", True, "RolledOut", "")], 1, T0)
    ready = next(c for c in rebuild_ready(only_consumer, 1) if c["type"] == "Ready")
    assert ready["status"] == "Unknown"
    assert ready["reason"] == "SpecValidPending"


def test_batch_settings_and_spark_threads_reach_the_consumer_env() -> None:
    def env_of(**extra: Any) -> dict[str, str]:
        deployment = build_deployment(REF, spec_of(**extra), CONFIG, "h", replicas=1)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value") for e in container["env"]}

    plain = env_of()
    assert "METRICPIPE_MAX_BATCH_RECORDS" not in plain  # the consumer's own default
    assert plain["METRICPIPE_SPARK_MASTER"] == "local[1]"  # 500m requested: one thread
    tuned = env_of(consumer={"maxBatchRecords": 40, "maxBatchWait": "1500ms",
                             "resources": {"requests": {"cpu": "2500m"}}})  # fmt: skip
    assert tuned["METRICPIPE_MAX_BATCH_RECORDS"] == "40"
    assert tuned["METRICPIPE_MAX_BATCH_SECONDS"] == "1.5"
    assert tuned["METRICPIPE_SPARK_MASTER"] == "local[2]"


def test_consumer_probes_start_up_first_with_a_budget_for_a_loaded_machine() -> None:
    """Liveness must never judge a start: no initial delay of its own, a startup probe whose
    budget (period x failures) covers the start measured with twelve consumers at once on the
    2-core dev machine (STARTUP_MEASURED_SECONDS) twice over."""
    (container,) = build_deployment(REF, spec_of(), CONFIG, "h", replicas=1)["spec"]["template"][
        "spec"
    ]["containers"]
    startup, liveness = container["startupProbe"], container["livenessProbe"]
    readiness = container["readinessProbe"]
    assert startup["httpGet"] == {"path": "/startupz", "port": "metrics"}
    assert liveness["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert readiness["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert "initialDelaySeconds" not in liveness
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget == STARTUP_BUDGET_SECONDS
    assert budget >= 2 * STARTUP_MEASURED_SECONDS > 0
    for probe in (startup, liveness, readiness):
        assert probe["timeoutSeconds"] >= 5  # a loaded machine answers late


def test_stream_consumer_jvm_starts_cheaply_sized_to_its_cpu_and_a_spec_can_replace_it() -> None:
    def env(spec: MetricPipelineSpec) -> list[tuple[str, str]]:
        (container,) = build_deployment(REF, spec, CONFIG, "h", replicas=1)["spec"]["template"][
            "spec"
        ]["containers"]
        return [(e["name"], e.get("value", "")) for e in container["env"]]

    default = dict(env(spec_of()))
    assert default["JAVA_TOOL_OPTIONS"] == "-XX:ActiveProcessorCount=1 -XX:TieredStopAtLevel=1"
    two = dict(env(spec_of(consumer={"resources": {"requests": {"cpu": "2"}}})))
    assert "-XX:ActiveProcessorCount=2" in two["JAVA_TOOL_OPTIONS"]
    assert two["METRICPIPE_SPARK_MASTER"] == "local[2]"
    own = env(spec_of(consumer={"env": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Xss2m"}]}))
    values = [value for name, value in own if name == "JAVA_TOOL_OPTIONS"]
    assert values[-1] == "-Xss2m"  # the last of a name is the one a container gets


def test_consumer_last_words_reach_the_pod_status() -> None:
    """The consumer writes why it stopped (a sink refusing it, a spec it cannot apply) where the
    kubelet takes the termination message from; its logs stand in when it wrote nothing."""
    (container,) = build_deployment(REF, spec_of(), CONFIG, "h", replicas=1)["spec"]["template"][
        "spec"
    ]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["METRICPIPE_TERMINATION_MESSAGE_PATH"] == container["terminationMessagePath"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
