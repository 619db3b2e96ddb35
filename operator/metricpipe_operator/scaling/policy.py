"""The freshness-SLO scaling policy: a pure function of (metric history, spec, config, now).

evaluate: from the newest samples, the true capacity of one replica (processing rate / busy
fraction / replicas, median of recent estimates), the input rate to plan for (smoothed over what
the freshness budget leaves after the reaction time, plus its upward trend), the backlog in
records and seconds, and the backlog predicted for when replicas added now would be working.

decide: needed(u) = input / (u * per_replica) + backlog / (budget * per_replica), budget =
target * budget_fraction - time lag - start-up - rebalance (floored). A count is acceptable to
stay at while the predicted lag stays within the hold (HOLD_FRACTION of the budget) until a
change would take effect. Scale up only when the current count is not acceptable at the planned
input (the trigger), and then to a count ready for a surge to input / target_utilization, for
the backlog and for the recent input's own variability (replay.py). Scale down, straight, to the
fewest replicas that keep the lag within half the hold for a stabilisation window and would have
carried the replayed window's input, when the step removes more than scale_down_min_fraction
(or reaches the minimum), the cooldown has passed and the group is not draining. Clamp to
[min, max] and the partition count. Unknown or stale metrics: no change (fail static).

It never reads the clock and does no I/O: the operator, the unit tests and
bench/autoscale_sim.py run this same code. See docs/autoscaling.md.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from .model import Decision, MetricSample, PipelineScaling, PolicyConfig
from .replay import replay_level

RATE_WINDOW_SECONDS = 60.0  # a sample's rates cover its last minute (PromQL rate(...[1m]))
CAPACITY_ESTIMATES = 9  # per-replica capacity: median of the newest estimates (one bad is harmless)
MIN_BUSY_FRACTION = 0.05  # less busy than this, a replica's rate says nothing about its capacity
MAX_SMOOTHING_SECONDS = 1800.0  # the input rate is averaged over at most this span
MIN_SMOOTHING_SECONDS = 15.0  # a shorter span: plan for the newest rate (backlog-corrected)
HOLD_FRACTION = 0.75  # share of the budget a lag may grow to while running below `needed`
STRICT_HOLD = 0.5  # scaling down needs the lag to stay within half that (hysteresis)
BUDGET_FLOOR_FRACTION = 0.1  # the catch-up budget never drops below this share of the target
BUDGET_FLOOR_SECONDS = 30.0  # ... nor below this
SMALL_LAG_FRACTION = 0.05  # a time lag under this share of the target (and under
SMALL_LAG_SECONDS = 10.0  # this, whichever is larger) is caught up: scaling down is allowed


@dataclass(frozen=True)
class Evaluation:
    """What the newest samples say (rates in records/s, times in seconds)."""

    at: float  # the newest sample's time
    replicas: int  # observed running replicas
    partitions: int | None
    input_rate: float  # the rate to plan for
    input_now: float  # the newest sample's input rate
    per_replica: float | None  # true capacity of one replica (None: unknown)
    backlog: float  # records, at the newest sample
    age: float  # time lag (or freshness, whichever is larger) at the newest sample
    backlog_ahead: float  # records predicted when replicas added now would be working
    age_ahead: float  # time lag predicted then
    budget: float  # catch-up budget
    hold_lag: float  # the lag the budget lets build while running below `needed`
    hold_horizon: float  # ... for this long before scaling down (the stabilisation window)
    react_seconds: float  # ... or this long to stay (until a surge is seen and answered)


@dataclass(frozen=True)
class _Context:
    samples: Sequence[MetricSample]  # sorted by `at`
    ats: Sequence[float]
    pipeline: PipelineScaling
    config: PolicyConfig


def decide(
    history: Sequence[MetricSample], pipeline: PipelineScaling, config: PolicyConfig, now: float
) -> Decision:
    """The replicas `pipeline` should run now, with one human line saying why."""
    samples = sorted((s for s in history if s.at <= now), key=lambda s: s.at)
    current = pipeline.current_replicas
    if not samples:
        return _static(current, "no metric samples yet")
    if now - samples[-1].at > config.stale_after_seconds:
        old = now - samples[-1].at
        return _static(
            current, f"metrics stale: newest sample {old:.0f} s old "
            f"(limit {config.stale_after_seconds:.0f} s)",
        )  # fmt: skip
    ctx = _Context(samples, [s.at for s in samples], pipeline, config)
    ev = evaluate_samples(ctx.samples, ctx.ats, pipeline, config, now=now, current=current)
    if isinstance(ev, str):
        return _static(current, ev)
    levels = _levels(ctx, ev)
    if levels is None:
        return _static(current, "per-replica capacity unknown: no sample with a processing "
                       "rate and a busy fraction above 5 % while records arrive")  # fmt: skip
    target, limited, note = _choose(ctx, ev, now, levels)
    line = f"{_summary(ev, pipeline)}: {current} → {target}{note}"
    return _decision(ev, pipeline, target, line, limited, levels=levels)


@dataclass(frozen=True)
class Levels:
    """The replica counts a decision compares the current one with (before bounds)."""

    trigger: int  # fewer than this cannot hold the lag until a change would work: scale up
    up: int  # ... then to this: headroom for a surge to input / target_utilization, and the
    # level the recent input's own variability needs
    down: int  # more than this for the whole stabilisation window: scale down to it
    level: int  # the recent input's variability (replay.replay_level)
    gaps: bool = False  # a sample in the replayed window has no input rate: no scale-down


def _levels(ctx: _Context, ev: Evaluation) -> Levels | None:
    """None: the capacity of a replica is unknown while records arrive."""
    pipeline = ctx.pipeline
    keep = _recommend(ev, pipeline, _utilization(pipeline), strict=False)
    if keep is None or ev.per_replica is None:
        return None if keep is None else Levels(keep, keep, keep, keep)
    trigger = _recommend(ev, pipeline, 1.0, strict=False, floored=False) or keep
    calm = _recommend(ev, pipeline, 1.0, strict=True) or keep
    window = max(RATE_WINDOW_SECONDS, ctx.config.variability_window_stabilizations
                 * pipeline.scale_down_stabilization_seconds)  # fmt: skip
    first = bisect_left(ctx.ats, ev.at - window)
    window_samples = [s for s in ctx.samples[first:] if s.at <= ev.at]
    points = [(s.at, s.input_rate) for s in window_samples if s.input_rate is not None]
    upper = min(pipeline.max_replicas, ev.partitions or pipeline.max_replicas)
    bound = ctx.config.replay_target_fraction * pipeline.freshness_target_seconds
    level = replay_level(points, ev.per_replica, max(1, upper), bound)
    gaps = len(points) < len(window_samples)
    return Levels(trigger, max(keep, trigger, level), max(trigger, calm, level), level, gaps)


Choice = tuple[int, str | None, str]  # target, the bound that limited it, a note for the reason


def _choose(ctx: _Context, ev: Evaluation, now: float, levels: Levels) -> Choice:
    pipeline, config = ctx.pipeline, ctx.config
    current = pipeline.current_replicas
    lowest = max(1, pipeline.min_replicas)
    if not lowest <= current <= pipeline.max_replicas:  # outside the spec's bounds: back at once
        target = min(max(current, lowest), max(lowest, pipeline.max_replicas))
        bound = "min_replicas" if target > current else "max_replicas"
        return target, bound, _bound_note(bound)
    cooling = (
        pipeline.last_scale_at is not None
        and now - pipeline.last_scale_at < config.cooldown_seconds
    )
    if levels.trigger <= current:
        return _choose_down(ctx, ev, levels, cooling)
    up, up_bound = _clamp(levels.up, ev.partitions, pipeline)
    if up <= current:  # more wanted, but a bound holds it here
        return current, up_bound, _bound_note(up_bound)
    if up - current > config.max_step_up:
        up, up_bound = current + config.max_step_up, "max_step"
    behind = _capacity(ev, current) < ev.input_rate or ev.age > _small_lag(pipeline)
    if cooling and not behind:
        return current, "cooldown", f" (wants {up}: cooldown {config.cooldown_seconds:.0f} s)"
    return up, up_bound, _bound_note(up_bound)


def _choose_down(ctx: _Context, ev: Evaluation, levels: Levels, cooling: bool) -> Choice:
    pipeline, config = ctx.pipeline, ctx.config
    current = pipeline.current_replicas
    target, limited = _clamp(levels.down, ev.partitions, pipeline)
    if target >= current:
        return current, None, ""
    if levels.gaps:
        why, limited = "a sample in the window has no input rate", "stabilization"
    elif ev.age > _small_lag(pipeline):
        why = "no scale-down while draining"
    elif cooling:
        why, limited = f"cooldown {config.cooldown_seconds:.0f} s", "cooldown"
    elif target > max(1, pipeline.min_replicas) and not decide_step_pays(current, target, config):
        share = config.scale_down_min_fraction
        why, limited = f"removes {share:.0%} or less of the replicas", "hysteresis"
    elif 0 < config.max_step_down < current - target:
        stepped = current - config.max_step_down
        return stepped, "max_step", f" (wants {target}: step {config.max_step_down})"
    else:
        return target, limited, _bound_note(limited)
    return current, limited, f" (wants {target}: {why})"


def decide_step_pays(current: int, target: int, config: PolicyConfig) -> bool:
    """Whether a scale-down from `current` to `target` removes enough to pay for its rebalance
    and its scale event: more than `scale_down_min_fraction` of the replicas."""
    return current - target > config.scale_down_min_fraction * current + 1e-9


def evaluate_samples(
    samples: Sequence[MetricSample], ats: Sequence[float], pipeline: PipelineScaling,
    config: PolicyConfig, *, now: float, current: int, newest: int | None = None,
) -> Evaluation | str:  # fmt: skip
    """Evaluate with samples[newest] (default: the last) as the newest of `samples` (sorted by
    `at`, `ats` their times); a str says which metric is missing. `current` is the replicas set
    now (more than observed while some start)."""
    k = len(samples) - 1 if newest is None else newest
    s = samples[k]
    if s.input_rate is None:
        return "input rate missing"
    if s.lag_records is None:
        return "consumer lag (records) missing"
    ages = [a for a in (s.time_lag_seconds, s.freshness_seconds) if a is not None]
    if not ages:
        return "time lag and freshness missing"
    partitions = next((x.partitions for x in reversed(samples[: k + 1]) if x.partitions), None)
    sleeps = pipeline.sleeps or pipeline.min_replicas == 0
    per_replica = _per_replica_rate(samples, ats, k, sleeps) or pipeline.known_capacity
    target = pipeline.freshness_target_seconds
    full_budget = target * config.budget_fraction - config.startup_seconds
    lead = now - s.at + config.startup_seconds + config.rebalance_seconds
    span = min(MAX_SMOOTHING_SECONDS, full_budget - lead - RATE_WINDOW_SECONDS)
    input_rate = _planned_input(samples, ats, k, span, lead)
    backlog, age = max(0.0, s.lag_records), max(0.0, *ages)
    ahead, age_ahead = backlog, age
    if per_replica is not None:
        ahead = _backlog_ahead(
            s, pipeline, config, now=now, current=current, input_rate=input_rate,
            per_replica=per_replica,
        )  # fmt: skip
        if input_rate > 0:
            age_ahead = max(0.0, age + (ahead - backlog) / input_rate) if ahead > 0 else 0.0
    budget = max(
        BUDGET_FLOOR_SECONDS,
        BUDGET_FLOOR_FRACTION * target,
        target * config.budget_fraction - age - config.startup_seconds - config.rebalance_seconds,
    )
    return Evaluation(
        at=s.at, replicas=s.replicas, partitions=partitions, input_rate=input_rate,
        input_now=s.input_rate, per_replica=per_replica, backlog=backlog, age=age,
        backlog_ahead=ahead, age_ahead=age_ahead, budget=budget,
        hold_lag=HOLD_FRACTION * max(0.0, full_budget - config.rebalance_seconds),
        hold_horizon=max(pipeline.scale_down_stabilization_seconds, RATE_WINDOW_SECONDS),
        react_seconds=lead + RATE_WINDOW_SECONDS,
    )  # fmt: skip


def _per_replica_rate(
    samples: Sequence[MetricSample], ats: Sequence[float], k: int, skip_idle: bool = False
) -> float | None:
    """Median of processing / busy / replicas over the newest samples that say something,
    preferring those whose replica count held for a whole rate window (rates not mixed). With
    `skip_idle` (a pipeline that may sleep, minReplicas 0), never one whose window saw no
    consumer running: after a sleep of most of an hour, only such mixed windows would be left,
    and they count the sleep as if the replica had been slow."""
    steady: list[float] = []
    mixed: list[float] = []
    for i in range(k, -1, -1):
        s = samples[i]
        if (
            s.processing_rate is None or s.busy_fraction is None or s.replicas < 1
            or s.processing_rate <= 0 or s.busy_fraction < MIN_BUSY_FRACTION
        ):  # fmt: skip
            continue
        estimate = s.processing_rate / min(1.0, s.busy_fraction) / s.replicas
        first = bisect_left(ats, s.at - RATE_WINDOW_SECONDS)
        if skip_idle and any(samples[j].replicas == 0 for j in range(first, i)):
            continue  # a window that holds a sleep: its rates count the sleep as slowness
        same = all(samples[j].replicas == s.replicas for j in range(first, i))
        (steady if same else mixed).append(estimate)
        if len(steady) >= CAPACITY_ESTIMATES:
            break
    chosen = steady or mixed[:CAPACITY_ESTIMATES]
    return statistics.median(chosen) if chosen else None


def _planned_input(
    samples: Sequence[MetricSample], ats: Sequence[float], k: int, span: float, lead: float
) -> float:
    """Over the smoothing span: the mean input rate plus its upward trend (least squares)
    carried over the lead until new replicas work. With no span to smooth over: the newest rate,
    corrected by how fast the backlog grew since the previous sample (a 1-minute rate trails a
    sudden surge)."""
    s = samples[k]
    if span < MIN_SMOOTHING_SECONDS:
        return _input_now(samples, ats, k)
    first = bisect_left(ats, s.at - span)
    points = [(x.at, x.input_rate) for x in samples[first : k + 1] if x.input_rate is not None]
    mean_t = sum(t for t, _ in points) / len(points)
    mean_r = sum(r for _, r in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (r - mean_r) for t, r in points) / spread if spread > 0 else 0.0
    return mean_r + max(0.0, slope) * lead


def _input_now(samples: Sequence[MetricSample], ats: Sequence[float], k: int) -> float:
    s = samples[k]
    rate = s.input_rate or 0.0
    if k == 0 or s.lag_records is None or s.processing_rate is None:
        return rate
    before = samples[k - 1]
    first = bisect_left(ats, s.at - RATE_WINDOW_SECONDS)
    if (
        before.lag_records is None or s.at <= before.at
        or any(samples[j].replicas != s.replicas for j in range(first, k))
    ):  # fmt: skip
        return rate  # a rebalance in the window: the backlog's growth says little
    growth = (s.lag_records - before.lag_records) / (s.at - before.at)
    if growth <= 0:  # a shrinking backlog is no surge (the 1-minute processing rate may still
        return rate  # count a drain that has ended)
    return max(rate, growth + s.processing_rate)


def _backlog_ahead(
    s: MetricSample, pipeline: PipelineScaling, config: PolicyConfig, *, now: float,
    current: int, input_rate: float, per_replica: float,
) -> float:  # fmt: skip
    """Records waiting when replicas added now would be working: the newest sample's backlog,
    grown at the observed capacity until replicas already starting join, then at the current
    target's capacity until now + start-up, plus the group's rebalance pause."""
    partitions = s.partitions or max(current, s.replicas, 1)
    observed = per_replica * min(s.replicas, partitions)
    later = per_replica * min(current, partitions)
    joined = now + config.startup_seconds
    pending = now
    if current > s.replicas:
        start = pipeline.last_scale_at if pipeline.last_scale_at is not None else now
        pending = min(joined, max(s.at, start + config.startup_seconds))
    waiting = max(0.0, (s.lag_records or 0.0) + (input_rate - observed) * (pending - s.at))
    waiting = max(0.0, waiting + (input_rate - later) * (joined - pending))
    return waiting + input_rate * config.rebalance_seconds


def _recommend(
    ev: Evaluation, pipeline: PipelineScaling, utilization: float, *, strict: bool,
    floored: bool = True,
) -> int | None:  # fmt: skip
    """Replicas the demand asks for at `utilization`, before bounds: ceil(needed), or fewer
    (down to the input's own floor, or to 1 when not `floored`) while the lag they let build
    stays within the hold. None: capacity unknown."""
    c = ev.per_replica
    if c is None or c <= 0:
        return pipeline.min_replicas if ev.input_rate <= 0 and ev.backlog <= 0 else None
    up = max(1, math.ceil(_needed(ev, utilization, c) - 1e-9))
    floor = max(1, math.floor(ev.input_rate / c)) if floored else 1
    low = up
    while low - 1 >= floor and _within_hold(ev, utilization, low - 1, strict=strict):
        low -= 1
    return low


def _needed(ev: Evaluation, utilization: float, c: float) -> float:
    return ev.input_rate / (utilization * c) + ev.backlog_ahead / (ev.budget * c)


def _utilization(pipeline: PipelineScaling) -> float:
    return min(1.0, max(0.05, pipeline.target_utilization))


def _within_hold(ev: Evaluation, utilization: float, replicas: int, *, strict: bool) -> bool:
    """Whether `replicas` keeps the predicted lag within the hold for the hold horizon, should
    the input rise to input / utilization."""
    capacity = _capacity(ev, replicas)
    surge = ev.input_rate / utilization
    growth = max(0.0, 1.0 - capacity / surge) if surge > 0 else 0.0
    allowed = ev.hold_lag * (STRICT_HOLD if strict else 1.0)
    horizon = ev.hold_horizon if strict else ev.react_seconds
    return ev.age_ahead + growth * horizon <= allowed


def _capacity(ev: Evaluation, replicas: int) -> float:
    return (ev.per_replica or 0.0) * min(replicas, ev.partitions or replicas)


def _clamp(
    wanted: int, partitions: int | None, pipeline: PipelineScaling
) -> tuple[int, str | None]:
    upper, bound = pipeline.max_replicas, "max_replicas"
    if partitions is not None and partitions < upper:
        upper, bound = partitions, "partitions"
    lower = max(1, pipeline.min_replicas)
    if wanted > upper >= lower:
        return upper, bound
    if wanted < lower:
        return lower, "min_replicas"
    return wanted, None


def _small_lag(pipeline: PipelineScaling) -> float:
    return max(SMALL_LAG_SECONDS, SMALL_LAG_FRACTION * pipeline.freshness_target_seconds)


def _bound_note(limited: str | None) -> str:
    return f" (limited by {limited})" if limited else ""


def _summary(ev: Evaluation, pipeline: PipelineScaling) -> str:
    return (
        f"input {ev.input_now:,.0f} rec/s (plan {ev.input_rate:,.0f}), capacity "
        f"{ev.per_replica or 0:,.0f} rec/s/replica at {pipeline.target_utilization:.0%}, "
        f"backlog {ev.backlog:,.0f} rec ({ev.age:,.0f} s), budget {ev.budget:,.0f} s"
    )


def _decision(
    ev: Evaluation, pipeline: PipelineScaling, replicas: int, reason: str, limited: str | None,
    *, levels: Levels,
) -> Decision:  # fmt: skip
    c = ev.per_replica
    capacity = _capacity(ev, replicas)
    drain = None
    if ev.backlog_ahead > 0 and capacity > ev.input_rate:
        drain = ev.backlog_ahead / (capacity - ev.input_rate)
    details = {
        "input_rate": ev.input_now, "planned_input_rate": ev.input_rate,
        "backlog_records": ev.backlog, "backlog_ahead_records": ev.backlog_ahead,
        "time_lag_seconds": ev.age, "budget_seconds": ev.budget, "hold_lag_seconds": ev.hold_lag,
    }  # fmt: skip
    if c:
        details["needed_replicas"] = round(_needed(ev, _utilization(pipeline), c), 3)
        details.update(trigger_replicas=levels.trigger, up_replicas=levels.up,
                       down_replicas=levels.down, variability_replicas=levels.level)  # fmt: skip
    return Decision(
        replicas=replicas, reason=reason, limited_by=limited, per_replica_rate=c,
        predicted_drain_seconds=drain, predicted_freshness_seconds=ev.age_ahead,
        details=details,
    )  # fmt: skip


def _static(current: int, why: str) -> Decision:
    return Decision(
        replicas=current, reason=f"{why}: no change (fail static)", metrics_available=False
    )
