"""The autoscaling benchmark's acceptance checks, per trace and freshness target (never averaged
over them: an average hides the one trace that fails).

For the metricpipe policy on every trace and target: 0 SLO-violation minutes and at most
GOAL_EVENTS_PER_HOUR scale events per hour. At a target under LONG_TARGET_SECONDS: replica-hours
at most GOAL_RATIO_TO_KEDA x the reference KEDA-style baseline's (the first `--keda-lag` variant,
`keda t/6` by default) and fewer scale events than it. At LONG_TARGET_SECONDS and above, on a
real (not generated) trace: replica-hours at most GOAL_WORK_RATIO x the work bound. Pure: reads
the per-run figures bench/autoscale_sim.py put in each trace's entry.
"""

from __future__ import annotations

from typing import Any

GOAL_EVENTS_PER_HOUR = 4.0
GOAL_RATIO_TO_KEDA = 1.05
GOAL_WORK_RATIO = 1.35
LONG_TARGET_SECONDS = 3600.0


def check_run(mine: dict[str, Any], keda: dict[str, Any] | None, real: bool) -> dict[str, Any]:
    """The checks of one metricpipe run (`mine`) beside the reference baseline's run (`keda`,
    None if it did not run) on the same trace and target; `ok` says whether all that apply
    pass (a check that does not apply is None)."""
    target = mine["target_seconds"]
    short = target < LONG_TARGET_SECONDS
    checks: dict[str, Any] = {
        "target_seconds": target,
        "slo_violation_minutes": mine["slo_violation_minutes"],
        "zero_violations": mine["slo_violation_minutes"] == 0,
        "events_per_hour": mine["events_per_hour"],
        "events_ok": mine["events_per_hour"] <= GOAL_EVENTS_PER_HOUR,
        "ratio_to_keda": mine["ratio_to_keda"],
        "ratio_to_keda_ok": None,
        "fewer_events_than_keda": None,
        "ratio_to_work_bound": mine["ratio_to_work_bound"],
        "work_ratio_ok": None,
    }
    if short and keda is not None:
        checks["ratio_to_keda_ok"] = mine["ratio_to_keda"] <= GOAL_RATIO_TO_KEDA
        checks["fewer_events_than_keda"] = mine["scale_events"] < keda["scale_events"]
    if not short and real:
        checks["work_ratio_ok"] = mine["ratio_to_work_bound"] <= GOAL_WORK_RATIO
    checks["ok"] = all(v for k, v in checks.items() if k.endswith("_ok") or k in (
        "zero_violations", "fewer_events_than_keda") if v is not None)  # fmt: skip
    return checks


def acceptance(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per trace and target, the checks of the metricpipe run; `all_ok` over them. Prints one
    line each."""
    per_trace: dict[str, dict[str, Any]] = {}
    for entry in entries:
        runs = entry["runs"]
        for mine in (r for r in runs if r["policy"] == "metricpipe"):
            target = mine["target_seconds"]
            keda = next((r for r in runs if r["target_seconds"] == target
                         and r["policy"].startswith("keda")), None)  # fmt: skip
            checks = check_run(mine, keda, real=not entry["generated"])
            per_trace.setdefault(entry["name"], {})[f"{target:g}"] = checks
            print(f"acceptance {entry['name'][:34]:<34} {target:>6g} s: "
                  f"{'OK' if checks['ok'] else 'NOT MET'} ({_failed(checks)})")  # fmt: skip
    every = [c for targets in per_trace.values() for c in targets.values()]
    return {
        "goals": {"events_per_hour": GOAL_EVENTS_PER_HOUR, "ratio_to_keda": GOAL_RATIO_TO_KEDA,
                  "work_ratio": GOAL_WORK_RATIO, "long_target_seconds": LONG_TARGET_SECONDS},
        "per_trace": per_trace,
        "all_ok": bool(every) and all(c["ok"] for c in every),
    }  # fmt: skip


def _failed(checks: dict[str, Any]) -> str:
    failed = [k for k, v in checks.items() if v is False and k != "ok"]
    return "failed: " + ", ".join(failed) if failed else "every check that applies passed"
