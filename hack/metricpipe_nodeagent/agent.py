"""The agent loop: register the Node, keep its Lease, and make the local processes match the
pods bound to it (list every `sync_seconds`; a dev node carries a handful of pods)."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .node import LEASE_NAMESPACE, build_lease, build_node, build_node_status
from .podplan import (
    Host,
    PlanError,
    PodPlan,
    build_pod_plan,
    decode_secret,
    encode_config_map,
    list_declared_ports,
)
from .podstatus import ContainerView, build_pod_status, carry_transition_times
from .runtime import LocalPod, utcnow
from .settings import AgentSettings

log = structlog.get_logger("nodeagent")
MERGE_PATCH = "application/merge-patch+json"  # lists (conditions, statuses) replaced whole
TOKEN_SECONDS = 7 * 24 * 3600  # a dev node does not rotate projected tokens: one week


def allocate_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NodeAgent:
    def __init__(self, api: client.ApiClient, settings: AgentSettings) -> None:
        self.api, self.settings = api, settings
        # Any: the agent speaks plain JSON dicts to the API, not the client's typed models
        self.core: Any = client.CoreV1Api(api)
        self.leases: Any = client.CoordinationV1Api(api)
        self.pods: dict[str, LocalPod] = {}  # uid -> running pod
        self.failed: dict[str, list[ContainerView]] = {}  # uid -> containers that cannot start
        self.reported: dict[str, dict[str, Any]] = {}  # uid -> last status written
        self.stopping: dict[str, threading.Thread] = {}
        self.started = utcnow()
        self.work_dir = settings.work_dir.resolve()
        sd = settings.file_sd_dir or os.environ.get("PROMETHEUS_FILE_SD_DIR")
        self.file_sd_dir = Path(sd) if sd else None
        self.python = settings.python or sys.executable

    # -- the Node ------------------------------------------------------------------------------
    def ensure_node(self) -> None:
        try:
            self.core.create_node(build_node(self.settings))
            log.info("node registered", node=self.settings.node_name)
        except ApiException as error:
            if error.status != 409:
                raise
            self.core.patch_node(
                self.settings.node_name, build_node(self.settings), _content_type=MERGE_PATCH
            )
        self.heartbeat()

    def heartbeat(self) -> None:
        now = utcnow()
        status = build_node_status(self.settings, now, self.started)
        self.core.patch_node_status(
            self.settings.node_name, {"status": status}, _content_type=MERGE_PATCH
        )
        lease = build_lease(self.settings, now)
        try:
            self.leases.patch_namespaced_lease(
                self.settings.node_name, LEASE_NAMESPACE, lease, _content_type=MERGE_PATCH
            )
        except ApiException as error:
            if error.status != 404:
                raise
            self.leases.create_namespaced_lease(LEASE_NAMESPACE, lease)

    # -- pods ----------------------------------------------------------------------------------
    def list_pods(self) -> list[dict[str, Any]]:
        response = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.settings.node_name}", _preload_content=False
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def sync(self) -> None:
        seen: set[str] = set()
        for pod in self.list_pods():
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            if pod["metadata"].get("deletionTimestamp"):
                self._delete(pod)
                continue
            if uid not in self.pods and uid not in self.failed:
                self._admit(pod)
            local = self.pods.get(uid)
            if local is not None and not local.stopping:
                local.tick()
                self._register_metrics(pod, local)
            self._report(pod)
        for uid in list(self.pods):
            if uid not in seen and uid not in self.stopping:  # deleted without grace
                self._stop_async(uid, self.pods[uid], 0.0, None)
        for uid in list(self.failed):
            if uid not in seen:
                del self.failed[uid]

    def _admit(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        directory = self.work_dir / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        ports = {key: allocate_port() for key in list_declared_ports(pod)}
        try:
            host = Host(directory, ports, self.python, self.settings.local_images, os.environ,
                        api_server=self.api.configuration.host)  # fmt: skip
            plan = build_pod_plan(pod, self._lookup, host)
        except PlanError as error:
            log.warning("pod cannot start", pod=meta["name"], reason=error.reason,
                        message=error.message)  # fmt: skip
            self.failed[meta["uid"]] = [
                ContainerView(name=c["name"], image=c.get("image", ""), pid=None,
                              started_at=None, ready=False, restart_count=0,
                              waiting_reason=error.reason, waiting_message=error.message)
                for c in pod["spec"].get("containers", [])
            ]  # fmt: skip
            return
        self.pods[meta["uid"]] = LocalPod.create(plan, directory)
        log.info("pod admitted", pod=f"{meta['namespace']}/{meta['name']}", dir=str(directory))

    def _lookup(self, kind: str, namespace: str, name: str) -> Mapping[str, bytes] | None:
        try:
            if kind == "serviceAccountToken":
                request = {"spec": {"audiences": [], "expirationSeconds": TOKEN_SECONDS}}
                answer = self.core.create_namespaced_service_account_token(name, namespace, request)
                return {"token": str(answer.status.token).encode()}
            if kind == "secret":
                return decode_secret(self.core.read_namespaced_secret(name, namespace).data)
            found = self.core.read_namespaced_config_map(name, namespace)
            return encode_config_map(found.data, found.binary_data)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _report(self, pod: Mapping[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        local = self.pods.get(uid)
        views = local.views() if local else self.failed.get(uid, [])
        scheduled = next((c for c in (pod.get("status") or {}).get("conditions") or []
                          if c.get("type") == "PodScheduled"), None)  # fmt: skip
        started = local.started if local else self.started
        before = self.reported.get(uid)
        status = carry_transition_times(
            before, build_pod_status(views, scheduled, started, utcnow())
        )
        if status == before:
            return
        try:
            self.core.patch_namespaced_pod_status(
                pod["metadata"]["name"], pod["metadata"]["namespace"], {"status": status},
                _content_type=MERGE_PATCH,
            )  # fmt: skip
            self.reported[uid] = status
        except ApiException as error:
            if error.status != 404:
                raise

    def _register_metrics(self, pod: Mapping[str, Any], local: LocalPod) -> None:
        """Pods with a port named `metrics` are scraped, job = label app.kubernetes.io/name
        (as metricpipe's PodMonitor does), through the stack's Prometheus file_sd."""
        if self.file_sd_dir is None:
            return
        target = self._sd_file(local.plan)
        ports = [c.plan.ports["metrics"] for c in local.containers if "metrics" in c.plan.ports]
        if not ports or target.exists():
            return
        labels = pod["metadata"].get("labels") or {}
        job = labels.get("app.kubernetes.io/name", local.plan.name)
        document = [{"targets": [f"127.0.0.1:{p}" for p in ports],
                     "labels": {"job": job, "namespace": local.plan.namespace,
                                "pod": local.plan.name}}]  # fmt: skip
        partial = target.with_suffix(".tmp")
        partial.write_text(json.dumps(document))
        partial.rename(target)

    def _sd_file(self, plan: PodPlan) -> Path:
        assert self.file_sd_dir is not None
        return self.file_sd_dir / f"nodeagent-{plan.namespace}-{plan.name}.json"

    def _delete(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        if uid in self.stopping:
            return
        local = self.pods.get(uid)
        grace = float(meta.get("deletionGracePeriodSeconds") or 0)
        if local is None:
            self.failed.pop(uid, None)
            self._finish_delete(meta)
            return
        self._stop_async(uid, local, grace, meta)

    def _stop_async(
        self, uid: str, local: LocalPod, grace: float, meta: Mapping[str, Any] | None
    ) -> None:
        def stop() -> None:
            if self.file_sd_dir is not None:
                self._sd_file(local.plan).unlink(missing_ok=True)
            local.stop(grace)
            log.info("pod stopped", pod=local.plan.name, grace=grace)
            if meta is not None:
                self._finish_delete(meta)
            self.pods.pop(uid, None)
            self.reported.pop(uid, None)
            self.stopping.pop(uid, None)

        thread = threading.Thread(target=stop, name=f"stop-{local.plan.name}", daemon=True)
        self.stopping[uid] = thread
        thread.start()

    def _finish_delete(self, meta: Mapping[str, Any]) -> None:
        """As the kubelet does once the containers are gone: the final delete, grace 0."""
        try:
            # The options go in the body: with a body, the API server ignores the query's grace.
            options = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=options)
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        registered, last_beat = False, time.monotonic()
        while not stop.is_set():
            try:
                if not registered:
                    self.ensure_node()
                    registered, last_beat = True, time.monotonic()
                self.sync()
                if time.monotonic() - last_beat >= self.settings.heartbeat_seconds:
                    self.heartbeat()
                    last_beat = time.monotonic()
            except ApiException as error:
                log.warning("sync failed; retrying", status=error.status,
                            body=str(error.body)[:500])  # fmt: skip
            except OSError as error:
                log.warning("sync failed; retrying", error=str(error)[:300])
            stop.wait(self.settings.sync_seconds)
        self.shutdown()

    def shutdown(self) -> None:
        """Agent stopping: stop every local process (SIGTERM, then SIGKILL after its pod's
        grace period); the pods stay bound and restart when the agent comes back."""
        for uid, local in list(self.pods.items()):
            if uid not in self.stopping:
                self._stop_async(uid, local, 30.0, None)
        for thread in list(self.stopping.values()):
            thread.join(timeout=60)
