"""Tenants apart and topics owned, with the operator as a real process against the real API
server and Kafka. Expected names are written out here from the documented scheme (not computed
by the operator's code); Kafka's state is read before and after each refusal."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, cast

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import present, wait_for
from metricpipe_contract.model import GROUP, PLURAL, VERSION
from metricpipe_devstack.env import StackEnv
from pipelines import condition, condition_is, create_pipeline, get_pipeline, topic_state

SPEC: dict[str, Any] = {
    "source": {"tag": "web.access.**", "filters": [{"field": "status", "matches": "^5"}]},
    "topic": {"partitions": 2, "retention": "2h"},
    "metric": {"aggregation": "count", "window": "1m", "allowedLateness": "10s"},
}
FLUENT = ("fluentd.fluent.io", "v1alpha1")


def applied(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The pipeline once its spec is accepted and its topic and route are in place."""
    pipeline = get_pipeline(kube, namespace, name)
    kinds = ("SpecValid", "TopicReady", "RouteReady")
    ok = all(condition(pipeline, kind).get("status") == "True" for kind in kinds)
    return pipeline if ok else {}


def pipeline_json(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    config = client.CoreV1Api(kube).read_namespaced_config_map(f"{name}-config", namespace)
    assert config.data is not None
    document: dict[str, Any] = json.loads(config.data["pipeline.json"])
    return document


def route_objects(kube: client.ApiClient, route: str) -> dict[str, dict[str, Any]]:
    objects = client.CustomObjectsApi(kube)
    found: dict[str, dict[str, Any]] = {}
    for plural in ("clusteroutputs", "clusterfluentdconfigs", "clusterfilters"):
        try:
            found[plural] = cast(
                dict[str, Any], objects.get_cluster_custom_object(*FLUENT, plural, route)
            )
        except ApiException as error:
            if error.status != 404:
                raise
    return found


def delete_and_wait(kube: client.ApiClient, namespace: str, names: list[str]) -> None:
    objects = client.CustomObjectsApi(kube)
    for name in names:
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def gone() -> bool:
        listed = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        items = cast(dict[str, Any], listed)["items"]
        return not {i["metadata"]["name"] for i in items} & set(names)

    wait_for(gone, timeout=60, what=f"{names} deleted (finalizer done)")


@pytest.fixture
def second_namespace(kube: client.ApiClient, namespace: str) -> Iterator[str]:
    """`<namespace>-a`: with pipeline a-x in <namespace> and x in <namespace>-a, the two
    pipelines' names joined with '-' are the same string."""
    core = client.CoreV1Api(kube)
    name = f"{namespace}-a"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.mark.usefixtures("fluent_operator_crds")
def test_team_a_x_and_team_a_x_get_apart_names(
    kube: client.ApiClient, stack: StackEnv, namespace: str, second_namespace: str,
    start_operator: Callable[..., Any],
) -> None:  # fmt: skip
    team, team_a = namespace, second_namespace
    start_operator(team)
    start_operator(team_a)
    create_pipeline(kube, team, "a-x", SPEC)
    create_pipeline(kube, team_a, "x", SPEC)
    for ns, name in ((team, "a-x"), (team_a, "x")):
        wait_for(partial(applied, kube, ns, name), timeout=90, what=f"{ns}/{name}")

    expected = {
        (team, "a-x"): {
            "topic": f"metricpipe.{team}.a-x",
            "group": f"metricpipe.{team}.a-x",
            "index": f"metricpipe-{team}.a-x.metrics",
            "route": f"mp-{team}.a-x",
        },
        (team_a, "x"): {
            "topic": f"metricpipe.{team}-a.x",
            "group": f"metricpipe.{team}-a.x",
            "index": f"metricpipe-{team}-a.x.metrics",
            "route": f"mp-{team}-a.x",
        },
    }
    # the scheme this replaced: both pipelines shared one index and one set of route objects
    assert f"metricpipe-{team}-a-x" == f"metricpipe-{team_a}-x"
    for (ns, name), names in expected.items():
        document = pipeline_json(kube, ns, name)
        assert document["topic"] == names["topic"]
        assert document["consumerGroup"] == names["group"]
        assert document["sink"]["index"] == names["index"]
        assert get_pipeline(kube, ns, name)["status"]["sinkIndex"] == names["index"]
        assert topic_state(stack.kafka_bootstrap, names["topic"]) is not None
        routes = route_objects(kube, names["route"])
        assert set(routes) == {"clusteroutputs", "clusterfluentdconfigs", "clusterfilters"}
        for body in routes.values():
            assert body["metadata"]["annotations"]["metricpipe.io/owner"] == f"{ns}/{name}"
        output = routes["clusteroutputs"]["spec"]["outputs"][0]["kafka"]
        assert output["defaultTopic"] == names["topic"]
    one, other = expected.values()
    assert set(one.values()).isdisjoint(other.values())

    delete_and_wait(kube, team, ["a-x"])
    delete_and_wait(kube, team_a, ["x"])
    for names in expected.values():
        assert route_objects(kube, names["route"]) == {}


def kafka_view(bootstrap: str, topics: list[str]) -> dict[str, Any]:
    """Partitions and every config value of each topic (None: it does not exist)."""
    return {topic: topic_state(bootstrap, topic) for topic in topics}


def nothing_created(kube: client.ApiClient, namespace: str, name: str) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    assert f"{name}-consumer" not in {present(d.metadata).name for d in
                                      apps.list_namespaced_deployment(namespace).items}  # fmt: skip
    configmaps = {
        present(c.metadata).name for c in core.list_namespaced_config_map(namespace).items
    }
    assert not {f"{name}-config", f"{name}-fluentd-route"} & configmaps
    assert route_objects(kube, f"mp-{namespace}.{name}") == {}


@pytest.mark.usefixtures("fluent_operator_crds")
def test_a_pipeline_changes_only_topics_it_owns(
    kube: client.ApiClient, stack: StackEnv, namespace: str, unique_name: str,
    start_operator: Callable[..., Any],
) -> None:  # fmt: skip
    foreign, adoptable = f"{unique_name}-foreign", f"{unique_name}-adoptable"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    created = admin.create_topics([
        NewTopic(foreign, 2, 1, config={"retention.ms": "123456789", "cleanup.policy": "compact"}),
        NewTopic(adoptable, 2, 1),
    ])  # fmt: skip
    for future in created.values():
        future.result(timeout=30)
    # the operator may adopt exactly one existing topic; the other one it did not create
    start_operator(namespace, METRICPIPE_ADOPT_TOPICS=re.escape(adoptable))
    owned = f"metricpipe.{namespace}.owner"
    create_pipeline(kube, namespace, "owner", SPEC)
    wait_for(lambda: applied(kube, namespace, "owner"), timeout=90, what="owner applied")

    watched = [owned, f"{owned}.dlq", foreign, f"{foreign}.dlq", "__consumer_offsets"]
    before = kafka_view(stack.kafka_bootstrap, watched)
    assert before[owned] is not None
    assert before[foreign] is not None
    assert before[f"{foreign}.dlq"] is None
    assert before["__consumer_offsets"] is not None

    # Kafka's internal topics: refused by the API server itself
    with pytest.raises(ApiException) as refused:
        create_pipeline(
            kube, namespace, "internal", {**SPEC, "topic": {"name": "__consumer_offsets"}}
        )
    assert refused.value.status == 422
    assert refused.value.body is not None
    assert "internal topics" in refused.value.body

    delete = {"deletionPolicy": "Delete"}
    create_pipeline(kube, namespace, "thief", {**SPEC, "topic": {"name": owned, **delete}})
    create_pipeline(kube, namespace, "squatter", {**SPEC, "topic": {"name": foreign, **delete}})
    owners_index = f"metricpipe-{namespace}.owner.metrics"
    create_pipeline(kube, namespace, "copycat", {**SPEC, "sink": {"index": owners_index}})
    create_pipeline(kube, namespace, "adopter", {**SPEC, "topic": {"name": adoptable, **delete}})

    def conflict(name: str, kind: str) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            lambda: condition_is(kube, namespace, name, kind, "False", reason="Conflict"),
            what=f"{name}: Conflict",
        )
        return found

    thief = conflict("thief", "TopicReady")
    assert f"owned by pipeline {namespace}/owner" in condition(thief, "TopicReady")["message"]
    squatter = conflict("squatter", "TopicReady")
    assert "no pipeline created it" in condition(squatter, "TopicReady")["message"]
    copycat = conflict("copycat", "SpecValid")
    assert f"pipeline {namespace}/owner" in condition(copycat, "SpecValid")["message"]
    for pipeline in (thief, squatter, copycat):
        assert condition(pipeline, "Ready")["status"] == "False"
    wait_for(lambda: applied(kube, namespace, "adopter"), timeout=60, what="adopter applied")

    for name in ("thief", "squatter", "copycat"):
        nothing_created(kube, namespace, name)
    assert kafka_view(stack.kafka_bootstrap, watched) == before  # nothing changed in Kafka
    assert topic_state(stack.kafka_bootstrap, f"{adoptable}.dlq") is not None  # made by adopter

    # deletionPolicy Delete never removes a topic the pipeline did not create
    delete_and_wait(kube, namespace, ["thief", "squatter", "copycat", "adopter", "owner"])
    after = kafka_view(stack.kafka_bootstrap, [*watched, adoptable, f"{adoptable}.dlq"])
    assert {topic: after[topic] for topic in watched} == before
    assert after[adoptable] is not None  # adopted, never deleted
    assert after[f"{adoptable}.dlq"] is not None  # the DLQ of a topic it did not create
