"""Kafka down while a pipeline is applied, then up again: the condition tells the story and the
pipeline converges without any manual action. Stops and restarts the stack's real Kafka."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import wait_for
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.kafka import Kafka
from metricpipe_devstack.settings import StackSettings
from pipelines import condition, condition_is, create_pipeline, get_pipeline, topic_state

SPEC = {"source": {"tag": "app.**"}, "metric": {"aggregation": "count"}, "topic": {"partitions": 2}}


@pytest.fixture
def kafka(stack: StackEnv) -> Iterator[Kafka]:
    component = Kafka(StackSettings())
    assert component.is_running(), "the stack's Kafka must be running before this test"
    yield component
    if not component.is_running():  # never leave the shared stack without Kafka
        component.start()
    component.wait_healthy()


def test_kafka_outage_then_recovery(
    kube: client.ApiClient,
    stack: StackEnv,
    namespace: str,
    start_operator: Callable[..., Any],
    kafka: Kafka,
) -> None:
    start_operator(namespace)
    assert kafka.stop() == "stopped"
    create_pipeline(kube, namespace, "outage", SPEC)
    down = wait_for(
        lambda: condition_is(
            kube, namespace, "outage", "TopicReady", "False", reason="KafkaUnavailable"
        ),
        timeout=90,
        what="TopicReady=False KafkaUnavailable",
    )
    assert stack.kafka_bootstrap in condition(down, "TopicReady")["message"]
    assert condition(down, "Ready")["status"] == "False"
    # The later parts wait for the topic, and say why: Unknown (a transient stop, not a
    # refused spec), naming the step that stopped; no consumer Deployment exists yet.
    route = condition(down, "RouteReady")
    assert (route["status"], route["reason"]) == ("Unknown", "NotApplied"), route
    assert "TopicReady is KafkaUnavailable" in route["message"], route
    assert condition(down, "ConsumerReady")["status"] == "Unknown"
    with pytest.raises(ApiException) as missing:
        client.AppsV1Api(kube).read_namespaced_deployment("outage-consumer", namespace)
    assert missing.value.status == 404

    kafka.start()
    kafka.wait_healthy()
    # Whole again once topic and route are in place and the consumer Deployment is applied.
    up = wait_for(
        lambda: condition_is(kube, namespace, "outage", "TopicReady", "True"),
        timeout=120,
        what="TopicReady=True after Kafka came back",
    )
    assert condition(up, "TopicReady")["reason"] == "TopicInSync"
    assert condition(up, "RouteReady")["status"] == "True"

    def consumer_applied() -> dict[str, Any] | None:
        found = condition(get_pipeline(kube, namespace, "outage"), "ConsumerReady")
        return found if found.get("reason") != "NotApplied" else None

    consumer = wait_for(consumer_applied, timeout=60, what="the consumer applied after the outage")
    assert consumer["reason"] != "NotApplied"
    state = topic_state(stack.kafka_bootstrap, f"metricpipe.{namespace}.outage")
    assert state is not None
    assert state[0] == 2
