"""`manifests/` against the real API server: the overlay the README installs is accepted
(server-side dry run), and the ServiceAccounts it creates can do what metricpipe needs and
nothing more (`kubectl auth can-i`, answered by the API server's RBAC authorizer)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from metricpipe_devstack.env import StackEnv

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "manifests" / "overlays" / "local"
SYSTEM = "metricpipe-system"
OPERATOR = f"system:serviceaccount:{SYSTEM}:metricpipe-operator"
EXPORTER = f"system:serviceaccount:{SYSTEM}:metricpipe-exporter"
IDENTITY_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                  "RoleBinding"}  # fmt: skip


def kubectl(
    stack: StackEnv, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(stack.kubectl), f"--kubeconfig={stack.kubeconfig}", *args],
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def identities(stack: StackEnv) -> Iterator[str]:
    """The overlay's namespace, ServiceAccounts and RBAC, applied for real (no Deployments: a
    running operator would act on other tests' pipelines); removed afterwards unless they were
    installed before."""
    rendered = kubectl(stack, "kustomize", str(OVERLAY))
    assert rendered.returncode == 0, rendered.stderr
    installed = kubectl(stack, "get", "namespace", SYSTEM).returncode == 0  # e.g. by make demo
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d["kind"] in IDENTITY_KINDS]
    text = yaml.safe_dump_all(documents)
    applied = kubectl(stack, "apply", "--server-side", "-f", "-", stdin=text)
    assert applied.returncode == 0, applied.stderr
    yield text
    if not installed:  # never take away an installation that was there before the test
        kubectl(stack, "delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=text)


def test_the_local_overlay_passes_a_server_side_dry_run(stack: StackEnv, identities: str) -> None:
    done = kubectl(stack, "apply", "--dry-run=server", "--server-side", "--force-conflicts",
                   "-k", str(OVERLAY))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deployment.apps/metricpipe-operator serverside-applied (server dry run)" in done.stdout


MUST = [
    (OPERATOR, "watch", "metricpipelines.metricpipe.io", None),
    (OPERATOR, "patch", "metricpipelines.metricpipe.io/status", "team-a"),
    (OPERATOR, "patch", "metricpipelines.metricpipe.io/scale", "team-a"),
    (OPERATOR, "create", "deployments.apps", "team-a"),
    (OPERATOR, "delete", "configmaps", "team-a"),
    (OPERATOR, "create", "events", "team-a"),
    (OPERATOR, "create", "clusterfilters.fluentd.fluent.io", None),
    (OPERATOR, "create", "leases.coordination.k8s.io", SYSTEM),
    (EXPORTER, "list", "metricpipelines.metricpipe.io", None),
]
MUST_NOT = [
    (OPERATOR, "get", "secrets", "team-a"),  # consumers read credentials via secretKeyRef
    (OPERATOR, "list", "secrets", None),
    (OPERATOR, "create", "pods/exec", "team-a"),
    (OPERATOR, "create", "pods", "team-a"),
    (OPERATOR, "delete", "metricpipelines.metricpipe.io", "team-a"),  # users delete, not us
    (OPERATOR, "create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    (OPERATOR, "escalate", "clusterroles.rbac.authorization.k8s.io", None),
    (OPERATOR, "delete", "customresourcedefinitions.apiextensions.k8s.io", None),
    (OPERATOR, "*", "*", None),  # nothing like cluster-admin
    (OPERATOR, "update", "leases.coordination.k8s.io", "kube-system"),
    (EXPORTER, "patch", "metricpipelines.metricpipe.io", "team-a"),
    (EXPORTER, "get", "secrets", SYSTEM),
    (EXPORTER, "list", "pods", None),
]


def can_i(kube: client.ApiClient, who: str, verb: str, resource: str,
          namespace: str | None) -> bool:  # fmt: skip
    """What `kubectl auth can-i VERB RESOURCE --as WHO` asks, as a SubjectAccessReview with the
    group spelled out (kubectl cannot split `clusterfilters.fluentd.fluent.io` when that CRD is
    not installed, and then asks about the wrong group)."""
    name, _, subresource = resource.partition("/")
    plural, _, group = name.partition(".")
    account_namespace = who.split(":")[2]  # system:serviceaccount:<namespace>:<name>
    review = {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": who,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{account_namespace}",
                       "system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": plural,
                                   "subresource": subresource, "namespace": namespace or ""},
        },
    }  # fmt: skip
    answer = client.AuthorizationV1Api(kube).create_subject_access_review(review)
    return bool(answer.status.allowed)


@pytest.mark.parametrize(("who", "verb", "resource", "namespace"), MUST)
def test_allowed(kube: client.ApiClient, identities: str, who: str, verb: str, resource: str,
                 namespace: str | None) -> None:  # fmt: skip
    assert can_i(kube, who, verb, resource, namespace)


@pytest.mark.parametrize(("who", "verb", "resource", "namespace"), MUST_NOT)
def test_denied(kube: client.ApiClient, identities: str, who: str, verb: str, resource: str,
                namespace: str | None) -> None:  # fmt: skip
    assert not can_i(kube, who, verb, resource, namespace)
