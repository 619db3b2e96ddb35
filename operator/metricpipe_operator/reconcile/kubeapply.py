"""Idempotent writes to the Kubernetes API: server-side apply, with a record of what changed."""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError
from urllib3.exceptions import HTTPError

from ..errors import KubernetesApiError

FIELD_MANAGER = "metricpipe-operator"


class KubeApplier:
    """Applies plain-dict objects. One per process: discovery is cached and refreshed on a miss."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api_client = api_client
        self._dynamic: DynamicClient | None = None
        self._lock = threading.Lock()
        self._discovery_lock = threading.RLock()
        self._cache_dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def dynamic(self) -> DynamicClient:
        with self._lock:
            if self._dynamic is None:
                # A private discovery cache: the client's default file in /tmp is shared by
                # every process talking to the same URL and outlives API servers and CRDs.
                self._cache_dir = tempfile.TemporaryDirectory(prefix="metricpipe-discovery-")
                cache_file = os.path.join(self._cache_dir.name, "discovery.json")
                self._dynamic = DynamicClient(self._api_client, cache_file=cache_file)
            return self._dynamic

    def _resource(self, api_version: str, kind: str, refresh: bool = True) -> Any:
        try:
            return self._lookup(api_version, kind)
        except ResourceNotFoundError:
            if not refresh:
                raise
            with self._discovery_lock:  # CRDs installed after start-up: discover again
                self.dynamic.resources.invalidate_cache()
            return self._lookup(api_version, kind)

    def _lookup(self, api_version: str, kind: str) -> Any:
        # kubernetes' LazyDiscoverer is not thread-safe: a miss (a kind that is not installed,
        # e.g. fluent-operator's) resets its cache, and a handler in another of Kopf's threads
        # then failed with KeyError('resources') inside it. One lookup at a time (they are
        # cached dictionary reads after the first).
        with self._discovery_lock:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def has_kind(self, api_version: str, kind: str) -> bool:
        try:
            self._resource(api_version, kind)
        except ResourceNotFoundError:
            return False
        return True

    def fetch(self, api_version: str, kind: str, name: str, namespace: str | None) -> Any | None:
        resource = self._resource(api_version, kind)
        try:
            return resource.get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        except (ApiException, HTTPError) as error:
            raise KubernetesApiError(f"reading {kind}/{name}: {_short(error)}") from error

    def ensure(
        self, body: dict[str, Any], field_manager: str = FIELD_MANAGER
    ) -> tuple[str, str] | None:
        """Server-side apply body as `field_manager`; returns (reason, message) when something
        changed. A manager owns what it applied: list entries another manager applied (an
        owner reference keyed by its uid) stay when this one applies without them."""
        meta = body["metadata"]
        kind, name, namespace = body["kind"], meta["name"], meta.get("namespace")
        resource = self._resource(body["apiVersion"], kind)
        before = self.fetch(body["apiVersion"], kind, name, namespace)
        try:
            after = self.dynamic.server_side_apply(
                resource, body=body, namespace=namespace,
                field_manager=field_manager, force_conflicts=True,
            )  # fmt: skip
        except NotFoundError as error:  # the kind vanished (CRD deleted): rediscover next time
            self.dynamic.resources.invalidate_cache()
            raise KubernetesApiError(f"applying {kind}/{name}: API not found") from error
        except (ApiException, HTTPError) as error:
            raise KubernetesApiError(f"applying {kind}/{name}: {_short(error)}") from error
        if before is None:
            return (f"{kind}Created", f"created {kind} {name}")
        if before.metadata.resourceVersion != after.metadata.resourceVersion:
            return (f"{kind}Updated", f"updated {kind} {name}")
        return None

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete if present; True when something was deleted."""
        try:
            resource = self._resource(api_version, kind)
        except ResourceNotFoundError:
            return False
        try:
            resource.delete(name=name, namespace=namespace)
        except NotFoundError:
            return False
        except (ApiException, HTTPError) as error:
            raise KubernetesApiError(f"deleting {kind}/{name}: {_short(error)}") from error
        return True

    def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> bool:
        """JSON merge patch of the status subresource (lists are replaced whole). With a
        resourceVersion the write is refused (False) if the object changed since it was read."""
        resource = self._resource(api_version, kind)
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            resource.status.patch(
                body=body, name=name, namespace=namespace,
                content_type="application/merge-patch+json",
            )  # fmt: skip
        except NotFoundError:
            return True
        except ConflictError:
            return False
        except (ApiException, HTTPError) as error:
            message = f"patching status of {kind}/{name}: {_short(error)}"
            raise KubernetesApiError(message) from error
        return True


def _short(error: BaseException) -> str:
    """Status and reason of an API error, without headers or tracebacks (for conditions)."""
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return str(error).splitlines()[0][:300]
