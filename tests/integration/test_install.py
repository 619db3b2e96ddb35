"""`manifests/` against the real API server: every `kubectl apply` of the README's "Install on
a cluster" is accepted (server-side dry run; prometheus-operator's own CRDs installed for the
monitoring component), and the ServiceAccounts it creates can do what metricpipe needs and
nothing more (`kubectl auth can-i` and SubjectAccessReviews, answered by the API server's RBAC
authorizer; the peek API's with its own token), and the example Role for developers grants
reading archived logs in its namespace only."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client, config

from helpers import wait_for
from install_harness import OVERLAY, SYSTEM, kubectl
from metricpipe_devstack.env import StackEnv

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "manifests" / "overlays" / "production"
OPERATOR = f"system:serviceaccount:{SYSTEM}:metricpipe-operator"
EXPORTER = f"system:serviceaccount:{SYSTEM}:metricpipe-exporter"
PEEK = f"system:serviceaccount:{SYSTEM}:metricpipe-peek"
LOG_READER_EXAMPLE = REPO / "manifests" / "examples" / "rbac" / "peek-log-reader.yaml"


def readme_install_commands() -> list[list[str]]:
    """The `kubectl apply` lines of the README's "Install on a cluster" code block."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Install on a cluster", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README: no sh code block in Install on a cluster"
    commands = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["kubectl", "apply"]:
            commands.append(words[2:])
    return commands


def test_the_readme_installs_the_overlays_this_test_checks() -> None:
    applied = {Path(c[c.index("-k") + 1]) for c in readme_install_commands()}
    assert applied == {OVERLAY.relative_to(REPO), PRODUCTION.relative_to(REPO)}


@pytest.mark.usefixtures("prometheus_operator_crds")
@pytest.mark.parametrize("arguments", readme_install_commands(), ids=" ".join)
def test_each_readme_apply_passes_a_server_side_dry_run(
    stack: StackEnv, identities: str, arguments: list[str]
) -> None:
    arguments = [str(REPO / a) if a.startswith("manifests/") else a for a in arguments]
    done = kubectl(stack, "apply", *arguments, "--dry-run=server", "--force-conflicts")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deployment.apps/metricpipe-operator serverside-applied (server dry run)" in done.stdout


def test_the_production_overlay_takes_credentials_only_from_secrets(stack: StackEnv) -> None:
    rendered = kubectl(stack, "kustomize", str(PRODUCTION))
    assert rendered.returncode == 0, rendered.stderr
    documents = list(yaml.safe_load_all(rendered.stdout))
    kinds = {d["kind"] for d in documents}
    assert {"PodMonitor", "ServiceMonitor", "PrometheusRule"} <= kinds
    assert "Secret" not in kinds  # created by the user, never shipped
    references = []
    for document in documents:
        if document["kind"] != "Deployment":
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env", []):
                if any(word in variable["name"] for word in ("PASSWORD", "USERNAME", "TOKEN")):
                    assert "value" not in variable, variable
                    references.append(variable["valueFrom"]["secretKeyRef"]["name"])
    assert references == ["metricpipe-sink-credentials"] * 2
    # Kafka (Strimzi's SCRAM-over-TLS listener): each process's user and the cluster CA as one
    # read-only projected volume of Secrets, the settings naming only where it is mounted
    kafka_secrets = {}
    for document in documents:
        if document["kind"] == "Deployment" and document["metadata"]["name"] != "metricpipe-peek":
            pod = document["spec"]["template"]["spec"]
            (volume,) = [v for v in pod["volumes"] if v["name"] == "kafka-credentials"]
            kafka_secrets[document["metadata"]["name"]] = sorted(
                source["secret"]["name"] for source in volume["projected"]["sources"]
            )
            assert pod["securityContext"]["fsGroup"] == 65532
    assert kafka_secrets == {
        "metricpipe-operator": ["metricpipe-cluster-ca-cert", "metricpipe-operator"],
        "metricpipe-exporter": ["metricpipe-cluster-ca-cert", "metricpipe-exporter"],
    }
    configmaps = [d.get("data", {}) for d in documents if d["kind"] == "ConfigMap"]
    settings = [data for data in configmaps if "METRICPIPE_KAFKA_BOOTSTRAP" in data]
    assert len(settings) == 2
    for data in settings:
        assert data["METRICPIPE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert not any("PASSWORD" in key for key in data), data
    # the peek API: no Secret at all (its token is its ServiceAccount's), behind the Ingress
    (peek,) = [d for d in documents if d["metadata"]["name"] == "metricpipe-peek"
               and d["kind"] == "Deployment"]  # fmt: skip
    assert "volumes" not in peek["spec"]["template"]["spec"] or not [
        v for v in peek["spec"]["template"]["spec"]["volumes"] if "emptyDir" not in v
    ]
    (ingress,) = [d for d in documents if d["kind"] == "Ingress"]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": "metricpipe-peek", "port": {"name": "http"}}  # fmt: skip
    peek_settings = [data for data in configmaps if "METRICPIPE_PEEK_WEBHDFS_URL" in data]
    assert peek_settings[0]["METRICPIPE_PEEK_TRUSTED_PROXIES"]  # the controller's X-Real-IP
    monitors = [d for d in documents if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert all(m["metadata"]["labels"]["release"] == "kube-prometheus-stack" for m in monitors)
    dashboards = [d for d in documents if d["metadata"]["name"] == "metricpipe-grafana-dashboard"]
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


KUBECTL_CAN_I = [  # built-in kinds, where kubectl resolves the group itself
    (OPERATOR, "get", "secrets", ["--all-namespaces"], "no"),
    (OPERATOR, "create", "pods", ["--subresource=exec", "-n", "team-a"], "no"),
    (OPERATOR, "*", "*", ["--all-namespaces"], "no"),
    (OPERATOR, "delete", "nodes", [], "no"),
    (OPERATOR, "patch", "deployments.apps", ["-n", "team-a"], "yes"),
    (EXPORTER, "list", "secrets", ["-n", SYSTEM], "no"),
    (EXPORTER, "list", "configmaps", ["-n", SYSTEM], "no"),
]


@pytest.mark.parametrize(("who", "verb", "resource", "extra", "answer"), KUBECTL_CAN_I)
def test_kubectl_auth_can_i(stack: StackEnv, identities: str, who: str, verb: str,
                            resource: str, extra: list[str], answer: str) -> None:  # fmt: skip
    done = kubectl(stack, "auth", "can-i", verb, resource, f"--as={who}", *extra)
    assert done.stdout.strip() == answer, done.stdout + done.stderr


MUST = [
    (OPERATOR, "watch", "metricpipelines.metricpipe.io", None),
    (OPERATOR, "patch", "metricpipelines.metricpipe.io/status", "team-a"),
    (OPERATOR, "patch", "metricpipelines.metricpipe.io/scale", "team-a"),
    (OPERATOR, "create", "deployments.apps", "team-a"),
    (OPERATOR, "delete", "configmaps", "team-a"),
    (OPERATOR, "create", "events", "team-a"),
    (OPERATOR, "list", "jobs.batch", None),  # batch runs: durations ...
    (OPERATOR, "list", "pods", None),  # ... and reports (termination messages)
    (OPERATOR, "create", "clusterfilters.fluentd.fluent.io", None),
    (OPERATOR, "create", "leases.coordination.k8s.io", SYSTEM),
    (EXPORTER, "list", "metricpipelines.metricpipe.io", None),
    (EXPORTER, "list", "logarchives.metricpipe.io", None),  # the archiver groups
    (OPERATOR, "watch", "logarchives.metricpipe.io", None),
    (OPERATOR, "patch", "logarchives.metricpipe.io", "team-a"),  # Kopf: finalizer, progress
    (OPERATOR, "patch", "logarchives.metricpipe.io/status", "team-a"),
    (OPERATOR, "patch", "logarchives.metricpipe.io/scale", "team-a"),  # the ResourceManager
    (PEEK, "create", "tokenreviews.authentication.k8s.io", None),
    (PEEK, "create", "subjectaccessreviews.authorization.k8s.io", None),
]
MUST_NOT = [
    (OPERATOR, "get", "secrets", "team-a"),  # consumers read credentials via secretKeyRef
    (OPERATOR, "list", "secrets", None),
    (OPERATOR, "create", "pods/exec", "team-a"),
    (OPERATOR, "create", "pods", "team-a"),
    (OPERATOR, "delete", "pods", "team-a"),
    (OPERATOR, "create", "jobs.batch", "team-a"),  # the CronJob controller starts runs
    (OPERATOR, "delete", "metricpipelines.metricpipe.io", "team-a"),  # users delete, not us
    (OPERATOR, "create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    (OPERATOR, "escalate", "clusterroles.rbac.authorization.k8s.io", None),
    (OPERATOR, "delete", "customresourcedefinitions.apiextensions.k8s.io", None),
    (OPERATOR, "*", "*", None),  # nothing like cluster-admin
    (OPERATOR, "update", "leases.coordination.k8s.io", "kube-system"),
    (EXPORTER, "patch", "metricpipelines.metricpipe.io", "team-a"),
    (EXPORTER, "get", "logarchives.metricpipe.io/logs", "team-a"),
    (EXPORTER, "get", "secrets", SYSTEM),
    (EXPORTER, "list", "pods", None),
    (OPERATOR, "get", "logarchives.metricpipe.io/logs", "team-a"),  # developers peek, not us
    (OPERATOR, "delete", "logarchives.metricpipe.io", "team-a"),
    (PEEK, "get", "logarchives.metricpipe.io/logs", "team-a"),  # it asks for the caller
    (PEEK, "list", "logarchives.metricpipe.io", None),
    (PEEK, "get", "secrets", SYSTEM),
    (PEEK, "list", "pods", None),
    (PEEK, "create", "serviceaccounts/token", SYSTEM),
    (PEEK, "impersonate", "users", None),
    (PEEK, "*", "*", None),
]


def can_i(kube: client.ApiClient, who: str, verb: str, resource: str,
          namespace: str | None, groups: tuple[str, ...] = ()) -> bool:  # fmt: skip
    """What `kubectl auth can-i VERB RESOURCE --as WHO` asks, as a SubjectAccessReview with the
    group spelled out (kubectl cannot split `clusterfilters.fluentd.fluent.io` when that CRD is
    not installed, and then asks about the wrong group). A ServiceAccount's groups are added;
    other users have `groups`."""
    name, _, subresource = resource.partition("/")
    plural, _, group = name.partition(".")
    if who.startswith("system:serviceaccount:"):
        account_namespace = who.split(":")[2]  # system:serviceaccount:<namespace>:<name>
        groups += ("system:serviceaccounts", f"system:serviceaccounts:{account_namespace}")
    review: Any = {  # the client sends a dict as it is
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": who,
            "groups": [*groups, "system:authenticated"],
            "resourceAttributes": {"verb": verb, "group": group, "resource": plural,
                                   "subresource": subresource, "namespace": namespace or ""},
        },
    }  # fmt: skip
    answer = client.AuthorizationV1Api(kube).create_subject_access_review(review)
    assert answer.status is not None
    return bool(answer.status.allowed)


@pytest.mark.parametrize(("who", "verb", "resource", "namespace"), MUST)
def test_allowed(kube: client.ApiClient, identities: str, who: str, verb: str, resource: str,
                 namespace: str | None) -> None:  # fmt: skip
    assert can_i(kube, who, verb, resource, namespace)


@pytest.mark.parametrize(("who", "verb", "resource", "namespace"), MUST_NOT)
def test_denied(kube: client.ApiClient, identities: str, who: str, verb: str, resource: str,
                namespace: str | None) -> None:  # fmt: skip
    assert not can_i(kube, who, verb, resource, namespace)


def token_client(kube: client.ApiClient, stack: StackEnv, namespace: str,
                 account: str) -> client.ApiClient:  # fmt: skip
    """An API client holding nothing but a fresh token of the ServiceAccount (TokenRequest)."""
    request: Any = {"spec": {"audiences": [], "expirationSeconds": 600}}  # sent as it is
    answer = client.CoreV1Api(kube).create_namespaced_service_account_token(
        account, namespace, request
    )
    assert answer.status is not None
    admin = client.Configuration()
    config.load_kube_config(config_file=str(stack.kubeconfig), client_configuration=admin)
    settings = client.Configuration()
    settings.host, settings.ssl_ca_cert = admin.host, admin.ssl_ca_cert
    settings.api_key = {"authorization": f"Bearer {answer.status.token}"}
    return client.ApiClient(settings)


def test_the_peek_service_account_token_reviews_and_reads_nothing(
    kube: client.ApiClient, stack: StackEnv, identities: str
) -> None:
    """With its own token, as the peek API runs: a TokenReview (of that very token) and a
    SubjectAccessReview are answered; Secrets, pods and LogArchives are refused (403, before
    the API server looks for the object)."""
    peek = token_client(kube, stack, SYSTEM, "metricpipe-peek")
    token = peek.configuration.api_key["authorization"].removeprefix("Bearer ")
    reviewed = client.AuthenticationV1Api(peek).create_token_review(
        cast(Any, {"spec": {"token": token}})
    )
    assert reviewed.status is not None
    assert reviewed.status.authenticated is True
    assert reviewed.status.user is not None
    assert reviewed.status.user.username == PEEK
    access = client.AuthorizationV1Api(peek).create_subject_access_review(cast(Any, {"spec": {
        "user": "alice", "groups": ["system:authenticated"],
        "resourceAttributes": {"group": "metricpipe.io", "resource": "logarchives",
                               "subresource": "logs", "verb": "get", "namespace": "team-a"},
    }}))  # fmt: skip
    assert access.status is not None
    assert access.status.allowed is False  # answered (alice has no Role), not refused
    core = client.CoreV1Api(peek)
    custom = client.CustomObjectsApi(peek)
    refused: list[tuple[str, Callable[[], Any]]] = [
        ("list secrets", lambda: core.list_namespaced_secret(SYSTEM)),
        ("get a secret", lambda: core.read_namespaced_secret("any", SYSTEM)),
        ("list pods", core.list_pod_for_all_namespaces),
        ("list logarchives", lambda: custom.list_cluster_custom_object(
            "metricpipe.io", "v1alpha1", "logarchives")),
        ("get a logarchive", lambda: custom.get_namespaced_custom_object(
            "metricpipe.io", "v1alpha1", "team-a", "logarchives", "web")),
    ]  # fmt: skip
    for what, call in refused:
        with pytest.raises(client.ApiException) as error:
            call()
        assert error.value.status == 403, what


def test_the_example_role_lets_its_group_read_archived_logs_in_its_namespace_only(
    kube: client.ApiClient, namespace: str, unique_name: str
) -> None:
    """manifests/examples/rbac/peek-log-reader.yaml, created in a namespace of this test's: its
    group may get logarchives/logs there (what the peek API asks), and nothing else."""
    rbac = client.RbacAuthorizationV1Api(kube)
    role, binding = yaml.safe_load_all(LOG_READER_EXAMPLE.read_text())
    assert (role["kind"], binding["kind"]) == ("Role", "RoleBinding")
    for document in (role, binding):
        document["metadata"]["namespace"] = namespace
    rbac.create_namespaced_role(namespace, role)
    rbac.create_namespaced_role_binding(namespace, binding)
    (subject,) = binding["subjects"]
    member = (subject["name"],)
    logs = "logarchives.metricpipe.io/logs"

    def granted() -> bool:  # the RBAC authorizer sees a new binding within moments
        return can_i(kube, unique_name, "get", logs, namespace, member)

    wait_for(granted, timeout=10, interval=0.2, what="the example Role's grant")
    assert not can_i(kube, unique_name, "get", logs, namespace)  # not without the group
    for verb, resource, where in (
        ("get", logs, "team-a"),  # another namespace
        ("get", logs, None),  # all namespaces
        ("list", logs, namespace),
        ("get", "logarchives.metricpipe.io", namespace),
        ("list", "logarchives.metricpipe.io", namespace),
        ("get", "pods/log", namespace),
        ("get", "metricpipelines.metricpipe.io", namespace),
    ):
        assert not can_i(kube, unique_name, verb, resource, where, member), (verb, resource)
