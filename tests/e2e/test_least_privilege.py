"""The operator with nothing but its own ServiceAccount's token (issued by the real API
server's TokenRequest API, bound by the manifests' RBAC) runs a pipeline's whole life: create,
update, the ResourceManager's leader Lease and status, delete with its finalizer. Any call its
RBAC does not allow would show up as a 403 in its log or as a condition that never comes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client, config

from helpers import wait_for
from install_harness import SYSTEM
from metricpipe_devstack.env import StackEnv
from pipelines import (
    condition,
    condition_is,
    create_pipeline,
    get_pipeline,
    patch_spec,
    topic_state,
)

SPEC: dict[str, Any] = {
    "source": {"tag": "web.access.**", "format": "apache_combined"},
    "topic": {"partitions": 2},
    "metric": {
        "aggregation": "count",
        "window": "1m",
        "allowedLateness": "10s",
        "groupBy": ["status"],
    },
}
FLUENT = ("fluentd.fluent.io", "v1alpha1")


def write_token_kubeconfig(kube: client.ApiClient, stack: StackEnv, path: Path) -> Path:
    """A kubeconfig holding only a fresh token of the operator's ServiceAccount."""
    request: Any = {"spec": {"audiences": [], "expirationSeconds": 3600}}  # sent as it is
    answer = client.CoreV1Api(kube).create_namespaced_service_account_token(
        "metricpipe-operator", SYSTEM, request
    )
    assert answer.status is not None
    admin = client.Configuration()
    config.load_kube_config(config_file=str(stack.kubeconfig), client_configuration=admin)
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "local", "cluster": {
            "server": admin.host, "certificate-authority": admin.ssl_ca_cert}}],
        "users": [{"name": "operator", "user": {"token": answer.status.token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return path


@pytest.mark.usefixtures("fluent_operator_crds", "identities")
def test_the_operator_needs_nothing_beyond_its_service_account(
    kube: client.ApiClient, stack: StackEnv, namespace: str,
    start_operator: Callable[..., Any], tmp_path: Path,
) -> None:  # fmt: skip
    kubeconfig = write_token_kubeconfig(kube, stack, tmp_path / "operator.kubeconfig")
    operator = start_operator(
        namespace,
        KUBECONFIG=str(kubeconfig),
        METRICPIPE_PROMETHEUS_URL=stack.prometheus_url,
        METRICPIPE_SCALING_NAMESPACE=namespace,
        METRICPIPE_SCALING_INTERVAL_SECONDS="2",
        METRICPIPE_LEASE_NAMESPACE=SYSTEM,
    )
    create_pipeline(kube, namespace, "web", SPEC)
    # No node runs consumer pods here: Ready stays False on ConsumerReady, so the operator's
    # token is proven by every part it applies (spec checks, topic, route, consumer objects).
    pipeline = wait_for(
        lambda: condition_is(kube, namespace, "web", "RouteReady", "True"), timeout=90,
        what="RouteReady",
    )  # fmt: skip
    for kind in ("SpecValid", "TopicReady", "RouteReady"):
        assert condition(pipeline, kind)["status"] == "True", kind
    assert condition(pipeline, "ConsumerReady")["reason"] != "NotApplied"
    apps = client.AppsV1Api(kube)
    assert apps.read_namespaced_deployment("web-consumer", namespace).spec.replicas == 1
    objects = client.CustomObjectsApi(kube)
    route = f"mp-{namespace}.web"
    assert objects.get_cluster_custom_object(*FLUENT, "clusteroutputs", route)

    # the ResourceManager, leading through its Lease, writes its status (no consumers run here,
    # so it reports what it measured; a lease it may not take would leave this condition unset)
    wait_for(
        lambda: "MetricsAvailable" in {c["type"] for c in
                                       get_pipeline(kube, namespace, "web")["status"].get(
                                           "conditions", [])},
        timeout=120, what="the ResourceManager's MetricsAvailable condition",
    )  # fmt: skip
    lease = client.CoordinationV1Api(kube).read_namespaced_lease("metricpipe-operator", SYSTEM)
    assert lease.spec is not None
    assert lease.spec.holder_identity

    patch_spec(kube, namespace, "web", {"topic": {"partitions": 3}})
    topic = f"metricpipe.{namespace}.web"
    wait_for(lambda: (topic_state(stack.kafka_bootstrap, topic) or (0, {}))[0] == 3,
             what="3 partitions")  # fmt: skip
    # a switch to batch: the CronJob replaces the Deployment, with nothing but those rights
    patch_spec(kube, namespace, "web", {"mode": "batch"})
    wait_for(lambda: condition_is(kube, namespace, "web", "ConsumerReady", "True",
                                  reason="Scheduled"), what="ConsumerReady=Scheduled")  # fmt: skip
    assert not client.AppsV1Api(kube).list_namespaced_deployment(namespace).items

    objects.delete_namespaced_custom_object("metricpipe.io", "v1alpha1", namespace,
                                            "metricpipelines", "web")  # fmt: skip
    wait_for(
        lambda: not cast(dict[str, Any], objects.list_namespaced_custom_object(
            "metricpipe.io", "v1alpha1", namespace, "metricpipelines"))["items"],
        what="the pipeline gone (finalizer ran)",
    )  # fmt: skip
    with pytest.raises(client.ApiException) as gone:
        objects.get_cluster_custom_object(*FLUENT, "clusteroutputs", route)
    assert gone.value.status == 404

    log = operator.log()
    denied = [line for line in log.splitlines() if re.search(r"\b403\b|Forbidden", line)]
    assert not denied, "\n".join(denied[:10])
