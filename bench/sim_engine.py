"""The simulated consumer group: Kafka backlog (FIFO), replicas, pauses, scrapes, a policy.

Time advances in fixed steps (default 5 s, which divides the scrape period, the start-up and
the rebalance pause, so every event falls on a step edge). At each step:
1. pods whose start-up ended join the group; any join or leave pauses the whole group for
   `rebalance_seconds` (eager rebalance); a new pod takes `startup_seconds` before it joins;
2. every `interval` seconds the policy decides from the samples it can see (those scraped at
   least `scrape_delay_seconds` ago) and the Deployment's replicas change (starting pods are
   removed before running ones, as a ReplicaSet does);
3. the group processes min(backlog, capacity) records, capacity = per-replica throughput x
   min(running replicas, partitions) x the step's unpaused time (a replica beyond the partition
   count owns no partition and idles). With `capacity_spread` or `partition_skew` set, the
   partitions are dealt to the replicas round-robin and the group runs at the pace of its
   bottleneck: min over replicas of (its throughput / its share of the traffic);
4. freshness = age of the oldest unprocessed record (exact: its arrival time is read from the
   cumulative arrivals, FIFO; 0 when caught up) + the consumer's batch latency;
5. every `scrape_seconds` a MetricSample is taken: rates over the last `rate_window_seconds`,
   the busy fraction (processed / (throughput x running replica-seconds): a paused or idle
   replica is not busy), lag (backlog + the batch in flight), time lag and freshness.
Replica-hours count every pod that exists, starting ones included.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from metricpipe_operator.scaling.model import MetricSample

# (visible samples, deployment replicas, last scale time, now) -> new deployment replicas
PolicyFn = Callable[[Sequence[MetricSample], int, float | None, float], int]


@dataclass(frozen=True)
class SimParams:
    partitions: int = 32
    per_replica_rate: float = 50_000.0  # records/s one busy replica processes
    startup_seconds: float = 30.0  # pod created -> consumer polling (Python + Spark JVM start)
    rebalance_seconds: float = 10.0  # whole group paused on every join or leave
    batch_latency_seconds: float = 3.0  # poll -> sink ack -> offset commit of one micro-batch
    scrape_seconds: float = 15.0  # Prometheus scrape interval
    scrape_delay_seconds: float = 15.0  # the policy sees samples one scrape old
    rate_window_seconds: float = 60.0  # rate(...[1m])
    step_seconds: float = 5.0
    history_seconds: float = 2400.0  # samples handed to the policy (the operator keeps 1 h)
    plot_every_seconds: float = 60.0
    # robustness variants (0: the clean world above, every replica and partition alike)
    capacity_spread: float = 0.0  # replica i runs at rate x (1 + spread x u_i), u_i in [-1, 1]
    partition_skew: float = 0.0  # partition p carries the mean x (1 + skew x (1 - 2p/(P-1)))
    seed: int = 7


@dataclass
class RunResult:
    violation_seconds: float = 0.0
    max_freshness: float = 0.0
    replica_seconds: float = 0.0
    events: int = 0
    sleeps: int = 0  # scale events to 0 replicas
    seconds: float = 0.0
    times: list[float] = field(default_factory=list)  # series for the plot (every minute)
    replicas: list[int] = field(default_factory=list)
    freshness: list[float] = field(default_factory=list)  # max over each minute


class Group:
    """The consumer group and its topic; `run` replays the arrivals under one policy."""

    def __init__(self, arrivals: Sequence[float], params: SimParams, initial: int) -> None:
        self.p = params
        self.arrivals = arrivals
        self.cumulative = [0.0]
        for a in arrivals:
            self.cumulative.append(self.cumulative[-1] + a)
        self.starting: list[float] = []  # ready times of pods still starting
        self.running = self.desired = initial
        self.pause_until = -math.inf
        self.last_scale: float | None = None
        self.backlog = self.processed = 0.0
        self.oldest = 0  # step holding the oldest unprocessed record
        keep = max(1, round(params.history_seconds / params.scrape_seconds))
        self.samples: deque[MetricSample] = deque(maxlen=keep)
        window = max(1, round(params.rate_window_seconds / params.step_seconds))
        self.rings = [[0.0] * window for _ in range(3)]  # arrived, processed, alive replica-s
        self.sums = [0.0, 0.0, 0.0]
        self.rates = group_rates(params)

    def run(self, policy: PolicyFn, interval: float, target: float) -> RunResult:
        p = self.p
        dt = p.step_seconds
        every_scrape = round(p.scrape_seconds / dt)
        every_decision = round(interval / dt)
        every_plot = round(p.plot_every_seconds / dt)
        result = RunResult()
        worst = 0.0
        for k, arriving in enumerate(self.arrivals):
            t = k * dt
            self._join(t)
            if k % every_decision == 0 and k > 0:
                visible = [s for s in self.samples if s.at <= t - p.scrape_delay_seconds]
                wanted = policy(visible, self.desired, self.last_scale, t)
                if wanted != self.desired:
                    result.events += 1
                    result.sleeps += wanted == 0
                    self._scale(t, wanted)
            fresh = self._process(k, t, arriving)
            if fresh > target:
                result.violation_seconds += dt
            result.max_freshness = max(result.max_freshness, fresh)
            result.replica_seconds += self.desired * dt
            worst = max(worst, fresh)
            if (k + 1) % every_scrape == 0:
                self.samples.append(self._sample(k, t + dt, arriving, fresh))
            if (k + 1) % every_plot == 0:
                result.times.append(t + dt)
                result.replicas.append(self.desired)
                result.freshness.append(worst)
                worst = 0.0
        result.seconds = len(self.arrivals) * dt
        return result

    def _join(self, t: float) -> None:
        joined = 0
        while self.starting and self.starting[0] <= t:
            self.starting.pop(0)
            joined += 1
        if joined:
            self.running += joined
            self.pause_until = max(self.pause_until, t + self.p.rebalance_seconds)

    def _scale(self, t: float, wanted: int) -> None:
        self.last_scale = t
        if wanted > self.desired:
            self.starting.extend([t + self.p.startup_seconds] * (wanted - self.desired))
        else:
            drop = self.desired - wanted
            while drop and self.starting:
                self.starting.pop()
                drop -= 1
            if drop:
                self.running -= drop
                self.pause_until = max(self.pause_until, t + self.p.rebalance_seconds)
        self.desired = wanted

    def _process(self, k: int, t: float, arriving: float) -> float:
        """One step of consumption; returns the freshness at its end."""
        p = self.p
        dt = p.step_seconds
        working = dt - min(dt, max(0.0, self.pause_until - t))
        capacity = self.rates[min(self.running, p.partitions)] * working
        self.backlog += arriving
        done = min(self.backlog, capacity)
        self.backlog -= done
        self.processed += done
        slot = k % len(self.rings[0])
        for i, value in enumerate((arriving, done, self.running * dt)):
            self.sums[i] += value - self.rings[i][slot]
            self.rings[i][slot] = value
        age = 0.0
        crumb = 1e-6 * p.per_replica_rate  # less than a record: rounding, not a waiting record
        if self.backlog > crumb:
            cumulative = self.cumulative
            while cumulative[self.oldest + 1] <= self.processed + crumb:
                self.oldest += 1
            share = (self.processed - cumulative[self.oldest]) / max(
                self.arrivals[self.oldest], 1e-12
            )
            age = t + dt - (self.oldest + min(1.0, share)) * dt
        return age + p.batch_latency_seconds

    def _sample(self, k: int, at: float, arriving: float, fresh: float) -> MetricSample:
        p = self.p
        span = min(k + 1, len(self.rings[0])) * p.step_seconds
        arrived, done, alive = (max(0.0, x) for x in self.sums)
        busy = min(1.0, done / (p.per_replica_rate * alive)) if alive > 0 else None
        return MetricSample(
            at=at, replicas=self.running, input_rate=arrived / span, processing_rate=done / span,
            busy_fraction=busy,
            lag_records=self.backlog + arriving / p.step_seconds * p.batch_latency_seconds,
            time_lag_seconds=fresh, freshness_seconds=fresh, partitions=p.partitions,
        )  # fmt: skip


def group_rates(p: SimParams) -> list[float]:
    """Records/s the group processes with n = 0..partitions replicas owning partitions."""
    if not p.capacity_spread and not p.partition_skew:
        return [p.per_replica_rate * n for n in range(p.partitions + 1)]
    rng = random.Random(p.seed)
    factors = [1.0 + p.capacity_spread * rng.uniform(-1.0, 1.0) for _ in range(p.partitions)]
    last = max(1, p.partitions - 1)
    weights = [1.0 + p.partition_skew * (1.0 - 2.0 * i / last) for i in range(p.partitions)]
    total = sum(weights)
    rates = [0.0]
    for n in range(1, p.partitions + 1):
        shares = [sum(weights[i] for i in range(r, p.partitions, n)) / total for r in range(n)]
        rates.append(min(p.per_replica_rate * factors[r] / shares[r] for r in range(n)))
    return rates


def simulate(
    arrivals: Sequence[float], params: SimParams, policy: PolicyFn, *, interval: float,
    initial: int, target: float,
) -> RunResult:  # fmt: skip
    """Replay `arrivals` (records per step) under `policy`, called every `interval` seconds."""
    return Group(arrivals, params, initial).run(policy, interval, target)
