"""Batch mode on real data: the Apache access log replayed into Kafka with its original
timestamps; the batch job computes every hourly window of each method's 5xx share (a ratio)
with Spark's Kafka batch source (by timestamp) into Elasticsearch, and, in the stream → batch
→ stream switch, into OpenSearch; the final documents equal the reference, and re-running windows
(in-process and through the `batch` command) gives identical documents, never a second one.
Missed runs are made up: progress (the state index's `finalized_through_ms`, shared with the
stream finalizer) says where the next run starts."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import oracle
from consumers import (
    ConsumerProcesses,
    Pipeline,
    assert_matches_reference,
    create_topics,
    dead_letter_reasons,
    make_pipeline,
    produce,
    read_topic,
    sink_results,
    wait_consumed,
    wait_until_finalized,
    with_kafka_times,
)
from kafka_users import (
    Tenant,
    create_scram_user,
    grant_consumer_acls,
    secured_endpoint,
    write_scram_secret,
)
from metricpipe_consumers.batch import BatchJob
from metricpipe_consumers.deadletters import DeadLetterWriter
from metricpipe_consumers.document import PipelineDocument
from metricpipe_consumers.documents import iso
from metricpipe_consumers.engine import SparkAggregator
from metricpipe_consumers.kafka_access import ensure_kafka_access
from metricpipe_devstack.env import StackEnv
from shared_data import access_log_lines

HOUR_MS = 3_600_000
BASE = 1_500_000_000_000 // HOUR_MS * HOUR_MS  # event times of the two-clock test
# the share of server errors among each method's requests, per hour
SPEC = {
    "mode": "batch",
    "source": {"tag": "web", "format": "apache_combined"},
    "metric": {"aggregation": "ratio", "eventTime": {"field": "time", "format": "clf"},
               "numerator": [{"field": "status", "matches": "^5"}],
               "window": "1h", "allowedLateness": "10m", "groupBy": ["method"]},
}  # fmt: skip
CHANGING = ("finalized_at", "delay_seconds")  # when it ran, not what it computed


def build_batch_job(
    stack: StackEnv, pipeline: Pipeline, engine: SparkAggregator, keystore_dir: Path
) -> BatchJob:
    """The batch run's job object, as `python -m metricpipe_consumers batch` builds it, on the
    connection pipeline.json names (the plaintext listener unless a test secured it)."""
    document = PipelineDocument.model_validate(pipeline.document)
    kafka = ensure_kafka_access(document.kafka, keystore_dir=keystore_dir)
    dead_letters = DeadLetterWriter(
        kafka.settings, document.dead_letter_topic, document.pipeline.key
    )
    return BatchJob(document, pipeline.sink, engine, dead_letters, kafka)


def comparable(finals: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {k: {f: v for f, v in doc.items() if f not in CHANGING} for k, doc in finals.items()}


def test_every_window_equals_the_reference_and_reruns_replace(
    stack: StackEnv, tmp_path: Path, unique_name: str
) -> None:
    lines = access_log_lines(stack.data_dir)
    topic = f"{unique_name}-batch"
    create_topics(stack, topic, 3, keep_forever=True)
    produce(stack, topic, with_kafka_times(lines))
    pipeline: Pipeline = make_pipeline(stack, tmp_path, unique_name, topic, SPEC, "elasticsearch")
    # over SASL_SSL as a SCRAM user with the batch ACLs of docs/kafka-security.md (no group):
    # Spark's Kafka source, the first-record probe and the dead letters, here and in the CLI run
    user = f"{unique_name}-batch"
    password = create_scram_user(stack, user)
    grant_consumer_acls(stack, f"User:{user}", Tenant(topic, "", f"{topic}.dlq", ""), group=False)
    secret = write_scram_secret(tmp_path / "kafka-secret", stack, user, password)
    pipeline.document["kafka"] = secured_endpoint(stack.kafka_sasl_bootstrap, "SASL_SSL", secret)
    pipeline.document_path.write_text(json.dumps(pipeline.document))
    records = read_topic(stack, topic)
    reference = pipeline.expected(records)
    assert "late" not in reference.dead_letters  # the replay is in order: nothing is late
    windows = sorted({start for start, _ in reference.windows})
    # the first run may start a window early: the oldest record could belong to it
    oldest = min(r.timestamp_ms for r in records) - 10 * 60_000
    assert len(windows) > 24, "the log spans days of hourly windows"
    engine = SparkAggregator("local[1]", jars=list(stack.spark_kafka_jars))
    try:
        job = build_batch_job(stack, pipeline, engine, tmp_path)
        # A new pipeline's first run starts at its topic's oldest record; each run makes up
        # at most 24 windows, the next run goes on from the progress it recorded.
        now = windows[-1] + HOUR_MS + 10 * 60_000
        reports, runs = [], 0
        while batch := job.run_due(now, limit=24):
            assert len(batch) <= 24
            reports += batch
            runs += 1
        every_hour = list(range(oldest // HOUR_MS * HOUR_MS, windows[-1] + 1, HOUR_MS))
        assert [r.window_start_ms for r in reports] == every_hour  # none skipped, none twice
        print(f"{len(every_hour)} windows in {runs} runs, {sum(r.seconds for r in reports):.1f} s")
        assert sum(r.counted for r in reports) == sum(w.count for w in reference.windows.values())
        dead = sum((r.dead_letters for r in reports), Counter[str]())
        assert dead == reference.dead_letters
        assert dead_letter_reasons(stack, f"{topic}.dlq", f"it/{unique_name}") == dead
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
    assert f"SASL_SSL SCRAM-SHA-512 user {user}" in finished.stderr + finished.stdout
    assert password.get_secret_value() not in finished.stderr + finished.stdout
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    expected = sum(w.count for (start, _), w in reference.windows.items() if start == window)
    assert (report["window_start_ms"], report["counted"]) == (window, expected), report
    final, _ = sink_results(pipeline)
    assert comparable(final) == comparable(first)


def arrivals(seed: int, count: int) -> list[tuple[bytes, bytes, int]]:
    """Records whose Kafka time is their event time plus a realistic delay, in arrival order:
    most within seconds, some after their window's end + lateness, some before their window
    opened (event time ahead of arrival, within the future skew), a few beyond the skew."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        event = BASE + i * 3_000
        draw = rng.random()
        if draw < 0.80:
            delay = rng.randint(0, 30_000)
        elif draw < 0.90:
            delay = rng.randint(60_000, 240_000)  # late when past its window's end + 1 min
        elif draw < 0.98:
            delay = -rng.randint(10_000, 270_000)  # early: may arrive before its window opens
        else:
            delay = -rng.randint(330_000, 500_000)  # beyond the 5 min future skew
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event / 1000)) + "Z"
        group = rng.choice(["a", "b", "", "A"])  # "A" and "a" are two groups
        body = json.dumps({"time": when, "k": group, "v": rng.randint(-5, 20)}).encode()
        out.append((group.encode(), body, event + delay))
    return sorted(out, key=lambda record: record[2])


def test_both_clocks_every_record_counted_once_or_dead_lettered(
    stack: StackEnv, tmp_path: Path, unique_name: str
) -> None:
    """Batch mode where Kafka time is not event time: each record is counted in its event
    window exactly once, or dead-lettered (`late`, `future`); none is silently dropped. The
    oracle models both clocks (docs/batch.md)."""
    topic = f"{unique_name}-clocks"
    create_topics(stack, topic, 2, keep_forever=True)
    stream = arrivals(seed=5, count=1_200)  # an hour of event time, 10 min windows
    produce(stack, topic, stream)
    spec = {"mode": "batch", "source": {"tag": "clocks"},
            "metric": {"aggregation": "sum", "valueField": "v", "groupBy": ["k"],
                       "window": "10m", "allowedLateness": "1m"}}  # fmt: skip
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, spec, "elasticsearch")
    records = read_topic(stack, topic)
    expected = pipeline.expected(records)
    window = 10 * 60_000
    early = sum(1 for r in stream if r[2] < json_time(r[1]) // window * window)
    assert early > 0, "no record arrived before its window opened"
    assert expected.dead_letters["late"] > 0
    assert expected.dead_letters["future"] > 0
    counted = sum(w.count for w in expected.windows.values())
    assert counted + sum(expected.dead_letters.values()) == len(stream)
    last_arrival = max(r.timestamp_ms for r in records)
    now = (last_arrival // window + 1) * window + 60_000  # the last arrival's window closed
    engine = SparkAggregator("local[1]", jars=list(stack.spark_kafka_jars))
    try:
        reports = build_batch_job(stack, pipeline, engine, tmp_path).run_due(now, limit=100)
    finally:
        engine.stop()
    assert sum(r.counted for r in reports) == counted
    dead = sum((r.dead_letters for r in reports), Counter[str]())
    assert dead == expected.dead_letters
    assert dead_letter_reasons(stack, f"{topic}.dlq", f"it/{unique_name}") == dead
    through = max(start for start, _ in expected.windows) + window
    assert assert_matches_reference(pipeline, expected, through) == len(expected.windows)


def json_time(value: bytes) -> int:
    """Event time of an `arrivals` record (its RFC 3339 `time`), read by the oracle."""
    return oracle.event_ms(json.loads(value)["time"], "rfc3339", None)


def test_stream_batch_stream_switch_counts_every_window_once(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    """The log in three parts: the stream consumer computes the first; the pipeline switches
    to batch (its consumers stop on SIGTERM, as the Deployment's pods do) and a run computes
    the second; it switches back to stream and the consumers, resuming at their committed
    offsets, compute the third. Every window has exactly one final document, equal to the
    reference over the whole log, and every dead letter is in the DLQ once."""
    stamped = with_kafka_times(access_log_lines(stack.data_dir))
    # The log parses cleanly: a line cut to 40 bytes after every 400th gives each phase its
    # dead letters (malformed_line), sent at the same Kafka time as the line it copies.
    cut = [(None, value[:40], at) for _, value, at in stamped[::400]]
    stamped = sorted(stamped + cut, key=lambda record: record[2])
    first, last = stamped[0][2], stamped[-1][2]
    t1 = (first + (last - first) // 3) // HOUR_MS * HOUR_MS
    t2 = (first + 2 * (last - first) // 3) // HOUR_MS * HOUR_MS
    parts = [[r for r in stamped if lo <= r[2] < hi]
             for lo, hi in ((0, t1), (t1, t2), (t2, 2**62))]  # fmt: skip
    topic = f"{unique_name}-switch"
    create_topics(stack, topic, 3, keep_forever=True)
    spec = {**SPEC, "mode": "stream"}
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, spec, "opensearch")
    lateness = 10 * 60_000

    def through(part: list[tuple[None, bytes, int]]) -> int:
        """What the stream finalizer reaches once it has read a part (all caught up)."""
        return (max(r[2] for r in part) - lateness) // HOUR_MS * HOUR_MS

    produce(stack, topic, parts[0])  # 1. stream
    processes.start(pipeline, METRICPIPE_IDLE_TIMEOUT_SECONDS="5")
    wait_consumed(stack, pipeline, topic, processes)
    wait_until_finalized(pipeline, through(parts[0]))
    processes.stop_all()

    produce(stack, topic, parts[1])  # 2. batch, from where the stream finalizer stopped
    engine = SparkAggregator("local[1]", jars=list(stack.spark_kafka_jars))
    try:
        job = build_batch_job(stack, pipeline, engine, tmp_path)
        reports = job.run_due(t2 + lateness, limit=1000)
    finally:
        engine.stop()
    assert reports[0].window_start_ms == through(parts[0])
    assert reports[-1].window_start_ms == t2 - HOUR_MS

    produce(stack, topic, parts[2])  # 3. stream again, from its committed offsets
    processes.start(pipeline, METRICPIPE_IDLE_TIMEOUT_SECONDS="5")
    wait_consumed(stack, pipeline, topic, processes)
    end = through(parts[2])
    wait_until_finalized(pipeline, end)

    reference = pipeline.expected(read_topic(stack, topic))
    assert "late" not in reference.dead_letters
    assert assert_matches_reference(pipeline, reference, end) > 24  # one final per window
    dead = dead_letter_reasons(stack, f"{topic}.dlq", f"it/{unique_name}")
    assert dead == reference.dead_letters, "a dead letter lost or sent twice at a switch"
    assert reference.dead_letters.get("malformed_line", 0) >= len(cut)  # the cut lines
