"""The demo's I/O with the cluster: the CRD, namespace, secret, pipelines and the log archive,
the log reader's RBAC and token, status and Events."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "metricpipe.io", "v1alpha1", "metricpipelines"
ARCHIVES = "logarchives"


class Cluster:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        # Any: plain JSON dicts, not the client's typed models
        self.core: Any = client.CoreV1Api(api)
        self.objects: Any = client.CustomObjectsApi(api)
        self.extensions: Any = client.ApiextensionsV1Api(api)
        self.rbac: Any = client.RbacAuthorizationV1Api(api)

    def wait_crd_established(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conditions = self.extensions.read_custom_resource_definition(name).status.conditions
            if any(c.type == "Established" and c.status == "True" for c in conditions or []):
                return
            time.sleep(0.5)
        raise TimeoutError(f"CRD {name} not Established after {timeout:.0f} s")

    def available_replicas(self, namespace: str, name: str) -> int:
        return self._deployment_count(namespace, name, "available_replicas")

    def _deployment_count(self, namespace: str, name: str, field: str) -> int:
        """A replica count from a Deployment's status (0 while it or its status is absent)."""
        try:
            deployment = client.AppsV1Api(self.core.api_client).read_namespaced_deployment(
                name, namespace
            )
        except ApiException as error:
            if error.status == 404:
                return 0
            raise
        status = deployment.status
        return int(getattr(status, field) or 0) if status is not None else 0

    def namespace_exists(self, name: str) -> bool:
        try:
            self.core.read_namespace(name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def ensure_namespace(self) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": self.namespace}})
        except ApiException as error:
            if error.status != 409:
                raise

    def ensure_secret(self, name: str, data: dict[str, str]) -> None:
        body = {"metadata": {"name": name}, "stringData": data}
        _create_unless_present(self.core.create_namespaced_secret, self.namespace, body)

    def put_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        """Create or replace a Secret in `namespace`, which is created when missing."""
        try:
            self.core.create_namespace({"metadata": {"name": namespace}})
        except ApiException as error:
            if error.status != 409:
                raise
        body = {"metadata": {"name": name}, "stringData": data}
        try:
            self.core.create_namespaced_secret(namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
            self.core.replace_namespaced_secret(name, namespace, body)

    def ensure_log_reader(self, account: str, role: dict[str, Any]) -> None:
        """A ServiceAccount with `role` (a Role body) bound to it in the demo's namespace."""
        name = role["metadata"]["name"]
        role = {**role, "metadata": {"name": name}}
        binding = {
            "metadata": {"name": f"{name}-{account}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account,
                          "namespace": self.namespace}],
        }  # fmt: skip
        for create, body in ((self.core.create_namespaced_service_account,
                              {"metadata": {"name": account}}),
                             (self.rbac.create_namespaced_role, role),
                             (self.rbac.create_namespaced_role_binding, binding)):  # fmt: skip
            _create_unless_present(create, self.namespace, body)

    def create_token(self, namespace: str, account: str, seconds: int = 3600) -> str:
        """A ServiceAccount's bearer token from the TokenRequest API (`kubectl create token`)."""
        request = {"spec": {"audiences": [], "expirationSeconds": seconds}}
        answer = self.core.create_namespaced_service_account_token(account, namespace, request)
        return str(answer.status.token)

    def apply_pipeline(self, body: dict[str, Any]) -> None:
        self.apply_object(PLURAL, body)

    def apply_object(self, plural: str, body: dict[str, Any]) -> None:
        """Create a metricpipe.io object in the namespace, or merge its spec into the one there."""
        name = body["metadata"]["name"]
        try:
            self.objects.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, body
            )
        except ApiException as error:
            if error.status != 409:
                raise
            self.objects.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, {"spec": body["spec"]},
                _content_type="application/merge-patch+json",
            )  # fmt: skip

    def get_object(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def delete_object(self, plural: str, name: str, timeout: float = 120) -> bool:
        """Delete a metricpipe.io object and wait until its finalizer let it go; False if absent."""
        try:
            self.objects.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        deadline = time.monotonic() + timeout
        while self.get_object(plural, name) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{plural}/{name} still there {timeout:.0f} s after its deletion: is the "
                    "operator running? (kubectl -n metricpipe-system logs "
                    "deploy/metricpipe-operator)"
                )
            time.sleep(1)
        return True

    def list_pipelines(self) -> list[dict[str, Any]]:
        found = self.objects.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        return sorted(found["items"], key=lambda p: p["metadata"]["name"])

    def ready_consumers(self, pipeline: str) -> int:
        return self._deployment_count(self.namespace, f"{pipeline}-consumer", "ready_replicas")

    def scaling_events(self) -> list[tuple[float, str, str]]:
        """(time, pipeline name, line) of every ScaledUp/ScaledDown Event in the namespace,
        oldest first."""
        events = self.core.list_namespaced_event(self.namespace).items
        found = []
        for event in events:
            if event.reason in ("ScaledUp", "ScaledDown"):
                moment = event.last_timestamp or event.event_time or event.first_timestamp
                stamp = moment.timestamp() if moment else 0.0
                name = event.involved_object.name
                found.append((stamp, name, f"{name}: {event.reason}: {event.message}"))
        return sorted(found)

    def delete_namespace(self) -> bool:
        try:
            self.core.delete_namespace(self.namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True


def _create_unless_present(create: Callable[..., Any], namespace: str, body: Any) -> None:
    try:
        create(namespace, body)
    except ApiException as error:
        if error.status != 409:
            raise


def run_kubectl(kubectl: Path, kubeconfig: Path, *args: str) -> list[str]:
    """kubectl with the stack's kubeconfig; its output lines, or an error that shows them."""
    done = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout.splitlines()
