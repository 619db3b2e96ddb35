"""The ResourceManager loop: one operator-wide cycle for all pipelines (not a timer each).

read (10 batched PromQL queries, `collect.QUERIES`; one pod list, `observe.py`) → plan (pure,
`plan.plan_cycle`: the policy per pipeline over its kept history, the status to write) → apply
(the pipeline's /scale when the target changed, an Event with the numbers, and a status patch
only when something a user would see changed: with ConsumerReady and SinkReady from the pods,
and Ready recomputed) → keep (each pipeline's history and write time, by its UID).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from metricpipe_contract.model import GROUP, PLURAL, VERSION

from ..reconcile.status import Condition, now_rfc3339
from ..reconcile.statuswrite import build_merged_status, write_pipeline_status
from .archive_loop import ArchiveScaler
from .cache import CACHE_QUERIES
from .collect import QUERIES, MetricsUnavailableError, MetricValues, fetch_metric_values
from .events import build_event, decide_event_reason
from .model import Decision, MetricSample, PolicyConfig
from .observe import fetch_observed
from .plan import (
    CycleInputs,
    Kept,
    PipelinePlan,
    PlanRules,
    Policy,
    build_status_write_status,
    plan_cycle,
    state_key,
)

log = structlog.get_logger("metricpipe.resourcemanager")
HTTP_CONFLICT = 409


@dataclass(frozen=True)
class LoopSettings:
    prometheus_url: str
    interval_seconds: float = 15.0
    query_timeout_seconds: float = 5.0
    keep_seconds: float = 3600.0  # history kept per pipeline (>= the longest stabilisation)
    status_max_age_seconds: float = 120.0  # small moves of the numbers wait at most this long
    namespace: str | None = None  # None: every namespace
    write_concurrency: int = 8  # API writes (scale, status, events) in flight at once
    max_status_writes_per_cycle: int = 300  # bounds a cycle's time; the rest waits a cycle


@dataclass(frozen=True)
class StatusWrite:
    obj: dict[str, Any]
    status: dict[str, Any]
    key: str  # the pipeline's state key (state_key)
    resource_version: str  # the object's, after this cycle's own /scale write
    conditions: tuple[Condition, ...]  # the ResourceManager's own, merged into status
    age: float  # seconds since this replica last wrote it
    urgent: bool  # something a user sees changed (not only the age)


@dataclass
class CycleReport:
    pipelines: int = 0
    archives: int = 0
    queries: int = 0
    metrics_available: bool = True
    scaled: int = 0
    status_patches: int = 0
    deferred: int = 0  # status writes left for the next cycle (over the budget)
    conflicts: int = 0
    seconds: float = 0.0
    decisions: dict[str, Decision] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, what: str) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)


class ResourceManager:
    def __init__(
        self, api: client.ApiClient, settings: LoopSettings, policy_config: PolicyConfig,
        policy: Policy,
    ) -> None:  # fmt: skip
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.jobs = client.BatchV1Api(api)
        self.settings = settings
        self.policy_config = policy_config
        self.policy = policy
        # per pipeline object (its UID: one re-created under the same name starts afresh),
        # dropped when it is gone
        self.history: dict[str, deque[MetricSample]] = {}
        self.written_at: dict[str, float] = {}
        self.budget_warned: set[str] = set()  # batch pipelines told their runs cannot fit
        self.archives = ArchiveScaler(
            api, prometheus_url=settings.prometheus_url,
            query_timeout=settings.query_timeout_seconds, namespace=settings.namespace,
            policy=policy, policy_config=policy_config, keep_seconds=settings.keep_seconds,
        )  # fmt: skip

    def run(self, stop: threading.Event) -> None:
        log.info("resource manager started", interval=self.settings.interval_seconds)
        while not stop.is_set():
            try:
                report = self.cycle(time.time())
                log.debug("cycle", pipelines=report.pipelines, seconds=round(report.seconds, 3))
            except Exception:  # the loop must outlive any one cycle's failure
                log.exception("resource manager cycle failed")
            stop.wait(self.settings.interval_seconds)

    def _fetch_cache_values(
        self, pipelines: list[dict[str, Any]], now: float
    ) -> MetricValues | None:
        """The Redis cache's two queries, only when a pipeline reads the cache."""
        if not any(((p.get("spec") or {}).get("source") or {}).get("store") == "redis"
                   for p in pipelines):  # fmt: skip
            return None
        try:
            return fetch_metric_values(self.settings.prometheus_url,
                                       self.settings.query_timeout_seconds, now,
                                       queries=CACHE_QUERIES, label="redis")  # fmt: skip
        except MetricsUnavailableError:
            return None

    # -- one cycle: read, plan (pure), apply --------------------------------------------------
    def cycle(self, now: float) -> CycleReport:
        started = time.monotonic()
        report = CycleReport(queries=len(QUERIES))
        pipelines = self._fetch_pipelines()
        report.pipelines = len(pipelines)
        self._forget_gone({state_key(o["metadata"]) for o in pipelines})
        observed = fetch_observed(self.core, self.jobs, self.settings.namespace, pipelines)
        values: MetricValues | None = None
        unavailable = ""
        try:
            values = fetch_metric_values(
                self.settings.prometheus_url, self.settings.query_timeout_seconds, now
            )
        except MetricsUnavailableError as error:
            unavailable = str(error)
            report.metrics_available = False
        rules = PlanRules(self.policy, self.policy_config, self.settings.keep_seconds,
                          self.settings.status_max_age_seconds)  # fmt: skip
        inputs = CycleInputs(values, unavailable, observed, now,
                             self._fetch_cache_values(pipelines, now))  # fmt: skip
        plans = plan_cycle(pipelines, inputs, self._kept(), rules)
        for plan in plans:
            self._keep(plan)
            report.decisions[plan.key] = plan.decision
        # Plans are pure and fast; the API writes are what takes time: a few in flight, and at
        # most a budget of status writes per cycle — visible changes first, then the oldest.
        with ThreadPoolExecutor(max_workers=self.settings.write_concurrency) as pool:
            applied = pool.map(lambda plan: self._apply(plan, report), plans)
            writes = sorted(
                (w for w in applied if w is not None), key=lambda w: (not w.urgent, -w.age)
            )
            budget = self.settings.max_status_writes_per_cycle
            report.deferred = max(0, len(writes) - budget)
            list(pool.map(lambda w: self.write_status(w, now, report), writes[:budget]))
        try:  # the archives' step never holds back the pipelines'
            report.archives = len(self.archives.cycle(now))
        except Exception:
            log.exception("archive scaling failed")
        report.seconds = time.monotonic() - started
        return report

    def _kept(self) -> dict[str, Kept]:
        states = set(self.history) | set(self.written_at) | self.budget_warned
        return {state: Kept(tuple(self.history.get(state, ())), self.written_at.get(state),
                            state in self.budget_warned) for state in states}  # fmt: skip

    def _keep(self, plan: PipelinePlan) -> None:
        if plan.kept.history:
            self.history[plan.state] = deque(plan.kept.history)
        else:
            self.history.pop(plan.state, None)
        if plan.kept.written_at is not None:
            self.written_at[plan.state] = plan.kept.written_at
        if plan.kept.budget_warned:
            self.budget_warned.add(plan.state)
        else:
            self.budget_warned.discard(plan.state)

    def _forget_gone(self, live: set[str]) -> None:
        """The state of pipelines that no longer exist (deleted, or re-created: a new UID)."""
        for gone in set(self.history) - live:
            del self.history[gone]
        for gone in set(self.written_at) - live:
            del self.written_at[gone]
        self.budget_warned &= live

    def _fetch_pipelines(self) -> list[dict[str, Any]]:
        listed: Any
        if self.settings.namespace:
            listed = self.objects.list_namespaced_custom_object(
                GROUP, VERSION, self.settings.namespace, PLURAL
            )
        else:
            listed = self.objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        return list(listed.get("items", []))

    def _apply(self, plan: PipelinePlan, report: CycleReport) -> StatusWrite | None:
        """The plan's Events and /scale; the status write that follows (not yet sent)."""
        for event in plan.events:
            self._event(plan.obj, event.reason, event.message, kind=event.kind)
        version = str(plan.obj["metadata"].get("resourceVersion") or "")
        scaled = None
        if plan.scale is not None:
            scaled = self._scale(plan.obj, plan.scale.current, plan.scale.decision)
            if scaled is not None:  # the /scale write moved the object's resourceVersion
                report.count("scaled")
                version = scaled
        status = build_status_write_status(plan, scaled is not None, now_rfc3339())
        if status is None:
            return None
        urgent = plan.urgent or scaled is not None
        return StatusWrite(plan.obj, status, plan.state, version, plan.conditions, plan.age,
                           urgent)  # fmt: skip

    def _scale(self, obj: dict[str, Any], current: int, decision: Decision) -> str | None:
        """Sets the replicas through the pipeline's /scale; the object's new resourceVersion,
        or None when the write failed."""
        meta = obj["metadata"]
        try:
            scale: Any = self.objects.patch_namespaced_custom_object_scale(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"],
                {"spec": {"replicas": decision.replicas}},
            )  # fmt: skip
        except ApiException as error:
            log.warning("scale failed", pipeline=meta["name"], status=error.status)
            return None
        direction = decide_event_reason(current, decision.replicas)
        log.info(
            "scaled", pipeline=f"{meta['namespace']}/{meta['name']}", replicas=decision.replicas,
            previous=current, reason=decision.reason, limited_by=decision.limited_by,
        )  # fmt: skip
        self._event(obj, direction, f"{current} → {decision.replicas}: {decision.reason}")
        return str(scale["metadata"]["resourceVersion"])

    def _event(self, obj: dict[str, Any], reason: str, message: str, kind: str = "Normal") -> None:
        meta = obj["metadata"]
        event = build_event(obj, reason, message, kind)
        try:
            self.core.create_namespaced_event(meta["namespace"], event)
        except ApiException as error:
            log.warning("event not recorded", pipeline=meta["name"], status=error.status)

    def write_status(self, write: StatusWrite, now: float, report: CycleReport) -> None:
        """Patches status under the resourceVersion it was computed from (statuswrite.py). On a
        conflict (the reconciler wrote conditions meanwhile) it merges its conditions into the
        fresh object's and tries once more, so a scale's lastScaleTime is never lost."""
        meta = write.obj["metadata"]
        where = (GROUP, VERSION, meta["namespace"], PLURAL, meta["name"])

        def read() -> dict[str, Any] | None:
            fresh: Any = self.objects.get_namespaced_custom_object(*where)
            return dict(fresh)

        def patch(status: dict[str, Any], version: str | None) -> bool:
            body = {"metadata": {"resourceVersion": version}, "status": status}
            try:  # the answer (the whole object) is not needed: read, but not decoded
                answer: Any = self.objects.patch_namespaced_custom_object_status(
                    *where, body, _preload_content=False
                )
                answer.read()  # all of it: an unread body would poison the pooled connection
                answer.release_conn()
            except ApiException as error:
                if error.status != HTTP_CONFLICT:
                    raise
                report.count("conflicts")
                return False
            return True

        first = {**write.obj, "metadata": {**meta, "resourceVersion": write.resource_version}}
        build = build_merged_status(write.status, write.conditions)
        if write_pipeline_status(read, patch, build, first=first, attempts=2):
            self.written_at[write.key] = now
            report.count("status_patches")
