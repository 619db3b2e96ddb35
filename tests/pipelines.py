"""Helpers for tests that drive MetricPipelines through the real API server and Kafka."""

from __future__ import annotations

import json
from typing import Any, cast

from confluent_kafka.admin import AdminClient, ConfigResource
from kubernetes import client

from metricpipe_contract.model import GROUP, PLURAL, VERSION


def pipeline_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MetricPipeline",
        "metadata": {"name": name},
        "spec": spec,
    }


def create_pipeline(kube: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    return client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, pipeline_body(name, spec)
    )


def get_pipeline(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    result = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return cast(dict[str, Any], result)  # a custom object is a JSON object


def patch_spec(kube: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
    )


def condition(pipeline: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (pipeline.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return {}


def condition_is(
    kube: client.ApiClient, namespace: str, name: str, kind: str, status: str, *, reason: str = ""
) -> dict[str, Any]:
    """The pipeline when its condition has that status (and reason); {} otherwise."""
    pipeline = get_pipeline(kube, namespace, name)
    found = condition(pipeline, kind)
    ok = found.get("status") == status and (not reason or found.get("reason") == reason)
    return pipeline if ok else {}


def topic_state(bootstrap: str, topic: str) -> tuple[int, dict[str, str]] | None:
    """(partitions, config) of a topic, or None when it does not exist."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=10)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        return None
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=10)
    return len(metadata.topics[topic].partitions), {k: v.value for k, v in entries.items()}


def printed_table(kube: client.ApiClient, namespace: str) -> tuple[list[str], list[list[Any]]]:
    """What `kubectl get mp` prints: the server-side Table of the printer columns."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    raw = kube.call_api(
        "GET",
        kube.configuration.host + path,
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io", **_auth(kube)},
    )
    data: bytes = raw.read()
    response = json.loads(data)
    headers = [column["name"].upper() for column in response["columnDefinitions"]]
    return headers, [row["cells"] for row in response["rows"]]


def _auth(kube: client.ApiClient) -> dict[str, str]:
    token = kube.configuration.api_key.get("authorization")
    return {"Authorization": token} if token else {}
