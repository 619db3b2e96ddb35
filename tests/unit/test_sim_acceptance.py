"""The autoscaling benchmark's generated traces (bench/sim_trace.py: named, seeded) and its
acceptance checks, which are per trace and target (bench/sim_acceptance.py)."""

from __future__ import annotations

import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from sim_acceptance import acceptance, check_run
from sim_trace import NAMED_TRACES, spike_trace, step_trace


def test_named_traces_are_deterministic() -> None:
    for make in NAMED_TRACES.values():
        first, again = make(), make()
        assert (first.counts == again.counts).all()
        assert first.bucket_seconds == 60.0


def test_the_spike_is_one_minute_at_32_times_the_base() -> None:
    trace = spike_trace()
    high = [i for i, c in enumerate(trace.counts) if c > 1100.0]
    assert high == [len(trace.counts) // 2]
    assert trace.counts.max() / trace.counts.mean() > 25


def test_the_step_trace_goes_up_and_down() -> None:
    counts = step_trace().counts
    assert len(counts) == 750
    means = [counts[i : i + 60].mean() for i in range(0, 750, 60)]
    rises = sum(b > 1.5 * a for a, b in pairwise(means))
    falls = sum(b < a / 1.5 for a, b in pairwise(means))
    assert rises >= 3
    assert falls >= 3


def run(policy: str, target: float, **figures: Any) -> dict[str, Any]:
    base = {"policy": policy, "target_seconds": target, "slo_violation_minutes": 0.0,
            "events_per_hour": 1.0, "scale_events": 10, "ratio_to_keda": 1.0,
            "ratio_to_work_bound": 1.2}  # fmt: skip
    return base | figures


@pytest.mark.parametrize(
    ("mine", "real", "ok", "failed"),
    [
        (run("metricpipe", 300.0), True, True, []),
        (run("metricpipe", 300.0, slo_violation_minutes=0.2), True, False, ["zero_violations"]),
        (run("metricpipe", 300.0, events_per_hour=4.1), True, False, ["events_ok"]),
        (run("metricpipe", 300.0, ratio_to_keda=1.06), True, False, ["ratio_to_keda_ok"]),
        (run("metricpipe", 300.0, scale_events=20), True, False, ["fewer_events_than_keda"]),
        (run("metricpipe", 3600.0, ratio_to_keda=1.2, scale_events=30), True, True, []),
        (run("metricpipe", 3600.0, ratio_to_work_bound=1.4), True, False, ["work_ratio_ok"]),
        (run("metricpipe", 3600.0, ratio_to_work_bound=2.0), False, True, []),  # generated
    ],
)  # fmt: skip
def test_each_run_is_checked_on_its_own(
    mine: dict[str, Any], real: bool, ok: bool, failed: list[str]
) -> None:
    keda = run("keda t/6", mine["target_seconds"], scale_events=15, events_per_hour=2.0)
    checks = check_run(mine, keda, real)
    assert checks["ok"] is ok
    assert [k for k, v in checks.items() if v is False and k != "ok"] == failed


def test_one_failing_trace_fails_the_whole_and_is_named() -> None:
    good = {
        "name": "a",
        "generated": False,
        "runs": [run("metricpipe", 300.0), run("keda t/6", 300.0, scale_events=15)],
    }
    bad = {
        "name": "b",
        "generated": True,
        "runs": [
            run("metricpipe", 300.0, events_per_hour=5.0),
            run("keda t/6", 300.0, scale_events=15),
        ],
    }
    result = acceptance([good, bad])
    assert result["all_ok"] is False
    assert result["per_trace"]["a"]["300"]["ok"] is True
    assert result["per_trace"]["b"]["300"]["events_ok"] is False
