"""Batch runs as the ResourceManager records them (pure): from a pipeline's finished Jobs and
their pods' termination messages (each run's own report) to the runs its status keeps, from
those to `BatchRun`s for the sizing, and from the plan to status and a condition.

A run's wall time is the Job's (`startTime` to `completionTime`: scheduling, pod and JVM start
included); its report gives the records it read, the windows it computed and the seconds it
spent on them. The difference is the run's start-up. A run that made up several windows (a
backfill) counts as that many windows' worth of work: the sizing plans one window per run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..reconcile.status import Condition, parse_rfc3339
from .batch import BatchPlan, BatchRun, BatchSizing

RUNS_KEPT = BatchSizing.history_runs  # runs kept in status: what the sizing reads


def fetch_report(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's report from its pod's termination message, or None (no message, not JSON)."""
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated.get("exitCode") == 0 and terminated.get("message"):
            try:
                report = json.loads(terminated["message"])
            except json.JSONDecodeError:
                return None
            return report if isinstance(report, dict) else None
    return None


def build_run_record(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """One succeeded Job with a report that computed at least one window → the status entry;
    None for anything else (running, failed, nothing due, no report)."""
    status = job.get("status") or {}
    if (
        not status.get("succeeded")
        or not status.get("startTime")
        or not status.get("completionTime")
    ):
        return None
    uid = job["metadata"].get("uid")
    for pod in pods:
        owners = pod["metadata"].get("ownerReferences") or []
        if not any(o.get("uid") == uid for o in owners):
            continue
        report = fetch_report(pod)
        trimmed = int(report.get("trimmedWindows") or 0) if report is not None else 0
        if report is None or (int(report.get("windows") or 0) <= 0 and not trimmed):
            continue
        seconds = max(
            0.0, parse_rfc3339(status["completionTime"]) - parse_rfc3339(status["startTime"])
        )
        return {
            "job": job["metadata"]["name"],
            "windowStartMs": int(report.get("firstWindowStartMs") or 0),
            "windows": int(report["windows"]),
            "records": int(report.get("records") or 0),
            "seconds": seconds,
            "workSeconds": min(seconds, float(report.get("workSeconds") or 0.0)),
            "parallelism": max(1, int(report.get("parallelism") or 1)),
            **({"trimmedWindows": trimmed,
                "lastTrimmedWindowStartMs": int(report.get("lastTrimmedWindowStartMs") or 0)}
               if trimmed else {}),
        }  # fmt: skip
    return None


def merge_run_records(
    kept: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The runs kept in status plus the newly finished ones (a Job counts once), oldest first,
    the newest `RUNS_KEPT`."""
    by_job = {str(r["job"]): dict(r) for r in kept}
    by_job.update({str(r["job"]): dict(r) for r in new})
    ordered = sorted(by_job.values(), key=lambda r: (int(r["windowStartMs"]), str(r["job"])))
    return ordered[-RUNS_KEPT:]


def build_batch_runs(records: Sequence[Mapping[str, Any]]) -> list[BatchRun]:
    """The sizing's view: each run as one window's work (a backfill's per-window average)."""
    runs = []
    for record in records:
        if int(record["windows"]) <= 0:  # every window of the run was trimmed: no work
            continue
        windows = int(record["windows"])
        work = float(record["workSeconds"])
        startup = max(0.0, float(record["seconds"]) - work)
        runs.append(BatchRun(
            window_start=int(record["windowStartMs"]) / 1000,
            records=int(record["records"]) // windows, seconds=startup + work / windows,
            parallelism=int(record["parallelism"]), startup_seconds=startup,
        ))  # fmt: skip
    return runs


def build_batch_status(records: Sequence[Mapping[str, Any]], plan: BatchPlan) -> dict[str, Any]:
    return {
        "batch": {
            "runs": [dict(r) for r in records],
            "plan": {
                "parallelism": plan.parallelism,
                "predictedRecords": plan.predicted_records,
                "predictedSeconds": round(plan.predicted_seconds, 1),
                "budgetSeconds": round(plan.budget_seconds, 1),
                "fits": plan.fits,
                "reason": plan.reason[:1024],
            },
        },
    }


def build_batch_condition(plan: BatchPlan) -> Condition:
    """BatchBudgetMet: whether the next run is planned to finish inside its budget."""
    if plan.fits:
        return Condition("BatchBudgetMet", True, "Fits", plan.reason)
    reason = "NoBudget" if plan.budget_seconds <= 0 else "MaxParallelismTooSmall"
    return Condition("BatchBudgetMet", False, reason, plan.reason)


def build_cache_condition(records: Sequence[Mapping[str, Any]]) -> Condition:
    """CacheComplete (source.store redis): False when the newest run found windows whose
    records had partly left the cache before it could compute them (those windows have no
    final document), True otherwise."""
    newest = records[-1] if records else {}
    trimmed = int(newest.get("trimmedWindows") or 0)
    if not trimmed:
        return Condition("CacheComplete", True, "Complete",
                         "every window the newest run was due held all its records")  # fmt: skip
    since = int(newest.get("lastTrimmedWindowStartMs") or 0) // 1000
    message = (
        f"run {newest.get('job')} skipped {trimmed} window(s), the newest starting at unix "
        f"{since}: part of their records had left the Redis cache (its retention) before a run "
        "computed them, so they have no final document; runs must keep up within the cache's "
        "retention (check failed or suspended runs), or the retention must be longer"
    )
    return Condition("CacheComplete", False, "Trimmed", message)
