"""The operator against the real API server, controller-manager and Kafka."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from helpers import wait_for
from metricpipe_devstack.env import StackEnv
from pipelines import (
    condition,
    condition_is,
    create_pipeline,
    get_pipeline,
    patch_spec,
    printed_table,
    topic_state,
)

SPEC: dict[str, Any] = {
    "source": {
        "tag": "web.access.**",
        "format": "apache_combined",
        "filters": [{"field": "status", "matches": "^5"}, {"field": "host", "exists": True}],
    },
    "topic": {"partitions": 3, "retention": "2h"},
    "metric": {"aggregation": "rate", "window": "1m", "allowedLateness": "10s",
               "groupBy": ["status"]},
}  # fmt: skip
FLUENT = ("fluentd.fluent.io", "v1alpha1")


def fluent_object(kube: client.ApiClient, plural: str, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = client.CustomObjectsApi(kube).get_cluster_custom_object(
            *FLUENT, plural, name
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return result


@pytest.mark.usefixtures("fluent_operator_crds")
def test_apply_creates_topic_route_and_consumer(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    start_operator(namespace)
    create_pipeline(kube, namespace, "web-5xx", SPEC)
    pipeline = wait_for(
        lambda: condition_is(kube, namespace, "web-5xx", "Ready", "True"),
        timeout=60, what="Ready=True",
    )  # fmt: skip
    for kind in ("TopicReady", "RouteReady", "ConsumerReady"):
        assert condition(pipeline, kind)["status"] == "True", kind
    assert pipeline["status"]["observedGeneration"] == pipeline["metadata"]["generation"]

    topic = f"metricpipe.{namespace}.web-5xx"
    state = topic_state(stack.kafka_bootstrap, topic)
    assert state is not None
    assert state[0] == 3
    assert state[1]["retention.ms"] == str(2 * 3600 * 1000)
    dead_letters = topic_state(stack.kafka_bootstrap, f"{topic}.dlq")
    assert dead_letters is not None
    assert dead_letters[0] == 1

    # The route: fluent-operator objects, accepted by the API server against their own CRDs.
    route = f"mp-{namespace}-web-5xx"
    grep = fluent_object(kube, "clusterfilters", route)
    output = fluent_object(kube, "clusteroutputs", route)
    config = fluent_object(kube, "clusterfluentdconfigs", route)
    assert grep is not None
    assert output is not None
    assert config is not None
    assert grep["spec"]["filters"][0]["grep"]["regexp"] == [
        {"key": "status", "pattern": "/^5/"},
        {"key": "host", "pattern": "/.*/"},
    ]
    assert output["spec"]["outputs"][0]["kafka"]["defaultTopic"] == topic
    assert config["spec"]["clusterOutputSelector"]["matchLabels"]["metricpipe.io/route"] == route
    core = client.CoreV1Api(kube)
    conf = core.read_namespaced_config_map("web-5xx-fluentd-route", namespace).data["fluent.conf"]
    assert f"default_topic {topic}" in conf

    # The consumer: secure Deployment, a ReplicaSet from the real controller-manager.
    apps = client.AppsV1Api(kube)
    deployment = apps.read_namespaced_deployment("web-5xx-consumer", namespace)
    container = deployment.spec.template.spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.run_as_non_root is True
    assert container.security_context.capabilities.drop == ["ALL"]
    assert deployment.metadata.owner_references[0].kind == "MetricPipeline"
    wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, what="a ReplicaSet")

    headers, rows = printed_table(kube, namespace)
    assert headers == ["NAME", "MODE", "TOPIC", "PARTITIONS", "REPLICAS", "LAG", "TIME-LAG",
                       "FRESHNESS", "SLO", "INPUT/S", "CAP/S", "READY", "AGE"]  # fmt: skip
    (row,) = rows
    assert row[:5] == ["web-5xx", "stream", topic, 3, 1]
    assert row[headers.index("READY")] == "True"

    events = core.list_namespaced_event(namespace).items
    reasons = {e.reason for e in events if e.involved_object.kind == "MetricPipeline"}
    assert {"TopicCreated", "DeploymentCreated", "ConfigMapCreated"} <= reasons


def test_update_raises_partitions_and_retention_refuses_decrease(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    start_operator(namespace)
    create_pipeline(kube, namespace, "p", SPEC)
    wait_for(lambda: condition_is(kube, namespace, "p", "Ready", "True"), what="Ready")
    topic = f"metricpipe.{namespace}.p"

    patch_spec(kube, namespace, "p", {"topic": {"partitions": 5, "retention": "3h"}})
    wait_for(
        lambda: (topic_state(stack.kafka_bootstrap, topic) or (0, {}))[0] == 5,
        what="5 partitions",
    )
    wait_for(
        lambda: topic_state(stack.kafka_bootstrap, topic)[1]["retention.ms"] == "10800000",  # type: ignore[index]
        what="retention 3h",
    )

    patch_spec(kube, namespace, "p", {"topic": {"partitions": 2}})
    refused = wait_for(
        lambda: condition_is(
            kube, namespace, "p", "TopicReady", "False", reason="PartitionDecreaseRefused"
        ),
        what="the decrease refused",
    )
    message = condition(refused, "TopicReady")["message"]
    assert "has 5 partitions" in message
    assert "spec.topic.partitions to 5 or more" in message
    assert condition(refused, "Ready")["status"] == "False"
    assert topic_state(stack.kafka_bootstrap, topic)[0] == 5  # type: ignore[index]


@pytest.mark.usefixtures("fluent_operator_crds")
def test_delete_retain_and_delete_policies(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    start_operator(namespace)
    create_pipeline(kube, namespace, "keep", SPEC)
    create_pipeline(kube, namespace, "drop", {**SPEC, "topic": {"deletionPolicy": "Delete"}})
    for name in ("keep", "drop"):
        wait_for(lambda n=name: condition_is(kube, namespace, n, "Ready", "True"), what="Ready")
    objects = client.CustomObjectsApi(kube)
    for name in ("keep", "drop"):
        objects.delete_namespaced_custom_object(
            "metricpipe.io", "v1alpha1", namespace, "metricpipelines", name
        )
    apps = client.AppsV1Api(kube)
    wait_for(
        lambda: (
            not objects.list_namespaced_custom_object(
                "metricpipe.io", "v1alpha1", namespace, "metricpipelines"
            )["items"]
        ),
        what="pipelines gone (finalizer done)",
    )
    wait_for(lambda: not apps.list_namespaced_deployment(namespace).items,
             what="Deployments garbage-collected")  # fmt: skip
    core = client.CoreV1Api(kube)
    wait_for(
        lambda: not [c for c in core.list_namespaced_config_map(namespace).items
                     if c.metadata.name != "kube-root-ca.crt"],
        what="ConfigMaps garbage-collected",
    )  # fmt: skip
    assert topic_state(stack.kafka_bootstrap, f"metricpipe.{namespace}.keep") is not None
    for name in (f"metricpipe.{namespace}.drop", f"metricpipe.{namespace}.drop.dlq"):
        wait_for(
            lambda n=name: topic_state(stack.kafka_bootstrap, n) is None,
            what=f"{name} of the Delete pipeline gone",
        )
    for name in ("keep", "drop"):
        assert fluent_object(kube, "clusteroutputs", f"mp-{namespace}-{name}") is None


@pytest.mark.usefixtures("fluent_operator_crds")
def test_operator_killed_after_topic_creation_converges_without_duplicates(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    operator = start_operator(namespace)
    create_pipeline(kube, namespace, "crash", SPEC)
    topic = f"metricpipe.{namespace}.crash"
    wait_for(lambda: topic_state(stack.kafka_bootstrap, topic), timeout=60, what="topic created")
    operator.stop(kill=True)  # SIGKILL right after the topic exists

    start_operator(namespace)
    pipeline = wait_for(
        lambda: condition_is(kube, namespace, "crash", "Ready", "True"), what="converged"
    )
    assert pipeline["status"]["topic"] == {"name": topic, "partitions": 3}
    apps = client.AppsV1Api(kube)
    assert len(apps.list_namespaced_deployment(namespace).items) == 1
    assert len(apps.list_namespaced_replica_set(namespace).items) == 1
    assert topic_state(stack.kafka_bootstrap, topic)[0] == 3  # type: ignore[index]
    objects = client.CustomObjectsApi(kube)
    route = f"mp-{namespace}-crash"
    for plural in ("clusteroutputs", "clusterfilters", "clusterfluentdconfigs"):
        items = objects.list_cluster_custom_object(
            "fluentd.fluent.io", "v1alpha1", plural, label_selector=f"metricpipe.io/route={route}"
        )["items"]
        assert len(items) == 1, plural
    assert get_pipeline(kube, namespace, "crash")["metadata"]["finalizers"] == [
        "metricpipe.io/finalizer"
    ]


def workloads(kube: client.ApiClient, namespace: str, name: str) -> tuple[bool, Any]:
    """(the consumer Deployment exists, the batch CronJob or None)."""
    apps, batch = client.AppsV1Api(kube), client.BatchV1Api(kube)
    names = {d.metadata.name for d in apps.list_namespaced_deployment(namespace).items}
    cronjobs = {c.metadata.name: c for c in batch.list_namespaced_cron_job(namespace).items}
    return f"{name}-consumer" in names, cronjobs.get(f"{name}-consumer")


def test_batch_mode_runs_a_cronjob_and_switches_both_ways(
    kube: client.ApiClient, namespace: str, start_operator: Callable[..., Any]
) -> None:
    start_operator(namespace)
    hourly = {**SPEC["metric"], "window": "1h", "allowedLateness": "10m"}
    batch_spec = {**SPEC, "mode": "batch", "replicas": 2, "metric": hourly}
    create_pipeline(kube, namespace, "hourly", batch_spec)
    pipeline = wait_for(
        lambda: condition_is(kube, namespace, "hourly", "ConsumerReady", "True"),
        timeout=60, what="ConsumerReady=True",
    )  # fmt: skip
    assert condition(pipeline, "ConsumerReady")["reason"] == "Scheduled"
    deployment, cronjob = workloads(kube, namespace, "hourly")
    assert not deployment
    assert cronjob is not None
    assert cronjob.spec.schedule == "10 * * * *"  # each hour's window, after its lateness
    assert cronjob.spec.concurrency_policy == "Forbid"
    container = cronjob.spec.job_template.spec.template.spec.containers[0]
    assert container.args == ["batch"]
    assert {"name": "METRICPIPE_SPARK_MASTER", "value": "local[2]"} in [
        {"name": e.name, "value": e.value} for e in container.env
    ]  # the pipeline's replicas are each run's parallelism

    patch_spec(kube, namespace, "hourly", {"mode": "stream"})
    wait_for(lambda: workloads(kube, namespace, "hourly") == (True, None), timeout=60,
             what="a Deployment and no CronJob after the switch to stream")  # fmt: skip
    patch_spec(kube, namespace, "hourly", {"mode": "batch"})
    wait_for(lambda: not workloads(kube, namespace, "hourly")[0]
             and workloads(kube, namespace, "hourly")[1] is not None, timeout=60,
             what="a CronJob and no Deployment after the switch back to batch")  # fmt: skip
    back = wait_for(
        lambda: condition_is(kube, namespace, "hourly", "ConsumerReady", "True",
                             reason="Scheduled"),
        timeout=60, what="ConsumerReady=Scheduled again",
    )  # fmt: skip
    assert condition(back, "Ready")["status"] == "True"
