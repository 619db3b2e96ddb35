"""Scale to zero under the freshness SLO: a pure layer over `policy.decide` for pipelines whose
`minReplicas` is 0.

A pipeline whose input one replica handles with room to spare does not need that replica most
of the hour: it can sleep while its records wait in Kafka and drain them in a burst, woken early
enough that the oldest record's age stays within the target. With c the capacity of one
replica, r the input rate, S the start-up and rebalance of a woken replica and W the time
asleep, the backlog r (W + S) drains at c - r, so the freshness peaks at

    P = (W + S) c / (c - r)        (the sleep started caught up)

It sleeps (1 -> 0) only when caught up (seen, or predicted from the newest sample's backlog),
the input leaves one replica at least half idle, and the longest sleep that keeps P within
PEAK_FRACTION of the target (less the allowed lateness, which the last window waits for) makes
a cycle long enough for `PolicyConfig.sleep_max_events_per_hour` (a sleep and its wake are two
scale events): otherwise waking costs more than sleeping saves, and it stays awake; at a
5-minute target it always does. Asleep, it wakes (0 -> n) when the measured backlog (its age
and records, which the lag exporter reports with no consumer running) predicts P past that
limit one decision later, when the input outgrows a sleeping pipeline (n from the input), or
when it cannot tell (metrics missing or stale: it fails awake, never asleep). A replica too idle
to measure its capacity sleeps as a probe, as if it did only twice the input; the drain after
the wake measures it. Woken, one replica that drains in time is kept rather than the catch-up
replicas the base policy would add. Everything else is `policy.decide`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from .model import Decision, MetricSample, PipelineScaling, PolicyConfig
from .policy import Evaluation, decide, evaluate_samples

PEAK_FRACTION = 0.9  # the freshness a sleep cycle may reach, as a share of the target
MAX_SLEEP_UTILIZATION = 0.5  # sleep only when one replica would be at most this busy
CAUGHT_UP_SECONDS = 30.0  # sleep only with a time lag under this
WAKE_LEAD_SECONDS = 30.0  # a decision and a scrape may pass before the next chance to wake


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
    c = _capacity(ev, pipeline)
    if c is None:
        return _decide_probe(ev, base, pipeline, config=config, now=now)
    return _decide_awake(ev, c, base, pipeline, config=config, now=now)


def _decide_probe(
    ev: Evaluation, base: Decision, pipeline: PipelineScaling, *, config: PolicyConfig,
    now: float,
) -> Decision:  # fmt: skip
    """One replica too idle to measure its capacity (under 5 % busy): sleep as if it were
    only twice the input (MAX_SLEEP_UTILIZATION), the worst case that still sleeps; the drain
    after the wake is busy enough to measure it. Such a replica is really over 20 x the input."""
    sleep = _probe_sleep_seconds(pipeline, config)
    if sleep is None or _cooling(pipeline, config, now) or not _caught_up(ev, None, now):
        return base
    return replace(
        base,
        replicas=0,
        metrics_available=True,
        reason=(
            f"input {ev.input_now:,.1f} rec/s, capacity not measured yet (one replica under 5 % "
            f"busy): 1 → 0 (sleeping ~{sleep:.0f} s, as if one replica did only twice the input)"
        ),
    )


def _decide_awake(
    ev: Evaluation, c: float, base: Decision, pipeline: PipelineScaling, *,
    config: PolicyConfig, now: float,
) -> Decision:  # fmt: skip
    """One replica running: keep it rather than add some when it drains in time; put it to
    sleep when a sleep pays; else the base decision."""
    if base.replicas > 1:
        drained = _peak_with_one(ev, c)
        limit = _peak_limit(pipeline)
        if drained is None or drained > limit:
            return base
        return replace(base, replicas=1, reason=(
            f"{_numbers(ev, c)}: 1 → 1 (one replica drains by {drained:.0f} s of freshness, "
            f"within {limit:.0f} s)"))  # fmt: skip
    sleep = plan_sleep_seconds(ev, c, pipeline, config)
    cooling = _cooling(pipeline, config, now)
    if base.replicas != 1 or sleep is None or cooling or not _caught_up(ev, c, now):
        return base
    return replace(base, replicas=0, limited_by=None, reason=(
        f"{_numbers(ev, c)}: 1 → 0 (sleeping ~{sleep:.0f} s: woken before freshness reaches "
        f"{_peak_limit(pipeline):.0f} s)"))  # fmt: skip


def plan_sleep_seconds(
    ev: Evaluation, c: float, pipeline: PipelineScaling, config: PolicyConfig
) -> float | None:
    """How long a sleep starting now may last (W above), or None when sleeping does not pay:
    the input too high for one replica to stay half idle, or a cycle too short for the
    events-per-hour bound."""
    rate = _rate(ev)
    if rate > MAX_SLEEP_UTILIZATION * c:
        return None
    start = _start_seconds(config)
    sleep = _peak_limit(pipeline) * (c - rate) / c - start - WAKE_LEAD_SECONDS
    cycle = (sleep + start) * c / (c - rate)
    if not _pays(sleep, cycle, config):
        return None
    return sleep


def _probe_sleep_seconds(pipeline: PipelineScaling, config: PolicyConfig) -> float | None:
    """A probe's sleep: P = 2 (W + S) within the limit, and a cycle long enough."""
    start = _start_seconds(config)
    sleep = _peak_limit(pipeline) / 2 - start - WAKE_LEAD_SECONDS
    cycle = 2 * (sleep + start)
    if not _pays(sleep, cycle, config):
        return None
    return sleep


def _caught_up(ev: Evaluation, c: float | None, now: float) -> bool:
    """Whether the replica has caught up by now, to within CAUGHT_UP_SECONDS of input: seen so
    in the newest sample, or predicted from it (its backlog drained at c - r since): the newest
    sample is a scrape and a decision old, and waiting to see it would keep the replica up."""
    if ev.age <= CAUGHT_UP_SECONDS:
        return True
    rate = _rate(ev)
    if c is None or rate >= c:
        return False
    left = ev.backlog - (c - rate) * max(0.0, now - ev.at)
    return left <= rate * CAUGHT_UP_SECONDS


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
    c = _capacity(ev, awake)
    if c is None:
        return _decide_asleep_probing(ev, awake, config)
    rate = _rate(ev)
    if rate > MAX_SLEEP_UTILIZATION * c:
        needed = max(1, math.ceil(rate / (max(0.05, awake.target_utilization) * c)))
        replicas = min(needed, awake.max_replicas, ev.partitions or needed)
        return wake(replicas, f"{_numbers(ev, c)}: input too high to sleep")
    peak = _peak_after_wake(ev, c, config)
    limit = _peak_limit(awake)
    if peak is None or peak >= limit:
        return wake(1, f"{_numbers(ev, c)}: woken, freshness would reach {limit:.0f} s")
    return Decision(
        replicas=0, per_replica_rate=c, predicted_freshness_seconds=peak,
        reason=f"{_numbers(ev, c)}: asleep (woken at {limit:.0f} s of predicted freshness, "
        f"{peak:.0f} s now)",
    )  # fmt: skip


def _decide_asleep_probing(
    ev: Evaluation, awake: PipelineScaling, config: PolicyConfig
) -> Decision:
    """Asleep since a probe (capacity not measured): its bound, P = 2 (age + lead + S)."""
    start = _start_seconds(config)
    peak = 2 * (ev.age + WAKE_LEAD_SECONDS + start)
    limit = _peak_limit(awake)
    if peak >= limit:
        why = f"capacity not measured yet, woken at {peak:.0f} s of the probe's bound: 0 → 1"
        return Decision(replicas=1, reason=why)
    why = (f"input {ev.input_now:,.1f} rec/s, capacity not measured yet: asleep until "
           f"{limit:.0f} s of the probe's bound ({peak:.0f} s now)")  # fmt: skip
    return Decision(replicas=0, predicted_freshness_seconds=peak, reason=why)


def _peak_after_wake(ev: Evaluation, c: float, config: PolicyConfig) -> float | None:
    """The freshness peak if one replica is woken one decision from now: the oldest record's
    age then, plus the start-up, plus draining what waits by then at c - r."""
    rate = _rate(ev)
    if rate >= c:
        return None
    start = _start_seconds(config)
    waiting = ev.backlog + rate * (WAKE_LEAD_SECONDS + start)
    return ev.age + WAKE_LEAD_SECONDS + start + waiting / (c - rate)


def _peak_with_one(ev: Evaluation, c: float) -> float | None:
    rate = _rate(ev)
    return None if rate >= c else ev.age + ev.backlog / (c - rate)


def _rate(ev: Evaluation) -> float:
    """The input to plan a sleep for: the planned rate, or the newest if higher."""
    return max(ev.input_rate, ev.input_now)


def _start_seconds(config: PolicyConfig) -> float:
    """What a wake costs before the replica works: its start-up and the group's rebalance."""
    return config.startup_seconds + config.rebalance_seconds


def _pays(sleep: float, cycle: float, config: PolicyConfig) -> bool:
    """A sleep longer than a wake's start, in a cycle long enough for the events-per-hour
    bound (a sleep and its wake are two scale events)."""
    return sleep > _start_seconds(config) and cycle >= 2 * 3600.0 / config.sleep_max_events_per_hour


def _peak_limit(pipeline: PipelineScaling) -> float:
    target = pipeline.freshness_target_seconds
    return PEAK_FRACTION * target - pipeline.allowed_lateness_seconds


def _capacity(ev: Evaluation | str, pipeline: PipelineScaling) -> float | None:
    """One replica's measured capacity: from the samples, else the last one the status kept."""
    measured = None if isinstance(ev, str) else ev.per_replica
    found = measured or pipeline.known_capacity
    return found if found and found > 0 else None


def _numbers(ev: Evaluation, c: float) -> str:
    return (f"input {ev.input_now:,.1f} rec/s, capacity {c:,.0f} rec/s/replica, backlog "
            f"{ev.backlog:,.0f} rec ({ev.age:,.0f} s)")  # fmt: skip
