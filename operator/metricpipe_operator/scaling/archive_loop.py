"""The ResourceManager's LogArchive step (I/O), run in each of its cycles after the pipelines:
list the archives, read their series (archive_plan.ARCHIVE_QUERIES), plan each (pure), and
apply: /scale with an Event saying why, then status — archivedThrough, lagRecords, timeLag and
the Archived condition — merged into the object's current status under its resourceVersion."""

from __future__ import annotations

from collections import deque
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from metricpipe_contract.archive_model import API_VERSION, KIND, PLURAL
from metricpipe_contract.model import GROUP, VERSION

from ..reconcile.archive_status import merge_archive_conditions
from ..reconcile.status import now_rfc3339
from ..reconcile.statuswrite import write_pipeline_status
from .archive_plan import ARCHIVE_LABEL, ARCHIVE_QUERIES, ArchivePlan, plan_archive
from .collect import MetricsUnavailableError, MetricValues, fetch_metric_values
from .events import build_event, decide_event_reason
from .model import MetricSample, PolicyConfig
from .plan import Policy, state_key

log = structlog.get_logger("metricpipe.resourcemanager")
HTTP_CONFLICT = 409
HTTP_NOT_FOUND = 404


class ArchiveScaler:
    def __init__(
        self, api: client.ApiClient, *, prometheus_url: str, query_timeout: float,
        namespace: str | None, policy: Policy, policy_config: PolicyConfig, keep_seconds: float,
    ) -> None:  # fmt: skip
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.prometheus_url = prometheus_url
        self.query_timeout = query_timeout
        self.namespace = namespace
        self.policy = policy
        self.policy_config = policy_config
        self.keep_seconds = keep_seconds
        self.history: dict[str, deque[MetricSample]] = {}  # by the archive's UID

    def cycle(self, now: float) -> list[ArchivePlan]:
        archives = self._fetch_archives()
        if not archives:
            self.history.clear()
            return []
        values: MetricValues | None = None
        unavailable = ""
        try:
            values = fetch_metric_values(self.prometheus_url, self.query_timeout, now,
                                         ARCHIVE_QUERIES, ARCHIVE_LABEL)  # fmt: skip
        except MetricsUnavailableError as error:
            unavailable = str(error)
        live = {state_key(o["metadata"]) for o in archives}
        for gone in set(self.history) - live:
            del self.history[gone]
        plans = []
        for obj in archives:
            state = state_key(obj["metadata"])
            plan = plan_archive(
                obj, tuple(self.history.get(state, ())), values=values, unavailable=unavailable,
                policy=self.policy, config=self.policy_config, now=now,
                keep_seconds=self.keep_seconds,
            )  # fmt: skip
            if plan is None:
                continue
            self.history[state] = deque(plan.history)
            self._apply(obj, plan)
            plans.append(plan)
        return plans

    def _fetch_archives(self) -> list[dict[str, Any]]:
        listed: Any
        try:
            if self.namespace:
                listed = self.objects.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL
                )
            else:
                listed = self.objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        except ApiException as error:
            if error.status == HTTP_NOT_FOUND:  # the LogArchive CRD is not installed
                return []
            raise
        return list(listed.get("items", []))

    def _apply(self, obj: dict[str, Any], plan: ArchivePlan) -> None:
        meta = obj["metadata"]
        where = (GROUP, VERSION, meta["namespace"], PLURAL, meta["name"])
        scaled: dict[str, Any] = {}
        current = int((obj.get("spec") or {}).get("replicas") or 1)
        if plan.scale:
            try:
                self.objects.patch_namespaced_custom_object_scale(
                    *where, {"spec": {"replicas": plan.decision.replicas}}
                )
                direction = decide_event_reason(current, plan.decision.replicas)
                message = f"{current} → {plan.decision.replicas}: {plan.decision.reason}"
                log.info("archivers scaled", archive=plan.key, replicas=plan.decision.replicas,
                         previous=current, reason=plan.decision.reason)  # fmt: skip
                self._event(obj, direction, message)
                scaled = {"lastScaleTime": now_rfc3339(),
                          "lastScaleReason": plan.decision.reason[:1024]}  # fmt: skip
            except ApiException as error:
                log.warning("archive scale failed", archive=plan.key, status=error.status)

        def read() -> dict[str, Any] | None:
            try:
                found: Any = self.objects.get_namespaced_custom_object(*where)
                return dict(found)
            except ApiException as error:
                if error.status == 404:
                    return None
                raise

        def build(current_obj: dict[str, Any]) -> dict[str, Any] | None:
            status = current_obj.get("status") or {}
            generation = int(current_obj["metadata"].get("generation") or 0)
            conditions = merge_archive_conditions(status.get("conditions") or [],
                                                  [plan.condition], generation)  # fmt: skip
            numbers = {**plan.status, **scaled}
            if conditions == status.get("conditions") and all(
                status.get(k) == v for k, v in numbers.items()
            ):
                return None
            return {"conditions": conditions, **numbers}

        def patch(status: dict[str, Any], version: str | None) -> bool:
            body = {"metadata": {"resourceVersion": version}, "status": status}
            try:
                self.objects.patch_namespaced_custom_object_status(*where, body)
            except ApiException as error:
                if error.status != HTTP_CONFLICT:
                    raise
                return False
            return True

        write_pipeline_status(read, patch, build, attempts=3)

    def _event(self, obj: dict[str, Any], reason: str, message: str) -> None:
        try:
            event = build_event(obj, reason, message, object_kind=(API_VERSION, KIND))
            self.core.create_namespaced_event(obj["metadata"]["namespace"], event)
        except ApiException as error:
            log.warning("event not recorded", archive=obj["metadata"]["name"], status=error.status)
