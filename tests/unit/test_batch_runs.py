"""Batch runs as the ResourceManager records them (pure): Job + pod report → status entry →
the sizing's runs; and the job's side, the report it writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metricpipe_consumers.batch import (
    BatchReport,
    build_run_summary,
    decide_local_parallelism,
)
from metricpipe_operator.scaling.batch import BatchPlan, BatchSizing, decide_batch_plan
from metricpipe_operator.scaling.batchruns import (
    RUNS_KEPT,
    build_batch_condition,
    build_batch_runs,
    build_batch_status,
    build_run_record,
    merge_run_records,
)

HOUR_MS = 3_600_000
START = datetime(2026, 11, 27, 10, 10, tzinfo=UTC)  # job()'s startTime


def job(name: str, *, succeeded: int = 1, start: str = "2026-11-27T10:10:00Z",
        end: str | None = "2026-11-27T10:12:00Z") -> dict[str, Any]:  # fmt: skip
    status: dict[str, Any] = {"startTime": start}
    if succeeded:
        status["succeeded"] = succeeded
    if end:
        status["completionTime"] = end
    return {"metadata": {"name": name, "uid": f"uid-{name}"}, "status": status}


def pod(owner: str, message: str | None, exit_code: int = 0) -> dict[str, Any]:
    terminated: dict[str, Any] = {"exitCode": exit_code}
    if message is not None:
        terminated["message"] = message
    return {
        "metadata": {"ownerReferences": [{"kind": "Job", "uid": f"uid-{owner}"}]},
        "status": {"containerStatuses": [{"state": {"terminated": terminated}}]},
    }


REPORT = {"windows": 2, "records": 90_000, "workSeconds": 40.0, "parallelism": 3,
          "firstWindowStartMs": 10 * HOUR_MS, "lastWindowEndMs": 12 * HOUR_MS}  # fmt: skip


def test_a_succeeded_job_and_its_report_make_a_run() -> None:
    record = build_run_record(job("r1"), [pod("other", "{}"), pod("r1", json.dumps(REPORT))])
    assert record == {
        "job": "r1", "windowStartMs": 10 * HOUR_MS, "windows": 2, "records": 90_000,
        "seconds": 120.0, "workSeconds": 40.0, "parallelism": 3,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("the_job", "pods"),
    [
        (job("r1", succeeded=0, end=None), [pod("r1", json.dumps(REPORT))]),  # still running
        (job("r1"), [pod("r1", None)]),  # no report (an older image)
        (job("r1"), [pod("r1", "not json")]),
        (job("r1"), [pod("r1", json.dumps({**REPORT, "windows": 0}))]),  # nothing was due
        (job("r1"), [pod("r1", json.dumps(REPORT), exit_code=2)]),  # a failed attempt's pod
        (job("r1"), [pod("r2", json.dumps(REPORT))]),  # another Job's pod
    ],
)
def test_what_is_not_a_measured_run(the_job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
    assert build_run_record(the_job, pods) is None


def test_runs_merge_once_per_job_oldest_first_newest_kept() -> None:
    def record(name: str, hour: int) -> dict[str, Any]:
        return {"job": name, "windowStartMs": hour * HOUR_MS, "windows": 1, "records": hour,
                "seconds": 60.0, "workSeconds": 30.0, "parallelism": 1}  # fmt: skip

    kept = [record(f"r{h}", h) for h in range(1, 6)]
    merged = merge_run_records(kept, [record("r5", 5), record("r6", 6), record("r7", 7)])
    assert [r["job"] for r in merged] == ["r2", "r3", "r4", "r5", "r6", "r7"]
    assert len(merged) == RUNS_KEPT


def test_a_backfill_counts_as_its_windows_average_and_startup_is_the_rest() -> None:
    record = build_run_record(job("r1"), [pod("r1", json.dumps(REPORT))])
    assert record is not None
    (run,) = build_batch_runs([record])
    assert run.records == 45_000  # 90,000 over 2 windows
    assert run.startup_seconds == 80.0  # 120 s of the Job, 40 s of them working
    assert run.seconds == 80.0 + 20.0
    assert run.parallelism == 3


def test_recorded_runs_whose_volume_doubles_raise_the_planned_parallelism() -> None:
    """The whole path, from Jobs' reports to the plan: 20k, 40k, 80k records per hourly run,
    each read at 500 rec/s by one unit."""
    records = []
    for hour, volume in enumerate((20_000, 40_000, 80_000)):
        report = {"windows": 1, "records": volume, "workSeconds": volume / 500,
                  "parallelism": 1, "firstWindowStartMs": hour * HOUR_MS}  # fmt: skip
        end = (START + timedelta(seconds=30 + volume / 500)).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = build_run_record(job(f"r{hour}", end=end), [pod(f"r{hour}", json.dumps(report))])
        assert record is not None
        records.append(record)
    sizing = BatchSizing(freshness_target_seconds=300, allowed_lateness_seconds=60)
    early = decide_batch_plan(build_batch_runs(records[:1]), sizing)
    late = decide_batch_plan(build_batch_runs(records), sizing)
    assert late.parallelism > early.parallelism
    assert late.fits
    assert late.predicted_seconds - 30 <= sizing.safety * late.budget_seconds


def test_status_and_condition_say_when_even_the_maximum_does_not_fit() -> None:
    plan = BatchPlan(8, 5_000_000, 900.0, 210.0, False, "5,000,000 records need 900 s ...")
    status = build_batch_status([], plan)
    assert "desiredReplicas" not in status  # the reconciler's, from spec.replicas
    assert status["batch"]["plan"]["fits"] is False
    condition = build_batch_condition(plan)
    assert (condition.status, condition.reason) == (False, "MaxParallelismTooSmall")
    assert condition.message == plan.reason
    no_budget = BatchPlan(8, 0, 30.0, -10.0, False, "no budget")
    assert build_batch_condition(no_budget).reason == "NoBudget"
    fits = BatchPlan(2, 1000, 40.0, 210.0, True, "fits")
    assert build_batch_condition(fits).status is True


def test_the_job_summarises_its_windows() -> None:
    reports = [BatchReport("ns/p", 0, HOUR_MS, records_read=100, seconds=1.5),
               BatchReport("ns/p", HOUR_MS, 2 * HOUR_MS, records_read=50, seconds=0.5)]  # fmt: skip
    assert build_run_summary(reports, parallelism=2) == {
        "windows": 2, "records": 150, "workSeconds": 2.0, "parallelism": 2,
        "firstWindowStartMs": 0, "lastWindowEndMs": 2 * HOUR_MS,
    }  # fmt: skip
    assert build_run_summary([], 1) == {"windows": 0, "records": 0, "workSeconds": 0,
                                        "parallelism": 1}  # fmt: skip
    assert len(json.dumps(build_run_summary(reports, 2))) < 4096  # what the kubelet keeps


@pytest.mark.parametrize(("master", "cores"), [("local", 1), ("local[3]", 3), ("local[4,2]", 4)])
def test_parallelism_from_the_spark_master(master: str, cores: int) -> None:
    assert decide_local_parallelism(master) == cores
