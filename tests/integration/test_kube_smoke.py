"""The Kubernetes control plane is real: version, CRDs, controllers, scheduler, RBAC, tokens."""

from __future__ import annotations

from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import present, wait_for
from metricpipe_devstack.env import StackEnv


def test_version_is_the_pinned_one(kube: client.ApiClient, stack: StackEnv) -> None:
    info = client.VersionApi(kube).get_code()
    assert info.git_version == stack.kube_version_expected


def test_crd_and_custom_object(kube: client.ApiClient, namespace: str, unique_name: str) -> None:
    group = f"{unique_name.replace('-', '')}.smoke.metricpipe.io"
    plural = "widgets"
    crd: Any = {  # the client sends a dict as it is
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    extensions = client.ApiextensionsV1Api(kube)
    extensions.create_custom_resource_definition(crd)
    try:

        def established() -> bool:
            current = extensions.read_custom_resource_definition(f"{plural}.{group}")
            assert current.status is not None
            conditions = current.status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_for(established, what="CRD Established")
        objects = client.CustomObjectsApi(kube)
        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 3},
        }
        # The CRD may be Established a moment before its REST endpoint serves.
        wait_for(lambda: _try_create(objects, group, namespace, plural, body), what="create")
        got = cast(
            dict[str, Any],
            objects.get_namespaced_custom_object(group, "v1", namespace, plural, "w1"),
        )
        assert got["spec"] == {"size": 3}
        # The real API server validates against the schema.
        bad = {**body, "metadata": {"name": "w2"}, "spec": {"size": 0}}
        with pytest.raises(ApiException) as rejected:
            objects.create_namespaced_custom_object(group, "v1", namespace, plural, bad)
        assert rejected.value.status == 422
        assert rejected.value.body is not None
        assert "spec.size" in rejected.value.body
    finally:
        extensions.delete_custom_resource_definition(f"{plural}.{group}")


def _try_create(
    objects: client.CustomObjectsApi, group: str, ns: str, plural: str, body: dict[str, Any]
) -> bool:
    try:
        objects.create_namespaced_custom_object(group, "v1", ns, plural, body)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_deployment_gets_replicaset_and_pods(kube: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(kube)
    core = client.CoreV1Api(kube)
    # Pods are rejected until the serviceaccount controller made the default ServiceAccount.
    wait_for(
        lambda: any(
            present(sa.metadata).name == "default"
            for sa in core.list_namespaced_service_account(namespace).items
        ),
        what="default ServiceAccount",
    )
    labels = {"app": "smoke"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="smoke"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="c", image="example.invalid/none:1")]
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment(namespace, deployment)
    replica_sets = wait_for(
        lambda: apps.list_namespaced_replica_set(namespace).items, what="ReplicaSet"
    )
    meta = replica_sets[0].metadata
    assert meta is not None
    assert meta.owner_references is not None
    owner = meta.owner_references[0]
    assert (owner.kind, owner.name) == ("Deployment", "smoke")

    def two_pods() -> list[client.V1Pod]:
        items: list[client.V1Pod] = core.list_namespaced_pod(namespace).items
        return items if len(items) == 2 else []

    pods = wait_for(two_pods, what="2 Pods")
    assert all(present(p.status).phase == "Pending" for p in pods)  # no Node exists yet
    # The scheduler saw them and says why they cannot be placed.
    wait_for(
        lambda: all(
            any(
                c.type == "PodScheduled" and c.status == "False"
                for c in (present(p.status).conditions or [])
            )
            for p in core.list_namespaced_pod(namespace).items
        ),
        what="PodScheduled=False from the scheduler",
    )


def test_service_account_token_is_real_and_rbac_applies(
    kube: client.ApiClient, stack: StackEnv, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    issued = core.create_namespaced_service_account_token(
        "reader",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    ).status
    assert issued is not None
    token = issued.token
    assert token is not None
    configuration = client.Configuration()
    configuration.host = kube.configuration.host
    configuration.ssl_ca_cert = kube.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": f"Bearer {token}"}
    as_reader = client.ApiClient(configuration)
    review = client.AuthenticationV1Api(kube).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
    )
    assert review.status is not None
    assert review.status.authenticated
    assert review.status.user is not None
    assert review.status.user.username == f"system:serviceaccount:{namespace}:reader"
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(as_reader).list_namespaced_secret(namespace)
    assert denied.value.status == 403  # authenticated, but RBAC grants it nothing
