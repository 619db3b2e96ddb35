"""Scale to zero in the autoscaling benchmark: each trace scaled down to a low rate (its peak
bucket LOW_PEAK of one replica's capacity), the metricpipe policy with `minReplicas: 1` (a
replica always up) against `minReplicas: 0` (`scaling/sleep.py`: it may sleep), at each target;
and the `minReplicas: 0` run at the 1-hour target again in PERTURBED worlds: the policy told
start-up and rebalance x 0.5 and x 1.5 of the simulated world's (as in sim_robustness.py), and
a replica whose throughput is 0.8 x and 1.2 x the nominal one (the policy measures it).

The goals, per trace: at a 1-hour target, 0 SLO-violation minutes and replica-hours within
GOAL_WORK_RATIO of the work bound; at a 5-minute target, no sleep at all (a cycle that short
would cost more start-ups and scale events than the sleep saves); 0 SLO-violation minutes in
every perturbed world. bench/autoscale_sim.py runs the jobs, prints the table and writes it to
the results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sim_engine import RunResult, SimParams
from sim_trace import Trace, rescale, step_arrivals

LOW_PEAK = 0.3  # the trace's peak bucket, in replicas' worth
GOAL_WORK_RATIO = 1.5  # replica-hours / work bound at the 1-hour target, minReplicas 0
TARGETS = (3600.0, 300.0)
# (label, policy told start-up and rebalance x this, the world's per-replica throughput x this)
PERTURBED = (
    ("told start x0.5", 0.5, 1.0),
    ("told start x1.5", 1.5, 1.0),
    ("throughput x0.8", 1.0, 0.8),
    ("throughput x1.2", 1.0, 1.2),
)


def build_zero_jobs(
    traces: list[Trace], params: SimParams, make_job: Callable[..., Any], setup: Any
) -> list[Any]:
    """Per trace (time-scaled, not yet amplitude-scaled) and target: one job with `setup`'s
    minReplicas 1 and one with 0; then the PERTURBED runs of minReplicas 0 at the first target
    (autoscale_sim.Job and Setup, duck-typed: no import cycle)."""
    jobs = []
    sleeping = replace(setup, min_replicas=0)
    for trace in traces:
        low = rescale(trace, 1.0, LOW_PEAK * params.per_replica_rate / trace.peak_rate)
        arrivals = step_arrivals(low, params.step_seconds)
        for target in TARGETS:
            for floor in (1, 0):
                jobs.append(make_job(trace.name, "metricpipe", target, 0.0, arrivals, params,
                                     replace(setup, min_replicas=floor),
                                     variant=f"min {floor}"))  # fmt: skip
        for label, belief, speed in PERTURBED:
            world = replace(params, per_replica_rate=params.per_replica_rate * speed)
            jobs.append(make_job(trace.name, "metricpipe", TARGETS[0], 0.0, arrivals, world,
                                 sleeping, belief=belief, variant=f"min 0, {label}"))  # fmt: skip
    return jobs


def report_zero(
    jobs: list[Any], results: list[RunResult], summarise: Callable[..., dict[str, Any]],
    work_hours: dict[str, float],
) -> dict[str, Any]:  # fmt: skip
    """Print one row per job and the goals per trace (with the work bound: total records /
    per-replica throughput, the world's own in the throughput runs); the rows and goals, for
    the results."""
    header = (f"{'trace':<34} {'target':>6} {'run':<26} {'viol min':>8} {'max fresh s':>11} "
              f"{'repl-h':>8} {'x work':>7} {'events':>6} {'ev/h':>5} {'sleeps':>6}")  # fmt: skip
    print(f"\nscale to zero (each trace's peak = {LOW_PEAK} of one replica)\n{header}\n"
          + "-" * len(header))  # fmt: skip
    rows = []
    nominal = {j.trace: j.params.per_replica_rate for j in jobs if j.variant == "min 0"}
    for job, result in zip(jobs, results, strict=True):
        # the work bound of the world run: a faster or slower replica has its own
        s = summarise(result, work_hours[job.trace] * nominal[job.trace]
                      / job.params.per_replica_rate)  # fmt: skip
        rows.append({"trace": job.trace, "target_seconds": job.target, "floor": job.variant,
                     **s, "sleeps": result.sleeps})  # fmt: skip
        print(
            f"{job.trace[:34]:<34} {job.target:>6.0f} {job.variant:<26} "
            f"{s['slo_violation_minutes']:>8.1f} {s['max_freshness_seconds']:>11.0f} "
            f"{s['replica_hours']:>8.2f} {s['ratio_to_work_bound']:>7.3f} {s['scale_events']:>6} "
            f"{s['events_per_hour']:>5.2f} {result.sleeps:>6}"
        )
    goals = {}
    for trace in sorted(work_hours):
        mine = [r for r in rows if r["trace"] == trace]
        zero = {r["target_seconds"]: r for r in mine if r["floor"] == "min 0"}
        hour, short = zero[TARGETS[0]], zero[TARGETS[1]]
        perturbed = [r for r in mine if r["floor"].startswith("min 0,")]
        goals[trace] = {
            "work_bound_replica_hours": round(work_hours[trace], 3),
            "zero_violations_at_1h": hour["slo_violation_minutes"] == 0,
            "work_ratio_at_1h": hour["ratio_to_work_bound"],
            "work_ratio_at_1h_ok": hour["ratio_to_work_bound"] <= GOAL_WORK_RATIO,
            "stays_awake_at_5m": short["sleeps"] == 0,
            "zero_violations_at_5m": short["slo_violation_minutes"] == 0,
            "zero_violations_perturbed": all(r["slo_violation_minutes"] == 0 for r in perturbed),
        }
        print(f"{trace}: {goals[trace]}")
    return {"low_peak_replicas": LOW_PEAK, "runs": rows, "goals": goals}
