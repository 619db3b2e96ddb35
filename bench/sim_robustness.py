"""Robustness runs of the autoscaling benchmark: the metricpipe policy in a world that differs
from what it is told or assumes — start-up and rebalance constants off by ±50 %, replicas
whose throughput varies ±20 %, traffic skewed across partitions, and a pipeline that starts
at one replica instead of correctly sized. Each is reported beside the clean run of the same
trace and target (bench/autoscale_sim.py prints the table and writes it to the results)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sim_engine import RunResult


@dataclass(frozen=True)
class Variant:
    label: str
    belief: float = 1.0  # the policy is told startup/rebalance x this; the world keeps its own
    capacity_spread: float = 0.0
    partition_skew: float = 0.0
    initial: int | None = None


VARIANTS = (
    Variant("constants -50%", belief=0.5),
    Variant("constants +50%", belief=1.5),
    Variant("capacity +-20%", capacity_spread=0.2),
    Variant("skew 1.5x hot", partition_skew=0.5),
    Variant("starts at 1", initial=1),
)


def build_robustness_jobs(jobs: list[Any]) -> list[Any]:
    """One job per variant for every metricpipe job (autoscale_sim.Job, duck-typed: no cycle)."""
    out = []
    for job in (j for j in jobs if j.policy == "metricpipe"):
        for variant in VARIANTS:
            params = replace(job.params, capacity_spread=variant.capacity_spread,
                             partition_skew=variant.partition_skew)  # fmt: skip
            out.append(replace(job, params=params, belief=variant.belief,
                               initial=variant.initial, variant=variant.label))  # fmt: skip
    return out


def report_robustness(
    jobs: list[Any], results: list[RunResult], clean: dict[tuple[str, float], dict[str, Any]],
    summarise: Any, work_hours: dict[str, float],
) -> list[dict[str, Any]]:  # fmt: skip
    """Print one row per variant beside its clean run; the rows, for the results file."""
    header = (f"{'trace':<34} {'target':>6} {'variant':<15} {'viol min':>8} {'max fresh s':>11} "
              f"{'x work':>7} {'vs clean':>8} {'events':>6}")  # fmt: skip
    print("\nrobustness (metricpipe; clean = the run above)\n" + header + "\n" + "-" * len(header))
    rows = []
    for job, result in zip(jobs, results, strict=True):
        s = summarise(result, work_hours[job.trace])
        base = clean[(job.trace, job.target)]
        vs_clean = s["replica_hours"] / base["replica_hours"] if base["replica_hours"] else 0.0
        rows.append({"trace": job.trace, "target_seconds": job.target, "variant": job.variant,
                     **s, "replica_hours_vs_clean": round(vs_clean, 4)})  # fmt: skip
        print(
            f"{job.trace[:34]:<34} {job.target:>6.0f} {job.variant:<15} "
            f"{s['slo_violation_minutes']:>8.1f} {s['max_freshness_seconds']:>11.0f} "
            f"{s['ratio_to_work_bound']:>7.3f} {vs_clean:>8.3f} {s['scale_events']:>6}"
        )
    return rows
