"""The operator against the real API server, controller-manager and Kafka."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import pytest
from confluent_kafka.admin import AdminClient
from kubernetes import client

from helpers import present, wait_for
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_devstack.env import StackEnv
from metricpipe_operator.reconcile.route import build_filter_steps, build_route_plan
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
        result = client.CustomObjectsApi(kube).get_cluster_custom_object(*FLUENT, plural, name)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return cast(dict[str, Any], result)  # a custom object is a JSON object


@pytest.mark.usefixtures("fluent_operator_crds")
def test_apply_creates_topic_route_and_consumer(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    start_operator(namespace)
    create_pipeline(kube, namespace, "web-5xx", SPEC)
    pipeline = wait_for(lambda: applied(kube, namespace, "web-5xx"), timeout=60, what="applied")
    for kind in ("SpecValid", "TopicReady", "RouteReady"):
        assert condition(pipeline, kind)["status"] == "True", kind
    # the consumer is evaluated (its pod may still be starting)
    assert condition(pipeline, "ConsumerReady")["reason"] != "NotApplied"

    topic = f"metricpipe.{namespace}.web-5xx"
    state = topic_state(stack.kafka_bootstrap, topic)
    assert state is not None
    assert state[0] == 3
    assert state[1]["retention.ms"] == str(2 * 3600 * 1000)
    dead_letters = topic_state(stack.kafka_bootstrap, f"{topic}.dlq")
    assert dead_letters is not None
    assert dead_letters[0] == state[0]  # a DLQ partition per input partition

    # The route: fluent-operator objects, accepted by the API server against their own CRDs.
    route = f"mp-{namespace}.web-5xx"
    grep = fluent_object(kube, "clusterfilters", route)
    output = fluent_object(kube, "clusteroutputs", route)
    config = fluent_object(kube, "clusterfluentdconfigs", route)
    assert grep is not None
    assert output is not None
    assert config is not None
    # Stored as built: the CRD's schema pruned nothing of the parser, grep and transformer.
    plan = build_route_plan(MetricPipelineSpec.model_validate(SPEC))
    steps = build_filter_steps("web.access.**", plan)
    assert grep["spec"]["filters"] == steps
    kinds = [next(k for k in step if k != "tag") for step in steps]
    assert kinds == ["parser", "parser", "grep", "recordTransformer"]  # `host exists`: consumer
    assert output["spec"]["outputs"][0]["kafka"]["defaultTopic"] == topic
    assert config["spec"]["clusterOutputSelector"]["matchLabels"]["metricpipe.io/route"] == route
    core = client.CoreV1Api(kube)
    route_conf = core.read_namespaced_config_map("web-5xx-fluentd-route", namespace).data
    assert route_conf is not None
    conf = route_conf["fluent.conf"]
    assert f"default_topic {topic}" in conf

    # The consumer: secure Deployment, a ReplicaSet from the real controller-manager.
    apps = client.AppsV1Api(kube)
    deployment = apps.read_namespaced_deployment("web-5xx-consumer", namespace)
    assert deployment.spec.template.spec is not None
    container = deployment.spec.template.spec.containers[0]
    security = container.security_context
    assert security is not None
    assert security.read_only_root_filesystem is True
    assert security.run_as_non_root is True
    assert security.capabilities is not None
    assert security.capabilities.drop == ["ALL"]
    assert deployment.metadata is not None
    assert deployment.metadata.owner_references is not None
    assert deployment.metadata.owner_references[0].kind == "MetricPipeline"
    wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, what="a ReplicaSet")

    headers, _ = printed_table(kube, namespace)
    assert headers == ["NAME", "MODE", "TOPIC", "PARTITIONS", "REPLICAS", "STATE", "NEXT-WAKE",
                       "LAG", "TIME-LAG", "FRESHNESS", "SLO", "REJECTED", "INPUT/S", "CAP/S",
                       "READY", "REASON", "AGE"]  # fmt: skip

    def table_shows_the_pipeline() -> list[Any] | None:
        """The row once the consumer's pod exists (REPLICAS follows the Deployment's status),
        with READY and REASON as status says them in a read right after: two reads, so a
        condition moving in between is read again."""
        (row,) = printed_table(kube, namespace)[1]
        ready = condition(get_pipeline(kube, namespace, "web-5xx"), "Ready")
        agrees = [row[headers.index("READY")], row[headers.index("REASON")]] == [
            ready["status"], ready["reason"]]  # fmt: skip
        return row if row[:5] == ["web-5xx", "stream", topic, 3, 1] and agrees else None

    wait_for(table_shows_the_pipeline, 60, "kubectl get mp's row: 1 replica, Ready as status says")

    events = core.list_namespaced_event(namespace).items
    reasons = {e.reason for e in events if e.involved_object.kind == "MetricPipeline"}
    assert {"TopicCreated", "DeploymentCreated", "ConfigMapCreated"} <= reasons


def test_update_raises_partitions_and_retention_refuses_decrease(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    start_operator(namespace)
    create_pipeline(kube, namespace, "p", SPEC)
    wait_for(lambda: condition_is(kube, namespace, "p", "TopicReady", "True"), what="TopicReady")
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
    wait_for(lambda: reconciled(kube, namespace, "p"), what="the raise reconciled")
    before = consumer_snapshot(kube, namespace, "p")
    applied = json.loads(before[2]["pipeline.json"])["spec"]  # the raise reached the pods' file
    assert applied["topic"]["partitions"] == 5, applied
    assert applied["consumer"]["maxBatchRecords"] != 500, applied  # the refused value, below

    # A decrease together with a consumer setting: refused as a whole, nothing else applied.
    patch_spec(kube, namespace, "p", {"topic": {"partitions": 2},
                                      "consumer": {"maxBatchRecords": 500}})  # fmt: skip
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
    assert consumer_snapshot(kube, namespace, "p") == before  # the Deployment was not rolled


def applied(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The pipeline once its current generation is applied: spec accepted, topic and route in
    place, the consumer evaluated ({} before)."""
    pipeline = get_pipeline(kube, namespace, name)
    done = reconciled(kube, namespace, name) and all(
        condition(pipeline, kind).get("status") == "True"
        for kind in ("SpecValid", "TopicReady", "RouteReady")
    )
    consumer = condition(pipeline, "ConsumerReady").get("reason")
    return pipeline if done and consumer not in (None, "NotApplied") else {}


def reconciled(kube: client.ApiClient, namespace: str, name: str) -> bool:
    pipeline = get_pipeline(kube, namespace, name)
    return bool(pipeline.get("status", {}).get("observedGeneration") ==
                pipeline["metadata"]["generation"])  # fmt: skip


def consumer_snapshot(kube: client.ApiClient, namespace: str, name: str) -> tuple[Any, ...]:
    """What a new spec would change in the consumer: the Deployment's generation and template
    annotations, and the pipeline.json the pods read."""
    deployment = client.AppsV1Api(kube).read_namespaced_deployment(f"{name}-consumer", namespace)
    config = client.CoreV1Api(kube).read_namespaced_config_map(f"{name}-config", namespace)
    assert deployment.metadata is not None
    assert deployment.spec.template.metadata is not None
    return (deployment.metadata.generation, deployment.spec.template.metadata.annotations,
            config.data)  # fmt: skip


@pytest.mark.usefixtures("fluent_operator_crds")
def test_delete_retain_and_delete_policies(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    start_operator(namespace)
    create_pipeline(kube, namespace, "keep", SPEC)
    create_pipeline(kube, namespace, "drop", {**SPEC, "topic": {"deletionPolicy": "Delete"}})
    for name in ("keep", "drop"):
        wait_for(partial(applied, kube, namespace, name), what=f"{name} applied")
    objects = client.CustomObjectsApi(kube)
    for name in ("keep", "drop"):
        objects.delete_namespaced_custom_object(
            "metricpipe.io", "v1alpha1", namespace, "metricpipelines", name
        )
    apps = client.AppsV1Api(kube)
    wait_for(
        lambda: (
            not cast(
                dict[str, Any],
                objects.list_namespaced_custom_object(
                    "metricpipe.io", "v1alpha1", namespace, "metricpipelines"
                ),
            )["items"]
        ),
        what="pipelines gone (finalizer done)",
    )
    wait_for(lambda: not apps.list_namespaced_deployment(namespace).items,
             what="Deployments garbage-collected")  # fmt: skip
    core = client.CoreV1Api(kube)
    wait_for(
        lambda: not [c for c in core.list_namespaced_config_map(namespace).items
                     if present(c.metadata).name != "kube-root-ca.crt"],
        what="ConfigMaps garbage-collected",
    )  # fmt: skip
    assert topic_state(stack.kafka_bootstrap, f"metricpipe.{namespace}.keep") is not None
    for name in (f"metricpipe.{namespace}.drop", f"metricpipe.{namespace}.drop.dlq"):

        def gone(topic: str = name) -> bool:
            return topic_state(stack.kafka_bootstrap, topic) is None

        wait_for(gone, what=f"{name} of the Delete pipeline gone")
    for name in ("keep", "drop"):
        assert fluent_object(kube, "clusteroutputs", f"mp-{namespace}.{name}") is None


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
    pipeline = wait_for(lambda: applied(kube, namespace, "crash"), what="converged")
    assert pipeline["status"]["topic"] == {"name": topic, "partitions": 3}
    apps = client.AppsV1Api(kube)
    assert len(apps.list_namespaced_deployment(namespace).items) == 1
    assert len(apps.list_namespaced_replica_set(namespace).items) == 1
    assert topic_state(stack.kafka_bootstrap, topic)[0] == 3  # type: ignore[index]
    objects = client.CustomObjectsApi(kube)
    route = f"mp-{namespace}.crash"
    for plural in ("clusteroutputs", "clusterfilters", "clusterfluentdconfigs"):
        listed = objects.list_cluster_custom_object(
            "fluentd.fluent.io", "v1alpha1", plural, label_selector=f"metricpipe.io/route={route}"
        )
        items = cast(dict[str, Any], listed)["items"]
        assert len(items) == 1, plural
    assert get_pipeline(kube, namespace, "crash")["metadata"]["finalizers"] == [
        "metricpipe.io/finalizer"
    ]


def workloads(kube: client.ApiClient, namespace: str, name: str) -> tuple[bool, Any]:
    """(the consumer Deployment exists, the batch CronJob or None)."""
    apps, batch = client.AppsV1Api(kube), client.BatchV1Api(kube)
    names = {present(d.metadata).name for d in apps.list_namespaced_deployment(namespace).items}
    cronjobs = {
        present(c.metadata).name: c for c in batch.list_namespaced_cron_job(namespace).items
    }
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


def test_specs_that_cannot_work_create_nothing(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    brokers = len(AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(
        timeout=10).brokers)  # fmt: skip
    if brokers >= 3:
        pytest.skip(f"the stack's Kafka has {brokers} brokers: a replication factor of 3 fits")
    start_operator(namespace)
    never = {"field": "time", "format": "strftime", "layout": "%H:%M:%S"}  # no date: 1900-01-01
    create_pipeline(kube, namespace, "layout",
                    {**SPEC, "metric": {**SPEC["metric"], "eventTime": never}})  # fmt: skip
    create_pipeline(kube, namespace, "replicas", {**SPEC, "topic": {"replicationFactor": 3}})

    layout = wait_for(lambda: condition_is(kube, namespace, "layout", "SpecValid", "False",
                                           reason="InvalidEventTimeLayout"),
                      what="layout refused")  # fmt: skip
    message = condition(layout, "SpecValid")["message"]
    assert "'%H:%M:%S'" in message
    assert "back as 1900-01-01" in message
    replicas = wait_for(lambda: condition_is(kube, namespace, "replicas", "TopicReady", "False",
                                             reason="ReplicationFactorTooHigh"),
                        what="replication factor refused")  # fmt: skip
    message = condition(replicas, "TopicReady")["message"]
    assert "replicationFactor is 3" in message
    assert f"has {brokers} broker" in message
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    for name, pipeline in (("layout", layout), ("replicas", replicas)):
        assert condition(pipeline, "Ready")["status"] == "False"
        assert topic_state(stack.kafka_bootstrap, f"metricpipe.{namespace}.{name}") is None
        assert topic_state(stack.kafka_bootstrap, f"metricpipe.{namespace}.{name}.dlq") is None
    assert apps.list_namespaced_deployment(namespace).items == []
    assert [present(c.metadata).name for c in core.list_namespaced_config_map(namespace).items] == [
        "kube-root-ca.crt"
    ]
