"""The freshness-SLO scaling policy: a pure function of (metric history, spec, config, now).

evaluate: from the newest samples, the true capacity of one replica (processing rate / busy
fraction / replicas, median of recent estimates), the input rate to plan for (smoothed over what
the freshness budget leaves after the reaction time, plus its upward trend), the backlog in
records and seconds, and the backlog predicted for when replicas added now would be working.

decide: needed = input / (target_utilization * per_replica) + backlog / (budget * per_replica),
budget = target * budget_fraction - time lag - start-up - rebalance (floored). Fewer replicas,
down to the input's own floor, are acceptable while the predicted lag stays within the hold
(HOLD_FRACTION of the budget) should the input surge to input / target_utilization: to stay,
until such a surge is seen and answered; to scale down, for a whole stabilisation window and
within half the hold. So a long budget lets replicas run full and a backlog come and go, a short
one keeps the utilisation headroom. Clamp to [min, max] and the partition count; scale up fast
(max_step_up; the cooldown only holds back a group that keeps up); scale down slowly (the
highest recommendation over the stabilisation window, recomputed from the samples, max_step_down,
cooldown, never while draining). Unknown or stale metrics: no change (fail static).

It never reads the clock and does no I/O: the operator, the unit tests and
bench/autoscale_sim.py run this same code. See docs/autoscaling.md.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from .model import Decision, MetricSample, PipelineScaling, PolicyConfig

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
SMALL_LAG_SECONDS = 30.0  # this, whichever is larger) is caught up: scaling down is allowed


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
    keep = _recommend(ev, pipeline, strict=False)
    if keep is None:
        return _static(current, "per-replica capacity unknown: no sample with a processing "
                       "rate and a busy fraction above 5 % while records arrive")  # fmt: skip
    lower = max(keep, _recommend(ev, pipeline, strict=True) or keep)
    target, limited, note = _choose(ctx, ev, now, keep, lower)
    line = f"{_summary(ev, pipeline)}: {current} → {target}{note}"
    return _decision(ev, pipeline, target, line, limited)


Choice = tuple[int, str | None, str]  # target, the bound that limited it, a note for the reason


def _choose(ctx: _Context, ev: Evaluation, now: float, keep: int, lower: int) -> Choice:
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
    up, up_bound = _clamp(keep, ev.partitions, pipeline)
    if up > current:
        if up - current > config.max_step_up:
            up, up_bound = current + config.max_step_up, "max_step"
        behind = _capacity(ev, current) < ev.input_rate or ev.age > _small_lag(pipeline)
        if cooling and not behind:
            return current, "cooldown", f" (wants {up}: cooldown {config.cooldown_seconds:.0f} s)"
        return up, up_bound, _bound_note(up_bound)
    if keep > current:  # more wanted, but a bound holds it here
        return current, up_bound, _bound_note(up_bound)
    return _choose_down(ctx, ev, now, lower, cooling)


def _choose_down(ctx: _Context, ev: Evaluation, now: float, lower: int, cooling: bool) -> Choice:
    pipeline, config = ctx.pipeline, ctx.config
    current = pipeline.current_replicas
    target, limited = _clamp(lower, ev.partitions, pipeline)
    why = ""
    if target >= current:
        return current, None, ""
    if ev.age > _small_lag(pipeline):
        why = "no scale-down while draining"
    elif cooling:
        why, limited = f"cooldown {config.cooldown_seconds:.0f} s", "cooldown"
    else:
        highest = _highest_recent(ctx, now, target)
        if highest >= current:
            window = pipeline.scale_down_stabilization_seconds
            why, limited = f"{highest} within {window:.0f} s", "stabilization"
        elif current - highest > config.max_step_down:
            stepped = current - config.max_step_down
            return stepped, "max_step", f" (wants {highest}: step {config.max_step_down})"
        else:
            return highest, limited, _bound_note(limited)
    return current, limited, f" (wants {target}: {why})"


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


def _recommend(ev: Evaluation, pipeline: PipelineScaling, *, strict: bool) -> int | None:
    """Replicas the demand asks for, before bounds: ceil(needed), or fewer (down to the input's
    own floor) while the lag they let build stays within the hold. None: capacity unknown."""
    c = ev.per_replica
    if c is None or c <= 0:
        return pipeline.min_replicas if ev.input_rate <= 0 and ev.backlog <= 0 else None
    up = max(1, math.ceil(_needed(ev, pipeline, c) - 1e-9))
    floor = max(1, math.floor(ev.input_rate / c))
    low = up
    while low - 1 >= floor and _within_hold(ev, pipeline, low - 1, strict=strict):
        low -= 1
    return low


def _needed(ev: Evaluation, pipeline: PipelineScaling, c: float) -> float:
    return ev.input_rate / (_utilization(pipeline) * c) + ev.backlog_ahead / (ev.budget * c)


def _utilization(pipeline: PipelineScaling) -> float:
    return min(1.0, max(0.05, pipeline.target_utilization))


def _within_hold(ev: Evaluation, pipeline: PipelineScaling, replicas: int, *, strict: bool) -> bool:
    """Whether `replicas` keeps the predicted lag within the hold for the hold horizon, should
    the input rise to input / target_utilization (the surge the headroom is sized for)."""
    capacity = _capacity(ev, replicas)
    surge = ev.input_rate / _utilization(pipeline)
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


def _highest_recent(ctx: _Context, now: float, lowest: int) -> int:
    """The highest (strict) recommendation over the stabilisation window, each recomputed from
    the samples up to its own newest one: no state is kept between calls. Stops early once one
    reaches the current replicas; a sample that cannot be evaluated counts as current."""
    samples, pipeline = ctx.samples, ctx.pipeline
    current = pipeline.current_replicas
    delay = now - samples[-1].at
    first = bisect_right(ctx.ats, samples[-1].at - pipeline.scale_down_stabilization_seconds)
    highest = lowest
    for i in range(len(samples) - 2, first - 1, -1):
        ev = evaluate_samples(
            samples, ctx.ats, pipeline, ctx.config, now=samples[i].at + delay,
            current=samples[i].replicas, newest=i,
        )  # fmt: skip
        wanted = None if isinstance(ev, str) else _recommend(ev, pipeline, strict=True)
        if isinstance(ev, str) or wanted is None:
            return current
        highest = max(highest, _clamp(wanted, ev.partitions, pipeline)[0])
        if highest >= current:
            break
    return highest


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
    ev: Evaluation, pipeline: PipelineScaling, replicas: int, reason: str, limited: str | None
) -> Decision:
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
        details["needed_replicas"] = round(_needed(ev, pipeline, c), 3)
    return Decision(
        replicas=replicas, reason=reason, limited_by=limited, per_replica_rate=c,
        predicted_drain_seconds=drain, predicted_freshness_seconds=ev.age_ahead,
        details=details,
    )  # fmt: skip


def _static(current: int, why: str) -> Decision:
    return Decision(
        replicas=current, reason=f"{why}: no change (fail static)", metrics_available=False
    )
