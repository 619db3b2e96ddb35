"""One active operator replica: a coordination.k8s.io Lease gates the Kopf handlers and the
ResourceManager together.

A replica stands by (answering its liveness probe) until it holds the Lease, then runs
everything; it renews every `lease_retry_seconds` and exits the moment it cannot be sure it
still holds it: another holder, or no successful renewal within `lease_renew_deadline_seconds`
(shorter than the Lease's duration, so it has stopped before anyone may take over). Its pod
restarts and stands by. A replica that stops normally (SIGTERM) releases the Lease, and the
next takes over within one retry. Takeover after a crash: at most the Lease's duration plus one
retry, plus the new leader's start (its handlers resume every pipeline; reconciles are
idempotent, so no child is doubled).

Acquire when the Lease is free, ours, or expired (renewTime + leaseDurationSeconds in the
past); every write carries the resourceVersion read, so two replicas cannot both win.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = structlog.get_logger("metricpipe.leader")
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
        self.other_holder: str | None = None  # who holds it, when the last try found another

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
            self.other_holder = str(spec.get("holderIdentity"))
            return self._lost(f"held by {self.other_holder}")
        if spec.get("holderIdentity") != self.identity:
            body["acquireTime"] = _micro(now)
        version = current.metadata.resource_version if current.metadata else None
        patch = {"metadata": {"resourceVersion": version}, "spec": body}
        try:
            self.api.patch_namespaced_lease(self.name, self.namespace, patch)
        except ApiException as error:
            return self._lost(f"lost the race for the lease ({error.status})")
        return self._won()

    def release(self) -> None:
        """Give the Lease up (a normal stop): the next replica takes over at its next try."""
        if not self.held:
            return
        try:
            current = self.api.read_namespaced_lease(self.name, self.namespace)
            spec = self.api.api_client.sanitize_for_serialization(current.spec) or {}
            if spec.get("holderIdentity") == self.identity:
                version = current.metadata.resource_version if current.metadata else None
                self.api.patch_namespaced_lease(self.name, self.namespace, {
                    "metadata": {"resourceVersion": version},
                    "spec": {"holderIdentity": None, "renewTime": None},
                })  # fmt: skip
                log.info("leadership released", lease=self.name, identity=self.identity)
        except ApiException as error:  # it expires on its own
            log.warning("releasing the lease failed", status=error.status)
        self.held = False

    def _won(self) -> bool:
        if not self.held:
            log.info("leading", lease=self.name, identity=self.identity)
        self.held = True
        self.other_holder = None
        return True

    def _lost(self, why: str) -> bool:
        if self.held:
            log.info("not leading", why=why)
        self.held = False
        return False


def decide_still_leading(other_holder: str | None, since_renewal: float,
                         renew_deadline: float) -> bool:  # fmt: skip
    """Pure: after a renewal attempt that failed, may the leader go on? Not when another
    replica holds the Lease, nor once no renewal succeeded for the renew deadline (the API
    server may be away: others take over when the Lease expires, so stop before that)."""
    return other_holder is None and since_renewal < renew_deadline


class LeaderElection:
    """Blocks until leading (`acquire`), then renews in a thread and calls `on_lost` (which
    must stop the process) when leadership can no longer be trusted."""

    def __init__(self, lease: LeaderLease, *, retry_seconds: float, renew_deadline: float,
                 on_lost: Callable[[str], None]) -> None:  # fmt: skip
        self.lease = lease
        self.retry_seconds = retry_seconds
        self.renew_deadline = renew_deadline
        self.on_lost = on_lost
        self.stopped = threading.Event()
        self._renewing = threading.Lock()  # a renewal never lands after the release

    def acquire(self) -> None:
        waited = False
        while not self.lease.ensure_held():
            if not waited:
                log.info("standing by", lease=self.lease.name, holder=self.lease.other_holder)
                waited = True
            time.sleep(self.retry_seconds)
        threading.Thread(target=self._renew, name="leader-lease", daemon=True).start()

    def _renew(self) -> None:
        renewed = time.monotonic()
        while not self.stopped.wait(self.retry_seconds):
            with self._renewing:
                if self.stopped.is_set():
                    return
                held = self.lease.ensure_held()
            if held:
                renewed = time.monotonic()
                continue
            since = time.monotonic() - renewed
            if not decide_still_leading(self.lease.other_holder, since, self.renew_deadline):
                why = (f"the lease is held by {self.lease.other_holder}" if self.lease.other_holder
                       else f"no renewal for {since:.0f} s")  # fmt: skip
                self.on_lost(why)
                return

    def release(self) -> None:
        self.stopped.set()
        with self._renewing:
            self.lease.release()
