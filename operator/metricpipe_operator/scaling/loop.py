"""The ResourceManager loop: one operator-wide cycle for all pipelines (not a timer each).

collect (10 batched PromQL queries, `collect.QUERIES`; one pod list, `observe.py`) → decide
(the pure policy, per pipeline, over its kept history) → realize (the pipeline's /scale when
the target changed, an Event with the numbers, and a status patch only when something a user
would see changed: with ConsumerReady and SinkReady from the pods, and Ready recomputed).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from metricpipe_contract.durations import parse_duration
from metricpipe_contract.model import API_VERSION, GROUP, KIND, PLURAL, VERSION, MetricPipelineSpec

from ..reconcile.status import (
    Condition,
    merge_conditions,
    now_rfc3339,
    parse_rfc3339,
    rebuild_ready,
)
from .batch import BatchSizing, decide_batch_plan
from .batchruns import (
    build_batch_condition,
    build_batch_runs,
    build_batch_status,
    merge_run_records,
)
from .collect import (
    QUERIES,
    MetricsUnavailableError,
    MetricValues,
    build_sample,
    fetch_metric_values,
)
from .model import Decision, MetricSample, PipelineScaling, PolicyConfig
from .observe import Observed, build_health_conditions, fetch_observed
from .report import build_scaling_conditions, build_scaling_status

log = structlog.get_logger("metricpipe.resourcemanager")
Policy = Callable[[Sequence[MetricSample], PipelineScaling, PolicyConfig, float], Decision]
NUMERIC_FIELDS = ("lag", "timeLagSeconds", "freshnessSeconds", "sloAttainment", "inputRate",
                  "capacityPerReplica", "rejectedShare", "lateRecords")  # fmt: skip


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


def decide_refresh_age(key: str, max_age: float) -> float:
    """Pure: this pipeline's refresh age, spread over [max_age / 2, max_age] by a stable hash of
    its key, so that statuses written in one cycle (1,000 new pipelines, an operator restart) do
    not all fall due in one later cycle."""
    return max_age * (0.5 + (zlib.crc32(key.encode()) % 1000) / 2000)


def decide_status_due(old: dict[str, Any], new: dict[str, Any], age: float, max_age: float) -> bool:
    """Pure: write status when what a user reads changed — replicas, SLO state, a condition's
    status or reason — or a number moved by more than 10 % (with small absolute floors), or it
    is `max_age` old."""
    if age >= max_age:
        return True
    for key, value in new.items():
        if key == "conditions":  # a new reason is news too (Error -> KafkaAuthFailed)
            before = {c["type"]: (c.get("status"), c.get("reason"))
                      for c in old.get("conditions") or []}  # fmt: skip
            if any(before.get(c["type"]) != (c["status"], c.get("reason")) for c in value):
                return True
        elif key in NUMERIC_FIELDS:
            previous = old.get(key)
            floor = {"lag": 100.0, "sloAttainment": 0.01, "rejectedShare": 0.02,
                     "lateRecords": 0.0}.get(key, 5.0)  # fmt: skip
            if previous is None or abs(float(value) - float(previous)) > max(
                floor, 0.1 * abs(float(previous))
            ):
                return True
        elif key not in ("timeLag", "freshness", "rejected") and old.get(key) != value:
            return True
    return False


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

    def run(self, stop: threading.Event) -> None:
        log.info("resource manager started", interval=self.settings.interval_seconds)
        while not stop.is_set():
            try:
                report = self.cycle(time.time())
                log.debug("cycle", pipelines=report.pipelines, seconds=round(report.seconds, 3))
            except Exception:  # the loop must outlive any one cycle's failure
                log.exception("resource manager cycle failed")
            stop.wait(self.settings.interval_seconds)

    # -- one cycle ---------------------------------------------------------------------------
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
        # Decisions are pure and fast; the API writes are what takes time: a few in flight, and
        # at most a budget of status writes per cycle — visible changes first, then the oldest.
        with ThreadPoolExecutor(max_workers=self.settings.write_concurrency) as pool:
            handled = pool.map(
                lambda o: self._handle(o, values, unavailable, now, report, observed=observed),
                pipelines,
            )
            writes = sorted(
                (w for w in handled if w is not None), key=lambda w: (not w.urgent, -w.age)
            )
            budget = self.settings.max_status_writes_per_cycle
            report.deferred = max(0, len(writes) - budget)
            list(pool.map(lambda w: self.write_status(w, now, report), writes[:budget]))
        report.seconds = time.monotonic() - started
        return report

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

    def _handle(self, obj: dict[str, Any], values: MetricValues | None, unavailable: str,
                now: float, report: CycleReport, *,
                observed: Observed) -> StatusWrite | None:  # fmt: skip
        meta, status = obj["metadata"], obj.get("status") or {}
        key = f"{meta['namespace']}/{meta['name']}"
        try:
            spec = MetricPipelineSpec.model_validate(obj.get("spec") or {})
        except ValidationError:
            return None  # the reconciler reports invalid specs
        if spec.mode == "batch":
            runs = observed.finished_runs.get(key, [])
            return self._handle_batch(obj, spec, runs, now, report)
        if spec.mode != "stream":
            return None
        facts = build_pipeline_scaling(spec, status)
        state = state_key(meta)
        history = self.history.setdefault(state, deque())
        sample = None
        if values is not None:
            # only ready replicas process: a pod starting or crash-looping adds no capacity
            running = int(status.get("readyReplicas") or 0)
            sample = build_sample(key, values, running, now)
            history.append(sample)
        while history and history[0].at < now - self.settings.keep_seconds:
            history.popleft()
        if values is None:
            why = f"metrics unavailable, no change: {unavailable}"
            decision = Decision(facts.current_replicas, why, metrics_available=False)
        elif not spec.scaling.enabled:
            decision = Decision(facts.current_replicas, "scaling disabled in the spec")
        else:
            decision = self.policy(list(history), facts, self.policy_config, now)
        report.decisions[key] = decision
        changes: dict[str, Any] = {}
        version = str(meta.get("resourceVersion") or "")
        if (
            spec.scaling.enabled
            and decision.metrics_available
            and decision.replicas != facts.current_replicas
        ):
            scaled = self._scale(obj, facts.current_replicas, decision)
            if scaled is not None:  # the /scale write moved the object's resourceVersion
                report.count("scaled")
                version = scaled
                changes = {
                    "lastScaleTime": now_rfc3339(),
                    "lastScaleReason": decision.reason[:1024],
                }
        target = facts.freshness_target_seconds
        new_status = {**build_scaling_status(decision, sample, list(history), target), **changes}
        conditions = build_scaling_conditions(decision, sample, target)
        pods = None if observed.consumer_pods is None else observed.consumer_pods.get(key, [])
        conditions += build_health_conditions(spec, pods)
        generation = int(meta.get("generation") or 0)
        new_status["conditions"] = rebuild_ready(
            merge_conditions(list(status.get("conditions") or []), conditions, generation),
            generation,
        )
        max_age = decide_refresh_age(key, self.settings.status_max_age_seconds)
        # A status this replica has not written (a restart, a takeover) counts as written now:
        # its numbers are refreshed within max_age, not all in the first cycle.
        age = now - self.written_at.setdefault(state, now)
        urgent = bool(changes) or decide_status_due(status, new_status, 0.0, max_age)
        unchanged = all(status.get(k) == v for k, v in new_status.items())
        if urgent or (age >= max_age and not unchanged):
            return StatusWrite(obj, new_status, state, version, tuple(conditions), age, urgent)
        return None

    def _handle_batch(
        self, obj: dict[str, Any], spec: MetricPipelineSpec, finished: list[dict[str, Any]],
        now: float, report: CycleReport,
    ) -> StatusWrite | None:  # fmt: skip
        """Batch mode: record the finished runs, plan the next run's parallelism from them (the
        pipeline's replicas, through /scale), and say when even the maximum will not fit."""
        meta, status = obj["metadata"], obj.get("status") or {}
        key = f"{meta['namespace']}/{meta['name']}"
        records = merge_run_records(((status.get("batch") or {}).get("runs") or []), finished)
        if not records:
            return None  # nothing measured yet: the spec's replicas stand
        sizing = BatchSizing(
            freshness_target_seconds=parse_duration(spec.freshness.target),
            allowed_lateness_seconds=parse_duration(spec.metric.allowed_lateness),
            startup_seconds=self.policy_config.startup_seconds,
            min_parallelism=spec.scaling.min_replicas, max_parallelism=spec.scaling.max_replicas,
        )  # fmt: skip
        plan = decide_batch_plan(build_batch_runs(records), sizing)
        report.decisions[key] = Decision(plan.parallelism, plan.reason)
        version, changes = str(meta.get("resourceVersion") or ""), {}
        if spec.scaling.enabled and plan.parallelism != spec.replicas:
            scaled = self._scale(obj, spec.replicas, Decision(plan.parallelism, plan.reason))
            if scaled is not None:
                report.count("scaled")
                version = scaled
                changes = {"lastScaleTime": now_rfc3339(), "lastScaleReason": plan.reason[:1024]}
        condition = build_batch_condition(plan)
        before = {c["type"]: c.get("status") for c in status.get("conditions") or []}
        # one Warning when it turns False (the set also covers a status write still pending)
        state = state_key(meta)
        if condition.status is False and before.get(condition.type) != "False":
            if state not in self.budget_warned:
                self._event(obj, "BatchBudgetExceeded", plan.reason, kind="Warning")
            self.budget_warned.add(state)
        elif condition.status is True:
            self.budget_warned.discard(state)
        new_status = {**build_batch_status(records, plan), **changes}
        new_status["conditions"] = merge_conditions(
            list(status.get("conditions") or []), [condition], int(meta.get("generation") or 0)
        )
        if all(status.get(k) == v for k, v in new_status.items()):
            return None
        age = now - self.written_at.setdefault(state, now)
        return StatusWrite(obj, new_status, state, version, (condition,), age, True)

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
        direction = "ScaledUp" if decision.replicas > current else "ScaledDown"
        log.info(
            "scaled", pipeline=f"{meta['namespace']}/{meta['name']}", replicas=decision.replicas,
            previous=current, reason=decision.reason, limited_by=decision.limited_by,
        )  # fmt: skip
        self._event(obj, direction, f"{current} → {decision.replicas}: {decision.reason}")
        return str(scale["metadata"]["resourceVersion"])

    def _event(self, obj: dict[str, Any], reason: str, message: str, kind: str = "Normal") -> None:
        meta = obj["metadata"]
        stamp = datetime.now(UTC)
        event: Any = {
            "metadata": {"generateName": f"{meta['name']}-scale-"},
            "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid")},
            "reason": reason, "message": message[:1024], "type": kind,
            "source": {"component": "metricpipe-resourcemanager"},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }  # fmt: skip
        try:
            self.core.create_namespaced_event(meta["namespace"], event)
        except ApiException as error:
            log.warning("event not recorded", pipeline=meta["name"], status=error.status)

    def write_status(self, write: StatusWrite, now: float, report: CycleReport) -> None:
        """Patches status under the resourceVersion it was computed from. On a conflict (the
        reconciler wrote conditions meanwhile) it merges its conditions into the fresh object's
        and tries once more, so a scale's lastScaleTime is never lost."""
        meta = write.obj["metadata"]
        status, version = write.status, write.resource_version
        for attempt in (1, 2):
            body = {"metadata": {"resourceVersion": version}, "status": status}
            try:  # the answer (the whole object) is not needed: read, but not decoded
                answer: Any = self.objects.patch_namespaced_custom_object_status(
                    GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], body,
                    _preload_content=False,
                )  # fmt: skip
                answer.read()  # all of it: an unread body would poison the pooled connection
                answer.release_conn()
                break
            except ApiException as error:
                if error.status != 409:
                    raise
                report.count("conflicts")
                if attempt == 2:
                    return
                fresh: Any = self.objects.get_namespaced_custom_object(
                    GROUP, VERSION, meta["namespace"], PLURAL, meta["name"]
                )
                version = str(fresh["metadata"]["resourceVersion"])
                generation = int(fresh["metadata"].get("generation") or 0)
                status = {**write.status, "conditions": rebuild_ready(merge_conditions(
                    list((fresh.get("status") or {}).get("conditions") or []),
                    list(write.conditions), generation,
                ), generation)}  # fmt: skip
        self.written_at[write.key] = now
        report.count("status_patches")


def state_key(meta: dict[str, Any]) -> str:
    """What the ResourceManager keeps its state of a pipeline under: the object's UID."""
    return str(meta.get("uid") or f"{meta['namespace']}/{meta['name']}")


def build_pipeline_scaling(spec: MetricPipelineSpec, status: dict[str, Any]) -> PipelineScaling:
    last = status.get("lastScaleTime")
    last_at = parse_rfc3339(last) if last else None
    return PipelineScaling(
        current_replicas=spec.replicas, min_replicas=spec.scaling.min_replicas,
        max_replicas=spec.scaling.max_replicas,
        target_utilization=spec.scaling.target_utilization,
        freshness_target_seconds=parse_duration(spec.freshness.target),
        allowed_lateness_seconds=parse_duration(spec.metric.allowed_lateness),
        scale_down_stabilization_seconds=parse_duration(spec.scaling.scale_down_stabilization),
        last_scale_at=last_at,
    )  # fmt: skip
