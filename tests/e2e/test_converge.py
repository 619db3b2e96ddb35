"""Level-triggered repair on the real stack: the operator (a process), the API server,
controller-manager, scheduler, Kafka, Elasticsearch and the stack's kubelet running the consumer
in a container. A pipeline's children are taken away or changed one after the other, as a
careless admin would: the consumer Deployment deleted, its ConfigMap, the route ConfigMap and
the fluent-operator ClusterOutput deleted, the Deployment scaled by hand, the metrics Service
deleted; then the API server restarted, etcd restarted (a Deployment deleted after each: the
operator's watches came back), and the Kafka topic deleted (created anew by the operator's
periodic check, with a Warning). After each the pipeline is Ready again with exactly one of each
child, an Event says what was put back and why, and the final documents in the sink equal the
counts computed here from every record produced so far (a new batch of records per step, each
in windows of its own; the records a deleted topic held had all been counted before it went)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import pytest
from confluent_kafka.admin import AdminClient
from kubernetes import client

from helpers import present, wait_for
from metricpipe_devstack.base import Component
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.kube import Etcd, KubeApiserver
from metricpipe_devstack.settings import StackSettings
from pipelines import condition, create_pipeline, get_pipeline
from refusals import MINUTE, build_records, expected_counts, final_counts, produce, topic_of

NAME = "fix"
REPAIR_INTERVAL = 10  # seconds: the operator's periodic check in this test
SPEC: dict[str, Any] = {
    "source": {"tag": "repair"},
    "topic": {"partitions": 1},
    "metric": {"aggregation": "count", "groupBy": ["host"], "window": "1m",
               "allowedLateness": "10s",
               "eventTime": {"field": "ts", "format": "epoch_millis"}},
    "replicas": 1,
    "scaling": {"enabled": False},
    "consumer": {"resources": {"requests": {"cpu": "100m"}}},
}  # fmt: skip
FLUENT = ("fluentd.fluent.io", "v1alpha1")
SELECTOR = f"metricpipe.io/pipeline={NAME}"


def children(kube: client.ApiClient, namespace: str) -> dict[str, list[str]]:
    """The pipeline's children by kind, as the API server has them now (names)."""
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    custom = client.CustomObjectsApi(kube)
    outputs = cast(
        dict[str, Any],
        custom.list_cluster_custom_object(*FLUENT, "clusteroutputs", label_selector=SELECTOR),
    )  # a JSON object
    deployments = apps.list_namespaced_deployment(namespace, label_selector=SELECTOR).items
    configmaps = core.list_namespaced_config_map(namespace, label_selector=SELECTOR).items
    services = core.list_namespaced_service(namespace, label_selector=SELECTOR).items
    return {
        "Deployment": [str(present(d.metadata).name) for d in deployments],
        "ConfigMap": sorted(str(present(c.metadata).name) for c in configmaps),
        "Service": [str(present(s.metadata).name) for s in services],
        "ClusterOutput": [o["metadata"]["name"] for o in outputs["items"]
                          if o["metadata"]["annotations"].get("metricpipe.io/owner")
                          == f"{namespace}/{NAME}"],
    }  # fmt: skip


def restart(component: Component) -> None:
    """Stop and start one of the stack's servers; the API server healthy again after it."""
    try:
        print(f"{component.name}: {component.stop()}")  # stopped, or killed after its grace
        assert not component.is_running(), component.name
        time.sleep(2)  # down long enough for every watch to break
    finally:
        component.start()
        component.wait_healthy()
        apiserver = KubeApiserver(StackSettings())
        apiserver.wait_healthy()


def deployment_replicas(kube: client.ApiClient, namespace: str) -> int | None:
    apps = client.AppsV1Api(kube)
    found = apps.list_namespaced_deployment(namespace, label_selector=SELECTOR).items
    return present(found[0].spec).replicas if len(found) == 1 else None


def events(kube: client.ApiClient, namespace: str, reason: str) -> list[client.CoreV1Event]:
    found = client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={NAME},reason={reason}"
    )
    return list(found.items)


def whole(kube: client.ApiClient, namespace: str, first: dict[str, list[str]]) -> bool:
    """Ready True with one of each child, named as at the start (none missing, none extra)."""
    pipeline = get_pipeline(kube, namespace, NAME)
    ready = condition(pipeline, "Ready").get("status") == "True"
    return ready and children(kube, namespace) == first


@pytest.mark.usefixtures("fluent_operator_crds")
def test_a_pipeline_converges_after_its_children_are_taken_away(
    stack: StackEnv, kube: client.ApiClient, namespace: str,
    start_operator: Callable[..., Any],
) -> None:  # fmt: skip
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    custom = client.CustomObjectsApi(kube)
    operator = start_operator(namespace, METRICPIPE_REPAIR_INTERVAL_SECONDS=str(REPAIR_INTERVAL))
    create_pipeline(kube, namespace, NAME, SPEC)
    topic = wait_for(partial(topic_of, kube, namespace, NAME), 60, "the pipeline's topic")
    index = f"metricpipe-{namespace}.{NAME}.metrics"  # the default index (naming.py)
    wait_for(lambda: condition(get_pipeline(kube, namespace, NAME), "Ready").get("status")
             == "True", 180, "the pipeline Ready")  # fmt: skip
    first = children(kube, namespace)
    assert first == {
        "Deployment": [f"{NAME}-consumer"],
        "ConfigMap": sorted([f"{NAME}-config", f"{NAME}-fluentd-route"]),
        "Service": [f"{NAME}-consumer"], "ClusterOutput": [f"mp-{namespace}.{NAME}"],
    }, first  # fmt: skip

    expected: Counter[tuple[int, str]] = Counter()
    start = (int(time.time() * 1000) - 120 * MINUTE) // MINUTE * MINUTE
    batches = iter(range(12))

    def produce_and_compare(step: str) -> None:
        """A batch in windows no earlier batch used; the finals equal every batch so far."""
        records = build_records(start + next(batches) * 10 * MINUTE)
        expected.update(expected_counts(records))
        produce(stack, topic, records)
        wait_for(lambda: final_counts(stack, index) == expected, 180,
                 f"{step}: finals equal to the records produced")  # fmt: skip

    produce_and_compare("at the start")
    steps: list[tuple[str, Callable[[], object], str]] = [
        ("the consumer Deployment deleted",
         lambda: apps.delete_namespaced_deployment(f"{NAME}-consumer", namespace),
         "DeploymentCreated"),
        ("the consumer ConfigMap deleted",
         lambda: core.delete_namespaced_config_map(f"{NAME}-config", namespace),
         "ConfigMapCreated"),
        ("the route ConfigMap deleted",
         lambda: core.delete_namespaced_config_map(f"{NAME}-fluentd-route", namespace),
         "ConfigMapCreated"),
        ("the ClusterOutput deleted",
         lambda: custom.delete_cluster_custom_object(*FLUENT, "clusteroutputs",
                                                      f"mp-{namespace}.{NAME}"),
         "ClusterOutputCreated"),
        ("the metrics Service deleted",
         lambda: core.delete_namespaced_service(f"{NAME}-consumer", namespace), "ServiceCreated"),
    ]  # fmt: skip
    for step, act, reason in steps:
        seen = len(events(kube, namespace, reason))
        began = time.monotonic()
        act()
        wait_for(lambda: len(events(kube, namespace, reason)) > seen, 60,  # noqa: B023
                 f"{step}: a {reason} Event")  # fmt: skip
        wait_for(partial(whole, kube, namespace, first), 180, f"{step}: whole again")
        print(f"{step}: whole again in {time.monotonic() - began:.1f} s")
        produce_and_compare(step)

    # -- replicas changed by hand: put back to the pipeline's ---------------------------------
    began = time.monotonic()
    apps.patch_namespaced_deployment_scale(f"{NAME}-consumer", namespace, {"spec": {"replicas": 3}})
    wait_for(lambda: deployment_replicas(kube, namespace) == 1, 60, "replicas put back to 1")
    print(f"replicas put back in {time.monotonic() - began:.1f} s")
    wait_for(partial(whole, kube, namespace, first), 180, "whole after the scale")
    produce_and_compare("the replicas changed by hand")

    # -- the API server restarted, then etcd: the operator's watches come back ---------------
    for component in (KubeApiserver(StackSettings()), Etcd(StackSettings())):
        began = time.monotonic()
        restart(component)
        wait_for(partial(whole, kube, namespace, first), 180, f"whole after {component.name}")
        seen = len(events(kube, namespace, "DeploymentCreated"))
        apps.delete_namespaced_deployment(f"{NAME}-consumer", namespace)  # still repaired?
        wait_for(lambda: len(events(kube, namespace, "DeploymentCreated")) > seen, 120,  # noqa: B023
                 f"a repair after the {component.name} restart")  # fmt: skip
        wait_for(partial(whole, kube, namespace, first), 180, f"whole after {component.name}")
        print(f"{component.name} restarted; a repair after it: {time.monotonic() - began:.1f} s")
        produce_and_compare(f"{component.name} restarted")

    # -- the topic deleted: the periodic check creates it anew, with a Warning ----------------
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    began = time.monotonic()
    for future in admin.delete_topics([topic], operation_timeout=30).values():
        future.result()
    warning = wait_for(lambda: events(kube, namespace, "TopicRecreated"),
                       3 * REPAIR_INTERVAL + 30, "a TopicRecreated Event")  # fmt: skip
    assert warning[0].type == "Warning", warning[0]
    assert "lost" in str(warning[0].message), warning[0].message
    assert topic in admin.list_topics(timeout=10).topics
    print(f"topic created anew in {time.monotonic() - began:.1f} s: {warning[0].message}")
    wait_for(partial(whole, kube, namespace, first), 180, "whole after the topic")
    # the records of the new topic are counted after everything the old one brought
    produce_and_compare("the topic deleted and created anew")
    assert "Traceback" not in operator.log()
