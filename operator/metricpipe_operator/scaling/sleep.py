"""Scale to zero under the freshness SLO: a pure layer over `policy.decide` for pipelines whose
`minReplicas` is 0.

A pipeline whose input one replica handles with room to spare does not need that replica most
of the hour: it can sleep while its records wait in Kafka and drain them in a burst, woken early
enough that the oldest record's age stays within the target. With c the capacity of one
replica, r the input rate, S the start-up and rebalance of a woken replica and W the time
asleep, the oldest record is W + S old when the woken replica starts to consume; from then on
the replica takes records faster than they arrive and that age falls. So the freshness peaks at

    P = W + S                          (the sleep started caught up)

and the cycle (sleep, start, drain of r (W + S) at c - r) lasts (W + S) c / (c - r).

Awake, one replica goes to sleep (1 -> 0) when the input leaves it at least half idle, the
cycle a sleep allows (P up to `peak_limit`: the target less the allowed lateness and a margin)
is long enough for `PolicyConfig.sleep_max_events_per_hour` (a sleep and its wake are two scale
events: a shorter cycle costs more than it saves, and it stays awake; at a 5-minute target it
always does), and the drain is over, or so nearly over that staying until the next decision
would cost more replica-time than the shorter next sleep that the few records left behind bring
(`plan_quit`). It knows the drain's progress without waiting for a scrape to show it: the
newest sample's backlog, drained at c - r since the replica started consuming. Asleep, it wakes
(0 -> 1) at the last decision that keeps P within the limit, P read from the measured backlog's
age (which the lag exporter reports with no consumer running: it grows 1 s a second) plus the
start; it wakes with more replicas when the input outgrows one replica, and with one when it
cannot tell (metrics missing or stale: it fails awake, never asleep). A replica too idle to
measure its capacity sleeps as a probe, as if it did only twice the input and the drain took as
long as the sleep; the drain after the wake measures it. Woken, one replica that drains is kept
rather than the catch-up replicas the base policy would add. Everything else is `policy.decide`.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .model import Decision, MetricSample, PipelineScaling, PolicyConfig
from .policy import Evaluation, decide, evaluate_samples

PEAK_FRACTION = 0.95  # the freshness a sleep cycle may reach, as a share of the target ...
START_ERROR = 0.5  # ... and at most the target less this share of S and one decision period
MAX_SLEEP_UTILIZATION = 0.5  # sleep only when one replica would be at most this busy
CAUGHT_UP_SECONDS = 30.0  # a replica whose capacity is unknown sleeps only with a lag under this
DECISION_SECONDS = 15.0  # the decision period when the samples do not show it (one per decision)
PERIOD_SAMPLES = 9  # the period is the median spacing of the newest this many samples


@dataclass(frozen=True)
class SleepPlan:
    """A sleep starting now: how long (W), the freshness it peaks at when woken, the cycle."""

    sleep_seconds: float
    peak_seconds: float
    cycle_seconds: float


def decide_with_sleep(
    history: Sequence[MetricSample], pipeline: PipelineScaling, config: PolicyConfig, now: float
) -> Decision:
    """`policy.decide` with sleeping (0 replicas) allowed; `pipeline.min_replicas` must be 0."""
    awake = replace(pipeline, min_replicas=1, current_replicas=max(1, pipeline.current_replicas),
                    sleeps=True)  # fmt: skip
    samples = sorted((s for s in history if s.at <= now), key=lambda s: s.at)
    current = pipeline.current_replicas
    if current == 0:
        return _decide_asleep(samples, awake, config, now)
    base = decide(samples, awake, config, now)
    if current != 1 or not samples or now - samples[-1].at > config.stale_after_seconds:
        return base
    ev = evaluate_samples(samples, [s.at for s in samples], awake, config, now=now, current=1)
    if isinstance(ev, str):
        return base
    period = decision_period(samples)
    c = _capacity(ev, pipeline)
    if c is None:
        return _decide_probe(ev, base, pipeline, config=config, now=now, period=period)
    return _decide_awake(ev, c, base, pipeline, config=config, now=now, period=period)


def decision_period(samples: Sequence[MetricSample]) -> float:
    """Seconds between two decisions: the median spacing of the newest samples (the loop takes
    one a decision), else DECISION_SECONDS."""
    ats = [s.at for s in samples[-PERIOD_SAMPLES:]]
    gaps = [b - a for a, b in itertools.pairwise(ats) if b > a]
    return statistics.median(gaps) if gaps else DECISION_SECONDS


def _decide_probe(
    ev: Evaluation, base: Decision, pipeline: PipelineScaling, *, config: PolicyConfig,
    now: float, period: float,
) -> Decision:  # fmt: skip
    """One replica too idle to measure its capacity (under 5 % busy): sleep as if it were
    only twice the input (MAX_SLEEP_UTILIZATION) and the drain took as long as the sleep, the
    worst case that still sleeps; the drain after the wake is busy enough to measure it. Such a
    replica is really over 20 x the input."""
    plan = plan_probe_sleep(pipeline, config, period)
    caught_up = ev.age <= CAUGHT_UP_SECONDS
    if plan is None or _cooling(pipeline, config, now) or not caught_up or base.replicas > 1:
        return base
    return replace(
        base,
        replicas=0,
        metrics_available=True,
        limited_by=None,
        reason=(
            f"input {ev.input_now:,.1f} rec/s, capacity not measured yet (one replica under 5 % "
            f"busy): 1 → 0 (sleeping ~{plan.sleep_seconds:.0f} s, as if one replica did only "
            "twice the input)"
        ),
    )


def _decide_awake(
    ev: Evaluation, c: float, base: Decision, pipeline: PipelineScaling, *,
    config: PolicyConfig, now: float, period: float,
) -> Decision:  # fmt: skip
    """One replica running: put it to sleep when a sleep pays and the drain is (nearly) over;
    keep it rather than add some while it drains; else the base decision."""
    rate = _rate(ev)
    if rate > MAX_SLEEP_UTILIZATION * c:
        return base
    plan = plan_sleep(rate, c, pipeline, config, period)
    left = _records_left(ev, c, pipeline, config, now)
    if (
        plan is not None and base.replicas <= 1 and not _cooling(pipeline, config, now)
        and plan_quit(left, rate, c, plan=plan, config=config, period=period)
    ):  # fmt: skip
        return replace(base, replicas=0, limited_by=None, reason=(
            f"{_numbers(ev, c)}, {max(0.0, left):,.0f} rec left now: 1 → 0 (sleeping "
            f"~{plan.sleep_seconds:.0f} s: woken before freshness reaches "
            f"{peak_limit(pipeline, config, period):.0f} s)"))  # fmt: skip
    peak = _drain_peak(ev, pipeline, config)
    ceiling = pipeline.freshness_target_seconds - pipeline.allowed_lateness_seconds
    if (
        base.replicas > 1
        and peak <= ceiling
        and _draining(rate, c, peak, pipeline, config, now=now, period=period)
    ):
        return replace(base, replicas=1, limited_by=None, reason=(
            f"{_numbers(ev, c)}: 1 → 1 (one replica drains at {c - rate:,.0f} rec/s: freshness "
            f"falls from {peak:.0f} s, within {ceiling:.0f} s)"))  # fmt: skip
    return base


def _draining(
    rate: float, c: float, peak: float, pipeline: PipelineScaling, config: PolicyConfig, *,
    now: float, period: float,
) -> bool:  # fmt: skip
    """Whether one replica is still within the drain of a wake: less than twice the time it
    needs for the `peak` seconds of input that waited (r peak / (c - r)), plus a decision,
    since it started consuming. A drain overdue (a replica that does not consume) is left to
    the base policy."""
    if pipeline.last_scale_at is None:
        return False
    started = pipeline.last_scale_at + _start_seconds(config)
    return now - started <= 2 * rate * peak / (c - rate) + period


def plan_sleep(
    rate: float, c: float, pipeline: PipelineScaling, config: PolicyConfig, period: float
) -> SleepPlan | None:
    """A sleep starting now (caught up), woken at the last decision that keeps P = W + S within
    the limit: W = limit - S - one period (the decisions' step), or None when it does not pay:
    the input too high for one replica to stay half idle, a sleep no longer than a wake's
    start, or a cycle too short for the events-per-hour bound."""
    if rate > MAX_SLEEP_UTILIZATION * c:
        return None
    start = _start_seconds(config)
    peak = peak_limit(pipeline, config, period) - period
    plan = SleepPlan(peak - start, peak, peak * c / (c - rate))
    return plan if _pays(plan, config) else None


def plan_probe_sleep(
    pipeline: PipelineScaling, config: PolicyConfig, period: float
) -> SleepPlan | None:
    """A probe's sleep: P = 2 (W + S) within the limit (as if c = 2 r and the drain took as long
    as the sleep), a cycle of 2 (W + S), and it must pay."""
    start = _start_seconds(config)
    peak = peak_limit(pipeline, config, period) / 2 - period
    plan = SleepPlan(peak - start, 2 * peak, 2 * peak)
    return plan if _pays(plan, config) else None


def plan_quit(
    left: float, rate: float, c: float, *, plan: SleepPlan, config: PolicyConfig, period: float
) -> bool:
    """Whether one replica with `left` records still to drain (predicted for now) sleeps now
    rather than at the next decision. Drained (left <= 0): yes. Still draining past the next
    decision: no. In between, the drain ends delta = left / (c - r) s from now and staying until
    the next decision costs (period - delta)(1 - r/c) idle replica-seconds; sleeping now leaves
    `left` records, left / r s of input, so the next sleep starts that much older and, with the
    decision it gives up, the cycles shorten by period + left / r: each second of cycle costs
    S / cycle of a wake's start. Sleep now when staying costs more."""
    if left <= 0:
        return True
    if rate <= 0 or rate >= c:
        return False
    delta = left / (c - rate)
    if delta >= period:
        return False
    idle = (period - delta) * (1 - rate / c)
    shorter = (period + left / rate) * _start_seconds(config) / plan.cycle_seconds
    return idle > shorter


def _records_left(
    ev: Evaluation, c: float, pipeline: PipelineScaling, config: PolicyConfig, now: float
) -> float:
    """The records one replica has left to drain now: the newest sample's backlog, plus what
    arrived since, less what the replica took at c since it started consuming (no earlier than
    a start-up and rebalance after the last scale, the wake)."""
    rate = _rate(ev)
    started = ev.at
    if pipeline.last_scale_at is not None:
        started = max(started, pipeline.last_scale_at + _start_seconds(config))
    return ev.backlog + rate * (now - ev.at) - c * max(0.0, now - started)


def _drain_peak(ev: Evaluation, pipeline: PipelineScaling, config: PolicyConfig) -> float:
    """The age of the oldest record when one replica starts consuming (from then on it falls):
    the newest sample's age, grown until the start when the sample came before it."""
    if pipeline.last_scale_at is None:
        return ev.age
    return ev.age + max(0.0, pipeline.last_scale_at + _start_seconds(config) - ev.at)


def _cooling(pipeline: PipelineScaling, config: PolicyConfig, now: float) -> bool:
    last = pipeline.last_scale_at
    return last is not None and now - last < config.cooldown_seconds


def _decide_asleep(
    samples: Sequence[MetricSample], awake: PipelineScaling, config: PolicyConfig, now: float
) -> Decision:
    def wake(replicas: int, why: str, available: bool = True) -> Decision:
        return Decision(replicas=replicas, reason=f"{why}: 0 → {replicas}",
                        metrics_available=available)  # fmt: skip

    if not samples or now - samples[-1].at > config.stale_after_seconds:
        return wake(1, "asleep without current metrics (woken: it cannot tell when to)", False)
    ev = evaluate_samples(samples, [s.at for s in samples], awake, config, now=now, current=0)
    if isinstance(ev, str):
        return wake(1, f"asleep, {ev} (woken: it cannot tell when to)", False)
    period = decision_period(samples)
    c = _capacity(ev, awake)
    if c is None:
        return _decide_asleep_probing(ev, awake, config, now, period)
    rate = _rate(ev)
    if rate > MAX_SLEEP_UTILIZATION * c:
        needed = max(1, math.ceil(rate / (max(0.05, awake.target_utilization) * c)))
        replicas = min(needed, awake.max_replicas, ev.partitions or needed)
        return wake(replicas, f"{_numbers(ev, c)}: input too high to sleep")
    peak = peak_after_wake(ev, config, now, period)
    limit = peak_limit(awake, config, period)
    if peak > limit:
        return wake(1, f"{_numbers(ev, c)}: woken, freshness would pass {limit:.0f} s")
    return Decision(
        replicas=0, per_replica_rate=c, predicted_freshness_seconds=peak,
        reason=f"{_numbers(ev, c)}: asleep (woken at {limit:.0f} s of predicted freshness, "
        f"{peak:.0f} s now)", details=_wake_details(limit, peak, 1.0),
    )  # fmt: skip


def _decide_asleep_probing(
    ev: Evaluation, awake: PipelineScaling, config: PolicyConfig, now: float, period: float
) -> Decision:
    """Asleep since a probe (capacity not measured): its bound, twice the peak after a wake."""
    peak = 2 * peak_after_wake(ev, config, now, period)
    limit = peak_limit(awake, config, period)
    if peak > limit:
        why = f"capacity not measured yet, woken at {peak:.0f} s of the probe's bound: 0 → 1"
        return Decision(replicas=1, reason=why)
    why = (f"input {ev.input_now:,.1f} rec/s, capacity not measured yet: asleep until "
           f"{limit:.0f} s of the probe's bound ({peak:.0f} s now)")  # fmt: skip
    return Decision(replicas=0, predicted_freshness_seconds=peak, reason=why,
                    details=_wake_details(limit, peak, 2.0))  # fmt: skip


def _wake_details(limit: float, peak: float, growth: float) -> dict[str, float]:
    """For the status: the limit, and the seconds until the peak predicted for a wake at the
    next decision passes it if the input stays as measured (it grows `growth` s a second: the
    oldest record's age, twice that for a probe's bound)."""
    return {"peak_limit_seconds": limit, "wake_in_seconds": max(0.0, limit - peak) / growth}


def peak_after_wake(ev: Evaluation, config: PolicyConfig, now: float, period: float) -> float:
    """The freshness peak if one replica is woken at the next decision: the oldest record's
    age then (the newest sample's, grown 1 s a second since it was taken), plus the start-up
    and rebalance until it consumes; from then on it falls."""
    return ev.age + (now - ev.at) + period + _start_seconds(config)


def _rate(ev: Evaluation) -> float:
    """The input to plan a sleep for: the planned rate, or the newest if higher."""
    return max(ev.input_rate, ev.input_now)


def _start_seconds(config: PolicyConfig) -> float:
    """What a wake costs before the replica works: its start-up and the group's rebalance."""
    return config.startup_seconds + config.rebalance_seconds


def _pays(plan: SleepPlan, config: PolicyConfig) -> bool:
    """A sleep longer than a wake's start, in a cycle long enough for the events-per-hour
    bound (a sleep and its wake are two scale events)."""
    shortest = 2 * 3600.0 / config.sleep_max_events_per_hour
    return plan.sleep_seconds > _start_seconds(config) and plan.cycle_seconds >= shortest


def peak_limit(pipeline: PipelineScaling, config: PolicyConfig, period: float) -> float:
    """The freshness a sleep may reach: the target less the allowed lateness and a margin, the
    larger of (1 - PEAK_FRACTION) of the target and START_ERROR of S plus one decision period
    (a start-up and rebalance half as long again as configured, a decision missed)."""
    target = pipeline.freshness_target_seconds
    margin = max((1 - PEAK_FRACTION) * target, START_ERROR * _start_seconds(config) + period)
    return target - margin - pipeline.allowed_lateness_seconds


def _capacity(ev: Evaluation | str, pipeline: PipelineScaling) -> float | None:
    """One replica's measured capacity: from the samples, else the last one the status kept."""
    measured = None if isinstance(ev, str) else ev.per_replica
    found = measured or pipeline.known_capacity
    return found if found and found > 0 else None


def _numbers(ev: Evaluation, c: float) -> str:
    return (f"input {ev.input_now:,.1f} rec/s, capacity {c:,.0f} rec/s/replica, backlog "
            f"{ev.backlog:,.0f} rec ({ev.age:,.0f} s)")  # fmt: skip
