"""Batch mode's sizing (pure): how parallel the next window's job must run to finish inside its
budget, from the runs recorded so far. No clock, no I/O: table-tested like the stream policy.

A run's budget is what the freshness target leaves after the window closes, waits out the
allowed lateness and the job starts: `target - lateness - startup`. The job's rate is linear in
its parallelism (Spark local cores reading partitions in parallel) up to an efficiency factor;
the rate per unit of parallelism is measured from recent runs (their records over their
processing time, i.e. without start-up), the next window's volume is predicted from the recent
volumes and their trend, and the smallest parallelism whose predicted duration stays under the
budget with a safety margin is chosen. When even the maximum does not fit, the plan says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchRun:
    """One finished run of a pipeline's job (from the Job's times and the job's report)."""

    window_start: float  # Unix seconds
    records: int
    seconds: float  # wall time of the run, start-up included
    parallelism: int
    startup_seconds: float = 0.0  # part of `seconds` before the first record was read


@dataclass(frozen=True)
class BatchSizing:
    """The pipeline's bounds and the operator-wide knobs."""

    freshness_target_seconds: float
    allowed_lateness_seconds: float
    startup_seconds: float = 30.0  # when no run measured it yet
    min_parallelism: int = 1
    max_parallelism: int = 8
    safety: float = 0.8  # plan to use at most this share of the budget
    efficiency: float = 0.9  # rate gained per added unit of parallelism, relative to the first
    history_runs: int = 6  # runs the rate and the volume trend are read from
    default_rate_per_unit: float = 20_000.0  # records/s per unit, before any run is measured


@dataclass(frozen=True)
class BatchPlan:
    parallelism: int
    predicted_records: int
    predicted_seconds: float
    budget_seconds: float
    fits: bool
    reason: str


def speedup(parallelism: int, efficiency: float) -> float:
    """Rate of `parallelism` units relative to one: 1 + efficiency per added unit."""
    return 1.0 + efficiency * (parallelism - 1)


def decide_rate_per_unit(runs: Sequence[BatchRun], sizing: BatchSizing) -> float:
    """Records/s one unit of parallelism processes: the median over recent runs."""
    rates = []
    for run in runs[-sizing.history_runs :]:
        working = run.seconds - run.startup_seconds
        if run.records > 0 and working > 0:
            rates.append(run.records / working / speedup(run.parallelism, sizing.efficiency))
    return statistics.median(rates) if rates else sizing.default_rate_per_unit


def decide_next_volume(runs: Sequence[BatchRun], history_runs: int) -> int:
    """The larger of the last volume and its linear trend one step ahead (never below 0): a
    volume that doubles is planned for before it arrives, a falling one is not trusted yet."""
    volumes = [run.records for run in runs[-history_runs:]]
    if not volumes:
        return 0
    if len(volumes) < 2:
        return volumes[-1]
    xs = range(len(volumes))
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(volumes)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, volumes, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    ahead = mean_y + slope * (len(volumes) - mean_x)
    return max(volumes[-1], math.ceil(max(0.0, ahead)))


def decide_batch_plan(runs: Sequence[BatchRun], sizing: BatchSizing) -> BatchPlan:
    """The next run's parallelism: the smallest that fits the budget with the safety margin."""
    measured = [r.startup_seconds for r in runs[-sizing.history_runs :] if r.startup_seconds > 0]
    startup = max(measured) if measured else sizing.startup_seconds
    budget = sizing.freshness_target_seconds - sizing.allowed_lateness_seconds - startup
    records = decide_next_volume(runs, sizing.history_runs)
    rate = decide_rate_per_unit(runs, sizing)

    def predicted(parallelism: int) -> float:
        return startup + records / (rate * speedup(parallelism, sizing.efficiency))

    if budget <= 0:
        seconds = predicted(sizing.max_parallelism)
        return BatchPlan(sizing.max_parallelism, records, seconds, budget, False,
                         f"no budget: target {sizing.freshness_target_seconds:.0f} s - lateness "
                         f"{sizing.allowed_lateness_seconds:.0f} s - start-up {startup:.0f} s "
                         "<= 0")  # fmt: skip
    for parallelism in range(sizing.min_parallelism, sizing.max_parallelism + 1):
        if predicted(parallelism) - startup <= sizing.safety * budget:
            return BatchPlan(parallelism, records, predicted(parallelism), budget, True,
                             f"{records:,} records at {rate:,.0f} rec/s per unit: "
                             f"{parallelism} fit {predicted(parallelism):.0f} s of a "
                             f"{budget:.0f} s budget")  # fmt: skip
    seconds = predicted(sizing.max_parallelism)
    return BatchPlan(sizing.max_parallelism, records, seconds, budget, False,
                     f"{records:,} records need {seconds:.0f} s even at the maximum parallelism "
                     f"{sizing.max_parallelism}; the budget is {budget:.0f} s: raise "
                     "maxParallelism or the freshness target")  # fmt: skip


def build_batch_schedule(window_seconds: float, lateness_seconds: float) -> str:
    """The cron schedule of a window's job: every window end, offset by the allowed lateness
    (rounded up to whole minutes). Windows must divide an hour or a day into whole minutes or
    hours, as cron counts them."""
    if window_seconds < 60 or window_seconds % 60:
        raise ValueError("batch windows are whole minutes, at least 1m")
    minutes = int(window_seconds // 60)
    delay = math.ceil(lateness_seconds / 60)
    if minutes < 60:
        if 60 % minutes:
            raise ValueError(f"a {minutes}m window does not divide an hour")
        return f"{_cron_list({(m + delay) % 60 for m in range(0, 60, minutes)}, 60)} * * * *"
    if minutes % 60 or 24 % (minutes // 60):
        raise ValueError(f"a {minutes}m window does not divide a day into whole hours")
    hours, minute = divmod(delay, 60)
    marks = {(h + hours) % 24 for h in range(0, 24, minutes // 60)}
    return f"{minute} {_cron_list(marks, 24)} * * *"


def _cron_list(marks: set[int], every: int) -> str:
    return "*" if len(marks) == every else ",".join(map(str, sorted(marks)))
