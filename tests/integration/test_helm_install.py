"""charts/metricpipe on the real API server, as a user installs it: `helm template | kubectl apply
--dry-run=server`, then `helm install` with the local stack's values (charts/metricpipe/ci/
local-values.yaml, as manifests/overlays/local), the chart's operator (a container on the
stack's node) reconciling a MetricPipeline to Ready, `helm upgrade` changing two values (the
ResourceManager's interval, a ConfigMap setting; the peek API's replicas) that the server then
holds, and `helm uninstall` leaving none of the release's objects.

Isolated from the other tests: its own release namespace, cluster-scoped names with a suffix of
its own, and an operator that serves only this test's pipeline namespace."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import wait_for
from install_harness import kubectl
from metricpipe_contract.model import GROUP, PLURAL, VERSION
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.settings import StackSettings
from node_harness import Node
from pipelines import condition_is, create_pipeline

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "metricpipe"
SPEC: dict[str, Any] = {
    "source": {"tag": "app.helm"},
    "topic": {"partitions": 1, "deletionPolicy": "Delete"},
    "metric": {"aggregation": "count", "groupBy": ["host"], "window": "1m",
               "allowedLateness": "10s", "eventTime": {"field": "ts", "format": "epoch_millis"}},
    "sink": {"backend": "elasticsearch"},
    "replicas": 1,
    "scaling": {"enabled": False},
    "consumer": {"resources": {"requests": {"cpu": "100m"}}},
}  # fmt: skip
MONITORS = ("podmonitors", "servicemonitors", "prometheusrules")


def helm(stack: StackEnv, *args: str) -> str:
    done = subprocess.run([str(StackSettings().helm), f"--kubeconfig={stack.kubeconfig}", *args],
                          capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def values(release: str, pipelines: str, interval: str, peek: int) -> list[str]:
    """The local overlay's values, narrowed to this test: one operator replica serving only
    `pipelines`, no peek API to start with, the monitoring objects on."""
    return [
        "-f", str(CHART / "ci" / "local-values.yaml"),
        f"--set=clusterScopedNameSuffix=-{release}",
        f"--set=operator.watchNamespaces={{{pipelines}}}",
        "--set=operator.replicas=1",
        f"--set-string=operator.settings.METRICPIPE_SCALING_NAMESPACE={pipelines}",
        f"--set-string=operator.settings.METRICPIPE_SCALING_INTERVAL_SECONDS={interval}",
        f"--set=peek.replicas={peek}",
        "--set=redis.exporterSecretRef.name=",  # the demo's Secret; the exporter needs no cache
        "--set=monitoring.release=kube-prometheus-stack",
        *(f"--set=monitoring.{kind}.enabled=true"
          for kind in ("podMonitor", "serviceMonitor", "prometheusRule")),
    ]  # fmt: skip


def release_objects(stack: StackEnv, release: str) -> list[str]:
    """kind/name of what is left in the release's namespace and cluster-wide with its suffix."""
    namespaced = kubectl(stack, "get", "deployments,configmaps,services,serviceaccounts,roles,"
                         + ",".join(MONITORS), "-n", release, "-o", "name")  # fmt: skip
    assert namespaced.returncode == 0, namespaced.stderr
    cluster = kubectl(stack, "get", "clusterroles,clusterrolebindings", "-o", "name")
    defaults = ("configmap/kube-root-ca.crt", "serviceaccount/default")  # every namespace's
    left = [n for n in namespaced.stdout.split() if n not in defaults]
    return left + [n for n in cluster.stdout.split() if n.endswith(f"-{release}")]


def get(stack: StackEnv, *args: str) -> Any:
    """`kubectl get ... -o json`, parsed."""
    done = kubectl(stack, "get", *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def config_name(stack: StackEnv, release: str) -> str:
    """The ConfigMap the operator's pods read their settings from."""
    operator = get(stack, "deployment", "metricpipe-operator", "-n", release)
    (source,) = operator["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    return str(source["configMapRef"]["name"])


def operator_available(apps: client.AppsV1Api, release: str) -> bool:
    status = apps.read_namespaced_deployment("metricpipe-operator", release).status
    return bool(status is not None and status.available_replicas)


@pytest.mark.usefixtures("metricpipeline_crd", "logarchive_crd", "prometheus_operator_crds")
def test_helm_install_reconcile_upgrade_uninstall(
    stack: StackEnv, kube: client.ApiClient, node: Node, namespace: str, unique_name: str
) -> None:
    release, core = f"{unique_name}-mp", client.CoreV1Api(kube)
    apps, custom = client.AppsV1Api(kube), client.CustomObjectsApi(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=release)))
    installed = False
    try:
        rendered = helm(stack, "template", release, str(CHART), "-n", release, "--include-crds",
                        *values(release, namespace, "5", 0))  # fmt: skip
        dry = kubectl(stack, "apply", "--dry-run=server", "-f", "-", stdin=rendered)
        assert dry.returncode == 0, dry.stderr
        assert "deployment.apps/metricpipe-operator created (server dry run)" in dry.stdout

        notes = helm(stack, "install", release, str(CHART), "-n", release,
                     *values(release, namespace, "5", 0))  # fmt: skip
        installed = True
        assert f"kubectl -n {release} rollout status deployment/metricpipe-operator" in notes
        wait_for(lambda: operator_available(apps, release), 180, "the chart's operator", 2)
        create_pipeline(kube, namespace, "helm", SPEC)
        wait_for(lambda: condition_is(kube, namespace, "helm", "Ready", "True"), 240,
                 "the pipeline Ready, reconciled by the chart's operator", 2)  # fmt: skip

        before = config_name(stack, release)
        helm(stack, "upgrade", release, str(CHART), "-n", release,
             *values(release, namespace, "7", 1))  # fmt: skip
        after = config_name(stack, release)  # a new name: the operator's pods roll
        assert after != before
        data = get(stack, "configmap", after, "-n", release)["data"]
        assert data["METRICPIPE_SCALING_INTERVAL_SECONDS"] == "7"
        assert get(stack, "deployment", "metricpipe-peek", "-n", release)["spec"]["replicas"] == 1
        configs = [c["metadata"]["name"] for c in get(stack, "configmaps", "-n", release)["items"]]
        assert before not in configs  # the upgrade removed what the release no longer has
        wait_for(lambda: operator_available(apps, release), 180, "the upgraded operator", 2)

        # the operator removes its finalizer (and the topic) before it goes
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "helm")
        wait_for(lambda: not pipeline_exists(custom, namespace), 120, "the pipeline deleted", 1)
        installed_objects = release_objects(stack, release)
        assert {"deployment.apps/metricpipe-operator", f"clusterrole.rbac.authorization.k8s.io/"
                f"metricpipe-operator-{release}", "podmonitor.monitoring.coreos.com/"
                "metricpipe-consumer"} <= set(installed_objects), installed_objects  # fmt: skip
        helm(stack, "uninstall", release, "-n", release, "--wait")
        installed = False
        assert release_objects(stack, release) == []
        assert kubectl(stack, "get", "crd", f"{PLURAL}.{GROUP}").returncode == 0  # Helm keeps CRDs
    finally:
        if installed:
            helm(stack, "uninstall", release, "-n", release)
        for pipeline in get(stack, PLURAL, "-n", namespace)["items"]:
            custom.patch_namespaced_custom_object(  # no operator left to finalize it
                GROUP, VERSION, namespace, PLURAL, pipeline["metadata"]["name"],
                {"metadata": {"finalizers": None}})  # fmt: skip
        core.delete_namespace(release)


def pipeline_exists(custom: client.CustomObjectsApi, namespace: str) -> bool:
    try:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "helm")
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
