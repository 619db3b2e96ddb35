"""Scale to zero in the autoscaling benchmark: each trace scaled down to a low rate (its peak
bucket LOW_PEAK of one replica's capacity), the metricpipe policy with `minReplicas: 1` (a
replica always up) against `minReplicas: 0` (`scaling/sleep.py`: it may sleep), at each target.

The goals, per trace: at a 1-hour target, 0 SLO-violation minutes and replica-hours within
GOAL_WORK_RATIO of the work bound; at a 5-minute target, no sleep at all (a cycle that short
would cost more start-ups and scale events than the sleep saves). bench/autoscale_sim.py runs
the jobs, prints the table and writes it to the results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sim_engine import RunResult, SimParams
from sim_trace import Trace, rescale, step_arrivals

LOW_PEAK = 0.3  # the trace's peak bucket, in replicas' worth
GOAL_WORK_RATIO = 1.5  # replica-hours / work bound at the 1-hour target, minReplicas 0
TARGETS = (3600.0, 300.0)


def build_zero_jobs(
    traces: list[Trace], params: SimParams, make_job: Callable[..., Any], setup: Any
) -> list[Any]:
    """Per trace (time-scaled, not yet amplitude-scaled) and target: one job with `setup`'s
    minReplicas 1 and one with 0 (autoscale_sim.Job and Setup, duck-typed: no import cycle)."""
    jobs = []
    for trace in traces:
        low = rescale(trace, 1.0, LOW_PEAK * params.per_replica_rate / trace.peak_rate)
        arrivals = step_arrivals(low, params.step_seconds)
        for target in TARGETS:
            for floor in (1, 0):
                jobs.append(make_job(trace.name, "metricpipe", target, 0.0, arrivals, params,
                                     replace(setup, min_replicas=floor),
                                     variant=f"min {floor}"))  # fmt: skip
    return jobs


def report_zero(
    jobs: list[Any], results: list[RunResult], summarise: Callable[..., dict[str, Any]],
    work_hours: dict[str, float],
) -> dict[str, Any]:  # fmt: skip
    """Print one row per job and the goals per trace; the rows and goals, for the results."""
    header = (f"{'trace':<34} {'target':>6} {'floor':<6} {'viol min':>8} {'max fresh s':>11} "
              f"{'repl-h':>8} {'x work':>7} {'events':>6} {'ev/h':>5} {'sleeps':>6}")  # fmt: skip
    print(f"\nscale to zero (each trace's peak = {LOW_PEAK} of one replica)\n{header}\n"
          + "-" * len(header))  # fmt: skip
    rows = []
    for job, result in zip(jobs, results, strict=True):
        s = summarise(result, work_hours[job.trace])
        rows.append({"trace": job.trace, "target_seconds": job.target, "floor": job.variant,
                     **s, "sleeps": result.sleeps})  # fmt: skip
        print(
            f"{job.trace[:34]:<34} {job.target:>6.0f} {job.variant:<6} "
            f"{s['slo_violation_minutes']:>8.1f} {s['max_freshness_seconds']:>11.0f} "
            f"{s['replica_hours']:>8.1f} {s['ratio_to_work_bound']:>7.3f} {s['scale_events']:>6} "
            f"{s['events_per_hour']:>5.2f} {result.sleeps:>6}"
        )
    goals = {}
    for trace in sorted(work_hours):
        zero = {r["target_seconds"]: r for r in rows if r["trace"] == trace
                and r["floor"] == "min 0"}  # fmt: skip
        hour, short = zero[TARGETS[0]], zero[TARGETS[1]]
        goals[trace] = {
            "zero_violations_at_1h": hour["slo_violation_minutes"] == 0,
            "work_ratio_at_1h": hour["ratio_to_work_bound"],
            "work_ratio_at_1h_ok": hour["ratio_to_work_bound"] <= GOAL_WORK_RATIO,
            "stays_awake_at_5m": short["sleeps"] == 0,
            "zero_violations_at_5m": short["slo_violation_minutes"] == 0,
        }
        print(f"{trace}: {goals[trace]}")
    return {"low_peak_replicas": LOW_PEAK, "runs": rows, "goals": goals}
