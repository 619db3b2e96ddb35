"""Sketch accuracy, mergeable aggregates, the reference, finalisation watermark (pure)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from metricpipe_consumers.aggregate import Aggregate
from metricpipe_consumers.documents import build_metric_fields
from metricpipe_consumers.finalize import decide_pipeline_watermark
from metricpipe_consumers.reference import compute_reference
from metricpipe_consumers.sketch import QuantileSketch, exact_quantile
from metricpipe_consumers.state import PartitionState
from metricpipe_contract.model import Interpolation, MetricPipelineSpec


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99, 0.0, 1.0])
def test_sketch_is_within_its_relative_error_bound(q: float) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(3, 1.5) for _ in range(5_000)] + [0.0] * 20
    values += [-rng.expovariate(0.1) for _ in range(300)]
    sketch = QuantileSketch(0.01)
    for v in values:
        sketch.add(v)
    exact = exact_quantile(values, q)
    estimate = sketch.quantile(q)
    assert exact is not None
    assert estimate is not None
    assert abs(estimate - exact) <= 0.01 * abs(exact) + 1e-12


def test_sketch_merge_equals_one_sketch() -> None:
    rng = random.Random(3)
    values = [rng.uniform(1, 500) for _ in range(2_000)]
    whole, left, right = QuantileSketch(), QuantileSketch(), QuantileSketch()
    for i, v in enumerate(values):
        whole.add(v)
        (left if i % 3 else right).add(v)
    assert left.merge(right) == whole
    assert QuantileSketch.from_dict(json.loads(json.dumps(whole.to_dict()))) == whole


def test_aggregates_merge_and_values() -> None:
    a = Aggregate(2, 3.0, 1.0, 2.0, 5.0, None, 10, {0: 10})
    b = Aggregate(1, 10.0, 10.0, 10.0, 100.0, None, 4, {1: 4})
    merged = a.merge(b)
    assert (merged.count, merged.total, merged.minimum, merged.maximum) == (3, 13.0, 1.0, 10.0)
    assert merged.offsets == {0: 10, 1: 4}
    assert merged.value("avg", 60) == pytest.approx(13 / 3)
    assert merged.value("rate", 60) == pytest.approx(3 / 60)
    assert Aggregate().value("ratio", 60) is None
    assert Aggregate().value("avg", 60) is None
    restored = Aggregate.from_fields(merged.to_fields(), partition=None)
    assert (restored.count, restored.total, restored.max_offset) == (3, 13.0, 10)


def test_a_ratio_merges_exactly_and_its_documents_keep_both_counts() -> None:
    """Partitions' partial ratios (numerator in `sum`, denominator in `count`) merge into the
    window's; the average of the partial ratios would not be it."""
    first = Aggregate(count=3, total=1.0, offsets={0: 9})  # 1 of 3
    second = Aggregate(count=1, total=1.0, offsets={1: 4})  # 1 of 1
    merged = first.merge(second)
    assert merged.value("ratio", 3600) == 0.5  # 2 of 4, not (1/3 + 1) / 2
    body = build_metric_fields("p", aggregation="ratio", interpolation="linear", group_by=[],
                               window=(0, 3_600_000), group=(), agg=merged)  # fmt: skip
    assert (body["value"], body["numerator"], body["denominator"]) == (0.5, 2, 4)
    restored = Aggregate.from_fields(json.loads(json.dumps(body)))
    assert restored.value("ratio", 3600) == 0.5
    plain = build_metric_fields("p", aggregation="count", interpolation="linear", group_by=[],
                                window=(0, 3_600_000), group=(), agg=merged)  # fmt: skip
    assert "numerator" not in plain


def test_reference_windows_late_and_dead_letters() -> None:
    spec = MetricPipelineSpec.model_validate({
        "source": {"tag": "a"},
        "metric": {"aggregation": "max", "valueField": "v", "window": "1m",
                   "allowedLateness": "10s"},
    })  # fmt: skip

    def rec(second: int, v: float) -> bytes:
        return json.dumps({"time": f"2020-01-01T00:{second // 60:02d}:{second % 60:02d}Z",
                           "v": v}).encode()  # fmt: skip

    records = [
        (0, 0, rec(5, 1.0)), (0, 1, rec(65, 2.0)), (0, 2, rec(75, 3.0)),
        (0, 3, rec(30, 9.0)),  # window [0,60) ends at 60; 60 + 10 <= 75: late
        (1, 0, rec(30, 4.0)),  # another partition has its own watermark: on time
        (1, 1, b"{oops"),
    ]  # fmt: skip
    result = compute_reference(spec, records)
    assert result.dead_letters == {"late": 1, "malformed_json": 1}
    minute0 = 1577836800000
    assert result.windows[(minute0, ())].value("max", 60) == 4.0
    assert result.windows[(minute0 + 60_000, ())].count == 2


def test_partition_state_late_and_replay() -> None:
    state = PartitionState(0, watermark_ms=100_000)
    assert state.is_late(0, 60_000, 10_000)  # 0 + 60s + 10s <= 100s
    assert not state.is_late(60_000, 60_000, 10_000)
    state.remember((60_000, ()), Aggregate(max_offset=41))
    assert state.included((60_000, ()), 41)
    assert not state.included((60_000, ()), 42)


@pytest.mark.parametrize(
    ("states", "count", "settled", "expected"),
    [
        ([{"partition": 0, "watermark_ms": 5, "caught_up": False}], 2, 9, None),  # p1 unknown
        ([{"partition": 0, "watermark_ms": 5, "caught_up": False},
          {"partition": 1, "watermark_ms": 9, "caught_up": False}], 2, None, 5),
        # p0 idle: it vouches for what p1 had reached one idle timeout ago, no more
        ([{"partition": 0, "watermark_ms": 5, "caught_up": True},
          {"partition": 1, "watermark_ms": 9, "caught_up": False}], 2, 7, 7),
        ([{"partition": 0, "watermark_ms": 5, "caught_up": True},
          {"partition": 1, "watermark_ms": 9, "caught_up": False}], 2, 12, 9),
        ([{"partition": 0, "watermark_ms": 5, "caught_up": True},
          {"partition": 1, "watermark_ms": 9, "caught_up": False}], 2, None, None),
        # all idle for 10 s (timeout 5 s): event time followed the clock, 10 s - 5 s behind
        ([{"partition": 0, "watermark_ms": 5, "caught_up": True},
          {"partition": 1, "watermark_ms": 9, "caught_up": True}], 2, None, 5_000),
        ([{"partition": 0, "watermark_ms": None, "caught_up": True},
          {"partition": 1, "watermark_ms": None, "caught_up": False}], 2, 9, None),
    ],
)  # fmt: skip
def test_pipeline_watermark(
    states: list[dict[str, object]], count: int, settled: int | None, expected: int | None
) -> None:
    idle = [{**s, "idle_since_ms": 0 if s["caught_up"] else None} for s in states]
    found = decide_pipeline_watermark(
        idle, count, now_ms=10_000, idle_timeout_ms=5_000, settled_ms=settled
    )
    assert found == expected


def test_recently_caught_up_partitions_still_hold_the_watermark() -> None:
    states: list[dict[str, object]] = [
        {"partition": 0, "watermark_ms": 5, "caught_up": True, "idle_since_ms": 8_000},
        {"partition": 1, "watermark_ms": 9, "caught_up": True, "idle_since_ms": 0},
    ]
    # p0 became idle 2 s ago: it may still receive records for its open windows.
    assert decide_pipeline_watermark(states, 2, 10_000, 5_000, settled_ms=9) == 5
    # both idle now: p1's mark follows the clock (idle 20 s, 5 s of it the timeout)
    assert decide_pipeline_watermark(states, 2, now_ms=20_000, idle_timeout_ms=5_000) == 15_000


def test_a_stale_caught_up_state_holds_the_watermark_once_new_records_arrived() -> None:
    """Consumers stopped and restarted (or a switch back from batch): partition 1's state still
    says caught up at offset 40, but the log now ends at 90: it must hold the watermark back
    until it has read those records, though partition 0 already moved on."""
    states: list[dict[str, object]] = [
        {"partition": 0, "watermark_ms": 9_000, "caught_up": False, "idle_since_ms": None,
         "committed_offset": 70},
        {"partition": 1, "watermark_ms": 2_000, "caught_up": True, "idle_since_ms": 0,
         "committed_offset": 40},
    ]  # fmt: skip
    stale = decide_pipeline_watermark(states, 2, 100_000, 5_000, log_end={0: 80, 1: 90})
    assert stale == 2_000
    ends = {0: 80, 1: 40}
    assert decide_pipeline_watermark(states, 2, 100_000, 5_000, ends, settled_ms=9_000) == 9_000
    assert decide_pipeline_watermark(states, 2, 100_000, 5_000, settled_ms=9_000) == 9_000


@pytest.mark.parametrize("method", ["linear", "lower", "higher", "nearest"])
@pytest.mark.parametrize("n", [1, 2, 15, 16, 1_000])
def test_each_interpolation_matches_numpy(method: Interpolation, n: int) -> None:
    """numpy names and defines the methods; the exact value equals its, the sketch's is
    within 1 % of it (positive values: both neighbours of a position have the same sign)."""
    rng = random.Random(n)
    values = [rng.lognormvariate(2, 1) for _ in range(n)]
    sketch = QuantileSketch(0.01)
    for v in values:
        sketch.add(v)
    for q in (0.5, 0.9, 0.95, 0.99):
        expected = float(np.quantile(values, q, method=method))
        assert exact_quantile(values, q, method) == pytest.approx(expected, rel=1e-12)
        estimate = sketch.quantile(q, method)
        assert estimate is not None
        assert abs(estimate - expected) <= 0.01 * abs(expected) + 1e-12, (q, estimate, expected)


def test_linear_and_lower_differ_where_users_would_see_it() -> None:
    """Fifteen values: p95 sits at position 13.3; `lower` reports the 14th value, `linear`
    30 % of the way to the 15th (what numpy, Spark's percentile and dashboards report)."""
    values = [float(v) for v in range(1, 15)] + [100.0]
    assert exact_quantile(values, 0.95, "lower") == 14.0
    assert exact_quantile(values, 0.95, "linear") == pytest.approx(14.0 + 0.3 * 86.0)
    with pytest.raises(ValueError, match="unknown percentile interpolation"):
        exact_quantile(values, 0.95, "cubic")


def test_the_spec_defaults_to_linear_and_refuses_other_methods() -> None:
    base = {"source": {"tag": "t"}, "metric": {"aggregation": "p95", "valueField": "v"}}
    assert MetricPipelineSpec.model_validate(base).metric.percentile_interpolation == "linear"
    lower = {**base, "metric": {**base["metric"], "percentileInterpolation": "lower"}}
    assert MetricPipelineSpec.model_validate(lower).metric.percentile_interpolation == "lower"
    with pytest.raises(ValueError, match="percentileInterpolation"):
        MetricPipelineSpec.model_validate(
            {**base, "metric": {**base["metric"], "percentileInterpolation": "midpoint"}}
        )
