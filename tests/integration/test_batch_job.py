"""Batch mode on real data: the Apache access log replayed into Kafka with its original
timestamps; the batch job computes every hourly window with Spark's Kafka batch source (by
timestamp) into Elasticsearch; the final documents equal the reference, and re-running windows
(in-process and through the `batch` command) gives identical documents, never a second one.
Missed runs are made up: progress (the state index's `finalized_through_ms`, shared with the
stream finalizer) says where the next run starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from consumers import (
    Pipeline,
    assert_matches_reference,
    create_topics,
    make_pipeline,
    produce,
    read_topic,
    sink_results,
)
from metricpipe_consumers.batch import BatchJob
from metricpipe_consumers.document import PipelineDocument
from metricpipe_consumers.documents import iso
from metricpipe_consumers.engine import SparkAggregator
from metricpipe_consumers.records import parse_apache_combined, parse_event_time
from metricpipe_consumers.reference import compute_reference
from metricpipe_devstack.datasets import DatasetMissingError, iter_access_log_lines
from metricpipe_devstack.env import StackEnv

HOUR_MS = 3_600_000
SPEC = {
    "mode": "batch",
    "source": {"tag": "web", "format": "apache_combined"},
    "metric": {"aggregation": "count", "eventTime": {"field": "time", "format": "clf"},
               "window": "1h", "allowedLateness": "10m", "groupBy": ["status"]},
}  # fmt: skip
CHANGING = ("finalized_at", "delay_seconds")  # when it ran, not what it computed


def with_kafka_times(lines: list[str]) -> list[tuple[None, bytes, int]]:
    """Each line stamped with its request time; a line the parser rejects (the log has
    truncated ones) with its predecessor's, as a shipper stamping arrival time would."""
    stamped, last = [], 0
    for line in lines:
        record = parse_apache_combined(line)
        if isinstance(record, dict):
            last = parse_event_time(record["time"], "clf")
        stamped.append((None, line.encode(), last))
    return stamped


def comparable(finals: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {k: {f: v for f, v in doc.items() if f not in CHANGING} for k, doc in finals.items()}


def test_every_window_equals_the_reference_and_reruns_replace(
    stack: StackEnv, tmp_path: Path, unique_name: str
) -> None:
    try:
        lines = list(iter_access_log_lines(stack.data_dir))
    except DatasetMissingError as error:
        pytest.skip(str(error))
    topic = f"{unique_name}-batch"
    create_topics(stack, topic, 3)
    produce(stack, topic, with_kafka_times(lines))
    pipeline: Pipeline = make_pipeline(stack, tmp_path, unique_name, topic, SPEC, "elasticsearch")
    reference = compute_reference(pipeline.spec, read_topic(stack, topic))
    assert "late" not in reference.dead_letters  # the replay is in order: nothing is late
    windows = sorted({start for start, _ in reference.windows})
    assert len(windows) > 24, "the log spans days of hourly windows"
    engine = SparkAggregator("local[1]", jars=list(stack.spark_kafka_jars))
    try:
        job = BatchJob(PipelineDocument.model_validate(pipeline.document), pipeline.sink, engine)
        # The first run of a new pipeline computes the newest closed window only; the next
        # run (missed schedules in between) makes up every window since, 24 per run.
        lateness = 10 * 60_000
        reports = job.run_due(windows[0] + HOUR_MS + lateness, limit=24)
        assert [r.window_start_ms for r in reports] == [windows[0]]
        runs = 1
        while batch := job.run_due(windows[-1] + HOUR_MS + lateness, limit=24):
            assert len(batch) <= 24
            reports += batch
            runs += 1
        every_hour = list(range(windows[0], windows[-1] + 1, HOUR_MS))
        assert [r.window_start_ms for r in reports] == every_hour  # none skipped, none twice
        print(f"{len(every_hour)} windows in {runs} runs, {sum(r.seconds for r in reports):.1f} s")
        assert sum(r.counted for r in reports) == sum(w.count for w in reference.windows.values())
        dead = sum((r.dead_letters for r in reports), Counter[str]())
        assert dead == reference.dead_letters
        assert_matches_reference(pipeline, reference, windows[-1] + HOUR_MS)
        first, _ = sink_results(pipeline)
        assert len(first) == len(reference.windows)
        for start in windows[:3]:  # re-run: the same documents, replaced, not added
            job.run(start)
    finally:
        engine.stop()
    again, _ = sink_results(pipeline)
    assert comparable(again) == comparable(first)
    # The CronJob's command, as a process: the window given as an ISO time; a JSON report.
    window = windows[len(windows) // 2]
    finished = subprocess.run(
        [sys.executable, "-m", "metricpipe_consumers", "batch", "--window-start", iso(window)],
        env={**os.environ, "METRICPIPE_PIPELINE_CONFIG": str(pipeline.document_path),
             "METRICPIPE_SPARK_JARS": ",".join(stack.spark_kafka_jars),
             "METRICPIPE_SPARK_MASTER": "local[1]", "METRICPIPE_METRICS_PORT": "0"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    expected = sum(w.count for (start, _), w in reference.windows.items() if start == window)
    assert (report["window_start_ms"], report["counted"]) == (window, expected), report
    final, _ = sink_results(pipeline)
    assert comparable(final) == comparable(first)
