"""The demo's pure parts: the pipelines scaled to its clock, the table and the summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from metricpipe_contract.durations import parse_duration
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_demo.pipelines import EXAMPLES, build_demo_pipeline, load_example
from metricpipe_demo.report import Sample, build_summary, describe_final
from metricpipe_demo.settings import DemoSettings

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "manifests" / "examples"


@pytest.mark.parametrize("name", EXAMPLES)
def test_demo_pipelines_are_the_examples_scaled_to_the_demo_clock(name: str) -> None:
    settings = DemoSettings()
    example = load_example(EXAMPLES_DIR, name)
    pipeline = build_demo_pipeline(example, settings)
    spec = MetricPipelineSpec.model_validate(pipeline["spec"])  # still a valid pipeline
    assert parse_duration(spec.metric.window) == 3600 / settings.speed  # one source hour
    assert parse_duration(spec.freshness.target) > parse_duration(spec.metric.allowed_lateness)
    assert spec.consumer.max_batch_records == settings.max_batch_records
    assert spec.topic.deletion_policy == "Delete"  # demo-down leaves no topic behind
    assert spec.metric.aggregation == example["spec"]["metric"]["aggregation"]  # same metric
    assert pipeline["metadata"] == {"name": name, "namespace": settings.namespace}
    assert example["spec"]["metric"]["window"] == "1h"  # the example itself is untouched


def sample(at: float, name: str, replicas: int, freshness: float | None) -> Sample:
    status = {"timeLag": "5s", "freshness": f"{freshness}s", "slo": "Met"}
    return Sample(at, name, replicas, 10, freshness, 12.4, 99.6, status)


def test_summary_counts_replica_minutes_and_freshness_against_the_target() -> None:
    samples = [sample(0, "a", 1, 10), sample(60, "a", 3, 200), sample(120, "a", 1, 20)]
    (replayed, line, events, event) = build_summary(samples, {"a": 180}, ["a: ScaledUp"], 500, 90)
    assert replayed == "replayed 500 records in 90 s"
    assert "replicas 1..3" in line
    assert "max freshness 200 s (target 180 s)" in line
    assert "met in 2/3 samples" in line
    assert "4.0 replica-minutes" in line  # 1 x 60 s + 3 x 60 s
    assert (events, event) == ("scaling events: 1", "  a: ScaledUp")


def test_a_final_ratio_is_printed_with_its_two_counts() -> None:
    ratio = {"window_start": "2015-05-17T10:00:00.000Z", "group_key": "", "metric": "ratio",
             "value": 0.002, "numerator": 1, "denominator": 500}  # fmt: skip
    assert (
        describe_final(ratio) == "2015-05-17T10:00:00.000Z (all records): ratio = 0.002 (1 of 500)"
    )
    avg = {"window_start": "2015-05-17T10:00:00.000Z", "group_key": "probe=7", "metric": "avg",
           "value": 23.5}  # fmt: skip
    assert describe_final(avg) == "2015-05-17T10:00:00.000Z probe=7: avg = 23.5"
