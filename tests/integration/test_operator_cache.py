"""Pipelines over the Redis log cache, reconciled by the real operator process against the real
API server (with fluent-operator's CRDs) and Kafka: the first pipeline over a tag makes the
cache's route, a second one over the same tag makes no topic and no route object (it joins
the route as an owner), each gets a CronJob that reads the cache as the Secret's user, and the
cluster objects go with the last pipeline. The API server refuses a redis-store stream
pipeline with a message saying what to change."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import pytest
from confluent_kafka.admin import AdminClient
from kubernetes import client

from helpers import wait_for
from metricpipe_contract.cache import build_cache_key
from metricpipe_devstack.env import StackEnv
from metricpipe_operator.reconcile.cache_route import CacheRoute, build_store_match
from pipelines import condition, create_pipeline, get_pipeline

FLUENT = ("fluentd.fluent.io", "v1alpha1")
TAG = "edge.access"
BASE: dict[str, Any] = {
    "mode": "batch",
    "source": {"tag": TAG, "format": "apache_combined", "store": "redis"},
    "metric": {"aggregation": "count", "eventTime": {"field": "time", "format": "clf"},
               "window": "1h", "allowedLateness": "10m"},
}  # fmt: skip
ERRORS = {**BASE, "source": {**BASE["source"], "filters": [{"field": "status", "matches": "^5"}]}}


def ready(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    pipeline = get_pipeline(kube, namespace, name)
    status = pipeline.get("status") or {}
    if status.get("observedGeneration") != pipeline["metadata"]["generation"]:
        return {}
    kinds = ("SpecValid", "TopicReady", "RouteReady", "ConsumerReady")
    return pipeline if all(condition(pipeline, k).get("status") == "True" for k in kinds) else {}


def fluent_names(kube: client.ApiClient) -> dict[str, dict[str, str]]:
    """Every fluent-operator object: plural -> name -> uid."""
    api = client.CustomObjectsApi(kube)
    listed = {p: cast(dict[str, Any], api.list_cluster_custom_object(*FLUENT, p))
              for p in ("clusterfilters", "clusteroutputs", "clusterfluentdconfigs")}  # fmt: skip
    return {plural: {o["metadata"]["name"]: o["metadata"]["uid"] for o in found["items"]}
            for plural, found in listed.items()}  # fmt: skip


def namespace_topics(stack: StackEnv, namespace: str) -> set[str]:
    topics = AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(timeout=10)
    return {t for t in topics.topics if namespace in t}


@pytest.mark.usefixtures("fluent_operator_crds")
def test_a_second_pipeline_over_a_cache_makes_no_topic_and_no_route(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    if stack.redis is None:
        pytest.skip("the stack has no Redis (make stack-up)")
    start_operator(namespace, METRICPIPE_REDIS_HOST=stack.redis.pod_host,
                   METRICPIPE_REDIS_PORT=str(stack.redis.port))  # fmt: skip
    core = client.CoreV1Api(kube)
    route = CacheRoute(namespace, TAG, stack.redis.pod_host, stack.redis.port, 3 * 3600)
    create_pipeline(kube, namespace, "requests", BASE)
    first = wait_for(lambda: ready(kube, namespace, "requests"), timeout=60, what="requests")
    assert condition(first, "TopicReady")["reason"] == "NoTopic"
    assert condition(first, "RouteReady")["reason"] == "CacheRouteApplied"
    assert namespace_topics(stack, namespace) == set()
    # the route as the operator stored it: the API server pruned nothing of the custom plugin
    objects = fluent_names(kube)
    output = cast(dict[str, Any], client.CustomObjectsApi(kube).get_cluster_custom_object(
        *FLUENT, "clusteroutputs", route.name
    ))  # fmt: skip
    assert output["spec"]["outputs"] == [{"customPlugin": {"config": build_store_match(route)}}]
    configmap = read(kube, core.read_namespaced_config_map(route.name, namespace))
    owners = configmap["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == [first["metadata"]["uid"]]
    maps_before = config_map_names(kube, namespace)

    create_pipeline(kube, namespace, "errors", ERRORS)
    second = wait_for(lambda: ready(kube, namespace, "errors"), timeout=60, what="errors")
    # no topic, no route object: the same ConfigMap (same uid) with one more owner, the same
    # cluster objects, and the only new ConfigMap is the consumer's own configuration
    assert namespace_topics(stack, namespace) == set()
    assert fluent_names(kube) == objects
    after = read(kube, core.read_namespaced_config_map(route.name, namespace))
    assert after["metadata"]["uid"] == configmap["metadata"]["uid"]
    owners = after["metadata"]["ownerReferences"]
    assert {o["uid"] for o in owners} == {first["metadata"]["uid"], second["metadata"]["uid"]}
    assert not any(o["controller"] for o in owners)
    assert config_map_names(kube, namespace) - maps_before == {"errors-config"}
    # the job reads the same cache, as the user of the operator's Redis Secret (a reference)
    consumer_config = read(kube, core.read_namespaced_config_map("errors-config", namespace))
    document = json.loads(consumer_config["data"]["pipeline.json"])
    assert document["cache"]["key"] == build_cache_key(namespace, TAG)
    cronjob = read(kube, client.BatchV1Api(kube).read_namespaced_cron_job("errors-consumer",
                                                                          namespace))  # fmt: skip
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    password = env["METRICPIPE_REDIS_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "metricpipe-redis",
                                                     "key": "password"}  # fmt: skip
    assert "value" not in password

    # deleting one reader keeps the route; deleting the last removes its cluster objects
    api = client.CustomObjectsApi(kube)
    api.delete_namespaced_custom_object("metricpipe.io", "v1alpha1", namespace,
                                        "metricpipelines", "requests")  # fmt: skip
    wait_for(lambda: _gone(kube, namespace, "requests"), timeout=60, what="requests deleted")
    assert route.name in fluent_names(kube)["clusteroutputs"]
    api.delete_namespaced_custom_object("metricpipe.io", "v1alpha1", namespace,
                                        "metricpipelines", "errors")  # fmt: skip
    wait_for(lambda: _gone(kube, namespace, "errors"), timeout=60, what="errors deleted")
    remaining = fluent_names(kube)
    assert all(route.name not in names for names in remaining.values()), remaining


def _gone(kube: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        get_pipeline(kube, namespace, name)
    except client.ApiException as error:
        return bool(error.status == 404)
    return False


def read(kube: client.ApiClient, obj: object) -> dict[str, Any]:
    """A typed client object as the API's JSON (camelCase keys)."""
    return cast(dict[str, Any], kube.sanitize_for_serialization(obj))


def config_map_names(kube: client.ApiClient, namespace: str) -> set[str]:
    listed = read(kube, client.CoreV1Api(kube).list_namespaced_config_map(namespace))
    return {m["metadata"]["name"] for m in listed["items"]}


@pytest.mark.usefixtures("metricpipeline_crd")
def test_a_redis_store_needs_batch_mode(kube: client.ApiClient, namespace: str) -> None:
    with pytest.raises(client.ApiException) as refused:
        create_pipeline(kube, namespace, "streamed", {**BASE, "mode": "stream"})
    assert refused.value.status == 422
    assert "source.store redis needs mode batch" in str(refused.value.body)


@pytest.mark.usefixtures("fluent_operator_crds")
def test_two_pipelines_made_at_once_both_own_the_route(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    """Both reconciles apply the shared ConfigMap at about the same time; each as its own
    field manager, so neither drops the other's owner reference (no wait for a repair)."""
    if stack.redis is None:
        pytest.skip("the stack has no Redis (make stack-up)")
    start_operator(namespace, METRICPIPE_REDIS_HOST=stack.redis.pod_host,
                   METRICPIPE_REDIS_PORT=str(stack.redis.port))  # fmt: skip
    route = CacheRoute(namespace, TAG, stack.redis.pod_host, stack.redis.port, 3 * 3600)
    for name in ("one", "two", "three"):
        create_pipeline(kube, namespace, name, BASE)
    uids = set()
    for name in ("one", "two", "three"):
        shown = wait_for(partial(ready, kube, namespace, name), timeout=60, what=name)
        uids.add(shown["metadata"]["uid"])
    core = client.CoreV1Api(kube)
    configmap = read(kube, core.read_namespaced_config_map(route.name, namespace))
    assert {o["uid"] for o in configmap["metadata"]["ownerReferences"]} == uids
