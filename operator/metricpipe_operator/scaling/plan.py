"""The ResourceManager's plan (pure): for every pipeline, from one cycle's reads and what the
loop keeps of it, what to do — the replicas to set through /scale, the Events to record, the
status to write and how urgently — and what to keep for the next cycle.

`loop.py` is the shell: it reads (pipelines, pods, Prometheus), calls `plan_cycle`, applies
each plan (`/scale`, Events, one status write each; `build_status_write` adds what a scale
that went through changes) and keeps the state. The plan never sees a write's outcome, so a
`/scale` that fails changes nothing it decided: no `lastScaleTime`, no write of its own.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from metricpipe_contract.durations import parse_duration
from metricpipe_contract.model import MetricPipelineSpec

from ..reconcile.status import Condition, merge_conditions, parse_rfc3339, rebuild_ready
from .batch import BatchSizing, decide_batch_plan
from .batchruns import (
    build_batch_condition,
    build_batch_runs,
    build_batch_status,
    build_cache_condition,
    merge_run_records,
)
from .cache import decide_cache_writable
from .collect import MetricValues, build_sample
from .model import Decision, MetricSample, PipelineScaling, PolicyConfig
from .observe import Observed, build_health_conditions
from .report import build_scaling_conditions, build_scaling_status
from .wake import build_sleep_status

Policy = Callable[[Sequence[MetricSample], PipelineScaling, PolicyConfig, float], Decision]
REASON_CHARS = 1024  # of lastScaleReason and an Event's message
NUMERIC_FIELDS = ("lag", "timeLagSeconds", "freshnessSeconds", "sloAttainment", "inputRate",
                  "capacityPerReplica", "rejectedShare", "lateRecords")  # fmt: skip
# shown forms of numbers, and an estimate: written with the next write, never one of their own
QUIET_FIELDS = ("timeLag", "freshness", "rejected", "nextWakeTime")


@dataclass(frozen=True)
class CycleInputs:
    """One cycle's reads: Prometheus's answers (None: it did not answer, and why), the pods and
    finished batch runs, and the cycle's time."""

    values: MetricValues | None
    unavailable: str
    observed: Observed
    now: float
    cache_values: MetricValues | None = None  # cache.CACHE_QUERIES (only with a redis store)


@dataclass(frozen=True)
class PlanRules:
    """How plans are made: the scaling policy (pure) and its configuration, how much history
    is kept and how old a status may grow before small moves of its numbers are written."""

    policy: Policy
    policy_config: PolicyConfig
    keep_seconds: float = 3600.0  # history kept per pipeline (>= the longest stabilisation)
    status_max_age_seconds: float = 120.0  # small moves of the numbers wait at most this long


@dataclass(frozen=True)
class Kept:
    """What the loop keeps of one pipeline object between cycles (by its UID)."""

    history: tuple[MetricSample, ...] = ()
    written_at: float | None = None  # when this replica last wrote its status
    budget_warned: bool = False  # batch: told its runs cannot fit (one Warning per episode)


@dataclass(frozen=True)
class ScaleAction:
    current: int
    decision: Decision  # its replicas are the target; its reason goes to the Event and status


@dataclass(frozen=True)
class EventAction:
    reason: str
    message: str
    kind: str = "Normal"


@dataclass(frozen=True)
class PipelinePlan:
    obj: dict[str, Any]
    key: str  # namespace/name
    state: str  # what the loop keeps it under (state_key)
    decision: Decision
    kept: Kept  # to keep after this cycle
    status: dict[str, Any]  # to write, without what a scale adds
    conditions: tuple[Condition, ...]  # the ResourceManager's own, merged into status
    due: bool  # the status is written even when no scale happens
    urgent: bool  # something a user sees changed (not only the age)
    age: float  # seconds since this replica last wrote it
    scale: ScaleAction | None = None
    events: tuple[EventAction, ...] = field(default_factory=tuple)


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
        elif key not in QUIET_FIELDS and old.get(key) != value:
            return True
    return False


def state_key(meta: Mapping[str, Any]) -> str:
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
        last_scale_at=last_at, known_capacity=_known_capacity(status),
    )  # fmt: skip


def _known_capacity(status: Mapping[str, Any]) -> float | None:
    """status.capacityPerReplica, the last capacity measured (what a sleeping pipeline plans
    its wake with)."""
    value = status.get("capacityPerReplica")
    return float(value) if isinstance(value, int | float) and value > 0 else None


def plan_cycle(
    pipelines: Sequence[dict[str, Any]], inputs: CycleInputs, kept: Mapping[str, Kept],
    rules: PlanRules,
) -> list[PipelinePlan]:  # fmt: skip
    """A plan for every pipeline the ResourceManager handles (stream and batch mode; one whose
    spec does not parse is the reconciler's to report)."""
    plans = []
    for obj in pipelines:
        plan = plan_pipeline(obj, inputs, kept.get(state_key(obj["metadata"])), rules)
        if plan is not None:
            plans.append(plan)
    return plans


def plan_pipeline(
    obj: dict[str, Any], inputs: CycleInputs, kept: Kept | None, rules: PlanRules
) -> PipelinePlan | None:
    try:
        spec = MetricPipelineSpec.model_validate(obj.get("spec") or {})
    except ValidationError:
        return None
    if spec.mode == "batch":
        return plan_batch_pipeline(obj, spec, inputs, kept or Kept(), rules.policy_config)
    if spec.mode != "stream":
        return None
    return plan_stream_pipeline(obj, spec, inputs, kept or Kept(), rules)


def plan_stream_pipeline(
    obj: dict[str, Any], spec: MetricPipelineSpec, inputs: CycleInputs, kept: Kept,
    rules: PlanRules,
) -> PipelinePlan:  # fmt: skip
    meta, status = obj["metadata"], obj.get("status") or {}
    key, now = f"{meta['namespace']}/{meta['name']}", inputs.now
    facts = build_pipeline_scaling(spec, status)
    history = list(kept.history)
    sample = None
    if inputs.values is not None:
        # only ready replicas process: a pod starting or crash-looping adds no capacity
        running = int(status.get("readyReplicas") or 0)
        sample = build_sample(key, inputs.values, running, now)
        history.append(sample)
    history = [s for s in history if s.at >= now - rules.keep_seconds]
    asleep = spec.scaling.enabled and facts.current_replicas == 0 and facts.min_replicas == 0
    if inputs.values is None and not asleep:
        why = f"metrics unavailable, no change: {inputs.unavailable}"
        decision = Decision(facts.current_replicas, why, metrics_available=False)
    elif not spec.scaling.enabled:
        decision = Decision(facts.current_replicas, "scaling disabled in the spec")
    else:  # asleep and blind, the sleep layer wakes it: it never stays asleep on no metrics
        decision = rules.policy(history, facts, rules.policy_config, now)
    scale = None
    if (spec.scaling.enabled and (decision.metrics_available or asleep)
            and decision.replicas != facts.current_replicas):  # fmt: skip
        scale = ScaleAction(facts.current_replicas, decision)
    target = facts.freshness_target_seconds
    new_status = build_scaling_status(decision, sample, history, target)
    new_status |= build_sleep_status(decision, facts, now)
    conditions = build_scaling_conditions(decision, sample, target)
    observed_pods = inputs.observed.consumer_pods
    pods = None if observed_pods is None else observed_pods.get(key, [])
    conditions += build_health_conditions(spec, pods)
    generation = int(meta.get("generation") or 0)
    new_status["conditions"] = rebuild_ready(
        merge_conditions(list(status.get("conditions") or []), conditions, generation),
        generation,
    )
    max_age = decide_refresh_age(key, rules.status_max_age_seconds)
    # A status this replica has not written (a restart, a takeover) counts as written now:
    # its numbers are refreshed within max_age, not all in the first cycle.
    written_at = kept.written_at if kept.written_at is not None else now
    age = now - written_at
    urgent = decide_status_due(status, new_status, 0.0, max_age)
    unchanged = all(status.get(k) == v for k, v in new_status.items())
    due = urgent or (age >= max_age and not unchanged)
    return PipelinePlan(
        obj, key, state_key(meta), decision, Kept(tuple(history), written_at), new_status,
        tuple(conditions), due, urgent, age, scale,
    )  # fmt: skip


def plan_batch_pipeline(
    obj: dict[str, Any], spec: MetricPipelineSpec, inputs: CycleInputs, kept: Kept,
    policy_config: PolicyConfig,
) -> PipelinePlan | None:  # fmt: skip
    """Batch mode: record the finished runs, plan the next run's parallelism from them (the
    pipeline's replicas, through /scale), and say when even the maximum will not fit."""
    meta, status = obj["metadata"], obj.get("status") or {}
    key, now = f"{meta['namespace']}/{meta['name']}", inputs.now
    finished = inputs.observed.finished_runs.get(key, [])
    records = merge_run_records(((status.get("batch") or {}).get("runs") or []), finished)
    cached = spec.source.store == "redis"
    writable = (decide_cache_writable(inputs.cache_values, inputs.unavailable),) if cached else ()
    if not records:  # nothing measured yet: the spec's replicas stand
        return plan_conditions_only(obj, spec, writable, kept, now) if writable else None
    sizing = BatchSizing(
        freshness_target_seconds=parse_duration(spec.freshness.target),
        allowed_lateness_seconds=parse_duration(spec.metric.allowed_lateness),
        startup_seconds=policy_config.startup_seconds,
        min_parallelism=spec.scaling.min_replicas, max_parallelism=spec.scaling.max_replicas,
    )  # fmt: skip
    batch_plan = decide_batch_plan(build_batch_runs(records), sizing)
    decision = Decision(batch_plan.parallelism, batch_plan.reason)
    scale = None
    if spec.scaling.enabled and batch_plan.parallelism != spec.replicas:
        scale = ScaleAction(spec.replicas, decision)
    condition = build_batch_condition(batch_plan)
    extra = (build_cache_condition(records), *writable) if cached else ()
    before = {c["type"]: c.get("status") for c in status.get("conditions") or []}
    # one Warning when it turns False (kept.budget_warned also covers a status write pending)
    events: tuple[EventAction, ...] = ()
    warned = kept.budget_warned
    if condition.status is False and before.get(condition.type) != "False":
        if not warned:
            events = (EventAction("BatchBudgetExceeded", batch_plan.reason, "Warning"),)
        warned = True
    elif condition.status is True:
        warned = False
    new_status = build_batch_status(records, batch_plan)
    new_status["conditions"] = merge_conditions(
        list(status.get("conditions") or []), [condition, *extra],
        int(meta.get("generation") or 0),
    )  # fmt: skip
    due = not all(status.get(k) == v for k, v in new_status.items())
    written_at = kept.written_at if kept.written_at is not None or not due else now
    age = now - (written_at if written_at is not None else now)
    return PipelinePlan(
        obj, key, state_key(meta), decision, Kept(kept.history, written_at, warned),
        new_status, (condition, *extra), due, True, age, scale, events,
    )  # fmt: skip


def plan_conditions_only(
    obj: dict[str, Any], spec: MetricPipelineSpec, conditions: tuple[Condition, ...], kept: Kept,
    now: float,
) -> PipelinePlan:  # fmt: skip
    """A batch pipeline with no run measured yet: its replicas stand, its conditions are
    written when they change."""
    meta, status = obj["metadata"], obj.get("status") or {}
    merged = merge_conditions(list(status.get("conditions") or []), list(conditions),
                              int(meta.get("generation") or 0))  # fmt: skip
    new_status = {"conditions": merged}
    due = merged != (status.get("conditions") or [])
    written_at = kept.written_at if kept.written_at is not None or not due else now
    age = now - (written_at if written_at is not None else now)
    decision = Decision(spec.replicas, "no batch run measured yet")
    return PipelinePlan(
        obj, f"{meta['namespace']}/{meta['name']}", state_key(meta), decision,
        Kept(kept.history, written_at, kept.budget_warned), new_status, conditions, due, due,
        age,
    )  # fmt: skip


def build_status_write_status(
    plan: PipelinePlan, scaled: bool, now_text: str
) -> dict[str, Any] | None:
    """The status to write after the plan was applied (None: no write): a scale that went
    through adds lastScaleTime and lastScaleReason and makes the write urgent."""
    if scaled and plan.scale is not None:
        return {**plan.status, "lastScaleTime": now_text,
                "lastScaleReason": plan.scale.decision.reason[:REASON_CHARS]}  # fmt: skip
    return plan.status if plan.due else None
