"""Only the active operator replica scales: a coordination.k8s.io Lease, renewed every cycle.

Acquire when the Lease is free, ours, or expired (renewTime + leaseDurationSeconds in the
past); every write carries the resourceVersion read, so two replicas cannot both win.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = structlog.get_logger("metricpipe.resourcemanager")
HTTP_NOT_FOUND, HTTP_CONFLICT = 404, 409


def _micro(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decide_lease_free(spec: dict[str, Any], identity: str, now: datetime) -> bool:
    """Pure: may `identity` take (or keep) a lease with this spec at `now`?"""
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return True
    renewed = spec.get("renewTime")
    if renewed is None:
        return True
    if isinstance(renewed, str):
        renewed = datetime.fromisoformat(renewed.replace("Z", "+00:00"))
    duration = float(spec.get("leaseDurationSeconds") or 0)
    return (now - renewed).total_seconds() > duration


class LeaderLease:
    def __init__(self, api: client.ApiClient, namespace: str, name: str, identity: str,
                 duration_seconds: int) -> None:  # fmt: skip
        self.api = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration_seconds
        self.held = False

    def ensure_held(self) -> bool:
        """Try to acquire or renew; True when this replica is the active one."""
        now = datetime.now(UTC)
        body = {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
                "renewTime": _micro(now)}  # fmt: skip
        try:
            current = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != HTTP_NOT_FOUND:
                return self._lost(f"reading the lease failed: {error.status}")
            lease: Any = {"metadata": {"name": self.name},
                     "spec": {**body, "acquireTime": _micro(now)}}  # fmt: skip
            try:
                self.api.create_namespaced_lease(self.namespace, lease)
            except ApiException as create_error:
                return self._lost(f"another replica created the lease ({create_error.status})")
            return self._won()
        spec = self.api.api_client.sanitize_for_serialization(current.spec) or {}
        if not decide_lease_free(spec, self.identity, now):
            return self._lost(f"held by {spec.get('holderIdentity')}")
        if spec.get("holderIdentity") != self.identity:
            body["acquireTime"] = _micro(now)
        version = current.metadata.resource_version if current.metadata else None
        patch = {"metadata": {"resourceVersion": version}, "spec": body}
        try:
            self.api.patch_namespaced_lease(self.name, self.namespace, patch)
        except ApiException as error:
            return self._lost(f"lost the race for the lease ({error.status})")
        return self._won()

    def _won(self) -> bool:
        if not self.held:
            log.info("resource manager active", lease=self.name, identity=self.identity)
        self.held = True
        return True

    def _lost(self, why: str) -> bool:
        if self.held:
            log.info("resource manager standing by", why=why)
        self.held = False
        return False
