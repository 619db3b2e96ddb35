"""Start-up under load: twelve pipelines applied at once on this 2-core machine all become Ready
within five minutes, and no consumer is restarted on the way (issue 16, item 7).

Real parts throughout: the API server, scheduler and controller-manager of the local stack, the
operator as a process, and the stack's real kubelet running twelve consumer containers (twelve
JVMs with Spark, each in its own container and memory cgroup) that start together. Each asks
for 100m CPU: the real scheduler places pods by their requests against the node's allocatable
CPU (2 cores here), so the default 500m would leave eight of them Pending. Before the consumers
had a startup probe, every one was killed by its liveness probe before it had started, and none
was Ready after 7 minutes.

Readiness alone could be a word: each pipeline's records must also be consumed and committed
(read back from Kafka's group offsets, not from the consumer). The test prints how long each
consumer took from its process start to its first poll (its log) — the figure that sizes the
startup probe (docs/consumer.md, "Probes").
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from consumers import committed_everything, produce
from helpers import wait_for
from metricpipe_contract.model import GROUP, PLURAL, VERSION
from metricpipe_devstack.env import StackEnv
from metricpipe_operator.reconcile.consumer import STARTUP_BUDGET_SECONDS
from node_harness import Node
from pipelines import condition, create_pipeline, get_pipeline

PIPELINES = 12
READY_WITHIN_SECONDS = 300  # the acceptance: all Ready within 5 minutes of the apply
RECORDS = 5  # per pipeline: enough to see each consumer work, small enough to cost nothing
SPEC: dict[str, Any] = {
    "source": {"tag": "startup"},
    "topic": {"partitions": 1, "deletionPolicy": "Delete"},  # nothing left behind in Kafka
    "metric": {"aggregation": "count", "window": "1m", "allowedLateness": "10s"},
    "replicas": 1,
    "consumer": {"resources": {"requests": {"cpu": "100m"}}},
}


def consumer_pods(kube: client.ApiClient, namespace: str) -> list[Any]:
    pods = client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=consumer"
    )
    return list(pods.items)


def all_ready(kube: client.ApiClient, namespace: str, names: list[str]) -> dict[str, Any] | None:
    """Every pipeline Ready=True with readyReplicas == replicas (status and Deployment), at
    one moment; None otherwise."""
    apps = client.AppsV1Api(kube)
    seen = {}
    for name in names:
        pipeline = get_pipeline(kube, namespace, name)
        status = pipeline.get("status") or {}
        if condition(pipeline, "Ready").get("status") != "True":
            return None
        replicas = int(pipeline["spec"]["replicas"])
        if status.get("readyReplicas") != replicas or replicas < 1:
            return None
        deployment = apps.read_namespaced_deployment(f"{name}-consumer", namespace).status
        assert deployment is not None
        if int(deployment.ready_replicas or 0) != replicas:
            return None
        seen[name] = status
    return seen


def consumer_group(kube: client.ApiClient, namespace: str, name: str) -> str:
    """The group the operator gave the pipeline's consumers (from the pipeline.json it wrote)."""
    deployment = client.AppsV1Api(kube).read_namespaced_deployment(f"{name}-consumer", namespace)
    pod_spec = deployment.spec.template.spec
    assert pod_spec is not None
    assert pod_spec.volumes is not None
    (volume,) = [v for v in pod_spec.volumes if v.config_map is not None]
    assert volume.config_map is not None
    assert volume.config_map.name is not None
    data = client.CoreV1Api(kube).read_namespaced_config_map(volume.config_map.name, namespace)
    assert data.data is not None
    document = json.loads(next(iter(data.data.values())))
    return str(document["consumerGroup"])


def start_to_first_poll(node: Node, pod: Any) -> float | None:
    """Seconds from the kubelet starting the container (its status' startedAt) to the
    consumer's `consuming` line in its log (it polls right after)."""
    statuses = [c for c in pod.status.container_statuses or [] if c.name == "consumer"]
    if not statuses or statuses[0].state.running is None:
        return None
    started: datetime = statuses[0].state.running.started_at
    text = node.container_log(pod.metadata.namespace, pod.metadata.name, "consumer")
    for line in text.splitlines():
        if line.startswith("{") and '"consuming"' in line:
            consuming = datetime.fromisoformat(json.loads(line)["timestamp"])
            return (consuming - started).total_seconds()
    return None


@pytest.fixture
def pipelines(kube: client.ApiClient, namespace: str) -> Iterator[list[str]]:
    """The pipelines' names; at the end every pipeline is deleted and the test waits until
    their pods — twelve JVMs — are gone, so that later tests are not starved."""
    names = [f"load-{i:02d}" for i in range(PIPELINES)]
    yield names
    objects = client.CustomObjectsApi(kube)
    for name in names:
        try:
            objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise
    # the kubelet deletes a pod only once its containers have exited (grace, then SIGKILL)
    wait_for(lambda: not consumer_pods(kube, namespace), 240, "consumer pods gone", 2)
    wait_for(lambda: not cast(dict[str, Any], objects.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL))["items"], 120, "pipelines finalized", 2)  # fmt: skip


@pytest.mark.usefixtures("fluent_operator_crds")
def test_twelve_pipelines_applied_at_once_are_all_ready_within_five_minutes(
    stack: StackEnv, kube: client.ApiClient, namespace: str, start_operator: Any,
    node: Node, pipelines: list[str],
) -> None:  # fmt: skip
    start_operator(namespace, METRICPIPE_PROMETHEUS_URL=stack.prometheus_url)
    load_before = os.getloadavg()
    applied = time.monotonic()
    for name in pipelines:
        create_pipeline(kube, namespace, name, SPEC)

    def topics() -> dict[str, str] | None:
        found = {n: str(((get_pipeline(kube, namespace, n).get("status") or {}).get("topic")
                         or {}).get("name") or "") for n in pipelines}  # fmt: skip
        return found if all(found.values()) else None

    by_pipeline: dict[str, str] = wait_for(topics, 120, "every pipeline's topic in status", 1)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for topic in by_pipeline.values():
        produce(stack, topic, [(None, json.dumps({"time": now, "tag": "startup"}).encode())
                               for _ in range(RECORDS)])  # fmt: skip

    def progress() -> dict[str, Any] | None:
        ready = all_ready(kube, namespace, pipelines)
        if ready is None:
            for pod in consumer_pods(kube, namespace):  # a restart fails the test at once
                for container in pod.status.container_statuses or []:
                    assert container.restart_count == 0, (pod.metadata.name, container)
        return ready

    def report() -> list[float]:
        pods = consumer_pods(kube, namespace)
        starts = sorted(s for p in pods if (s := start_to_first_poll(node, p)))
        print(f"{time.monotonic() - applied:.0f} s after the apply; load average before "
              f"{load_before}, now {os.getloadavg()}; process start -> first poll (s) of "
              f"{len(starts)} of {len(pods)} consumers: {[round(s) for s in starts]}; startup "
              f"probe budget {STARTUP_BUDGET_SECONDS} s")  # fmt: skip
        return starts

    try:
        wait_for(progress, READY_WITHIN_SECONDS - (time.monotonic() - applied),
                 f"all {PIPELINES} pipelines Ready", 2)  # fmt: skip
    except AssertionError:
        report()
        for name in pipelines:
            print(name, (get_pipeline(kube, namespace, name).get("status") or {}).get("conditions"))
        pod = consumer_pods(kube, namespace)[0].metadata.name
        print(f"{pod} log:\n{node.container_log(namespace, pod, 'consumer')[-3000:]}")
        print(f"kubelet log:\n{node.log()}")
        raise
    print(f"all {PIPELINES} pipelines Ready")
    starts = report()
    pods = consumer_pods(kube, namespace)
    assert len(pods) == PIPELINES, [p.metadata.name for p in pods]
    for pod in pods:
        (container,) = pod.status.container_statuses
        assert container.restart_count == 0, (pod.metadata.name, container.last_state)
        assert container.started, (pod.metadata.name, container)
        assert container.ready, (pod.metadata.name, container)
        assert pod.spec.containers[0].startup_probe is not None
    assert len(starts) == PIPELINES  # every consumer's log shows its start and first poll
    # Ready means working: every pipeline's records consumed and committed.
    for name, topic in by_pipeline.items():
        group = consumer_group(kube, namespace, name)
        wait_for(partial(committed_everything, stack, group, topic), 60,
                 f"{name}'s {RECORDS} records committed by group {group}", 1)  # fmt: skip
