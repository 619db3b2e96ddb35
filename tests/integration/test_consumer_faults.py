"""Bad input, crashes and rebalances: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import random
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

import oracle
import shared_data
from consumers import (
    ConsumerProcesses,
    assert_matches_reference,
    commit_offsets,
    committed_everything,
    create_topics,
    dead_letter_reasons,
    make_pipeline,
    metric_positive,
    produce,
    read_topic,
    sink_results,
    wait_consumed,
    wait_until_finalized,
)
from helpers import free_port, wait_for
from metricpipe_devstack.env import StackEnv

HOUR = 3_600_000
ASSIGNED = "metricpipe_consumer_assigned_partitions"
CONSUMED = "metricpipe_consumer_records_consumed_total"
SPEC: dict[str, Any] = {
    "source": {"tag": "atlas", "filters": [{"field": "rtt", "matches": "^[0-9]"}]},
    "metric": {"aggregation": "p95", "valueField": "rtt", "groupBy": ["probe"]},
}


def rtt_records(stack: StackEnv, probes: int) -> list[dict[str, Any]]:
    records = shared_data.rtt_records(stack.data_dir)
    keep = sorted({str(r["probe"]) for r in records})[:probes]
    return sorted((r for r in records if r["probe"] in keep), key=lambda r: str(r["time"]))


def encoded(records: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(str(r["probe"]).encode(), json.dumps(r).encode()) for r in records]


def finish_and_compare(
    stack: StackEnv, pipeline: Any, topic: str, processes: ConsumerProcesses
) -> None:
    wait_consumed(stack, pipeline, topic, processes, timeout=400)
    records = read_topic(stack, topic)
    reference = pipeline.expected(records)
    last_start = max(start for start, _ in reference.windows)
    through = (last_start - 5 * 60_000) // HOUR * HOUR
    wait_until_finalized(pipeline, through, timeout=240)
    assert assert_matches_reference(pipeline, reference, through) > 0
    assert dead_letter_reasons(stack, f"{topic}.dlq", f"it/{pipeline.name}") == (
        reference.dead_letters
    )


def test_kill_minus_nine_during_the_replay(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    records = encoded(rtt_records(stack, probes=20))
    topic = f"{unique_name}-chaos"
    create_topics(stack, topic, 6)
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, SPEC, "elasticsearch")
    # Kills on a timer, with small batches: they land at random points of the write path
    # (test_crash_points.py lands one at each named point and proves where it landed).
    env = {
        "METRICPIPE_MAX_BATCH_RECORDS": "5000",
        "METRICPIPE_SESSION_TIMEOUT_MS": "10000",
        "METRICPIPE_IDLE_TIMEOUT_SECONDS": "5",
    }  # partitions idle between chunks too
    replicas = {slot: processes.start(pipeline, METRICPIPE_GROUP_INSTANCE_ID=f"r{slot}", **env)
                for slot in range(3)}  # fmt: skip
    rng = random.Random(11)
    chunks = [
        records[i : i + len(records) // 8 + 1]
        for i in range(0, len(records), len(records) // 8 + 1)
    ]
    for chunk in chunks:
        produce(stack, topic, chunk)
        time.sleep(rng.uniform(2.0, 6.0))
        slot = rng.randrange(3)
        processes.kill(replicas[slot])  # kill -9, then the "kubelet" restarts it
        replicas[slot] = processes.start(pipeline, METRICPIPE_GROUP_INSTANCE_ID=f"r{slot}", **env)
    finish_and_compare(stack, pipeline, topic, processes)


def test_a_commit_lost_after_the_sink_write_is_made_good(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    """A replica killed after its sink write and before its offset commit leaves Kafka's
    committed offset behind the sink's. The next owner skips those records (the sink holds
    them) and must still commit, or the group shows lag for ever once the input stops."""
    records = encoded(rtt_records(stack, probes=5))
    topic = f"{unique_name}-lostcommit"
    create_topics(stack, topic, 2)
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, SPEC, "elasticsearch")
    produce(stack, topic, records)
    first = processes.start(pipeline)
    wait_consumed(stack, pipeline, topic, processes, timeout=240)
    first.terminate()
    first.wait(timeout=60)
    before = sink_results(pipeline)
    # The crash window, reproduced exactly: the sink holds everything, Kafka's commit does not.
    commit_offsets(stack, pipeline.group, topic, {0: 0, 1: 0})
    assert not committed_everything(stack, pipeline.group, topic)
    processes.start(pipeline)
    wait_consumed(stack, pipeline, topic, processes, timeout=240)
    assert sink_results(pipeline) == before  # the skipped records were not counted again


def test_scale_one_three_one_mid_replay(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    records = encoded(rtt_records(stack, probes=20))
    topic = f"{unique_name}-scale"
    create_topics(stack, topic, 6)
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, SPEC, "opensearch")
    env = {"METRICPIPE_MAX_BATCH_RECORDS": "5000", "METRICPIPE_SESSION_TIMEOUT_MS": "10000",
           "METRICPIPE_IDLE_TIMEOUT_SECONDS": "5"}  # fmt: skip
    third = len(records) // 3
    first = processes.start(pipeline, **env)
    produce(stack, topic, records[:third])
    time.sleep(8)
    ports = [free_port() for _ in range(2)]
    extra = [processes.start(pipeline, METRICPIPE_METRICS_PORT=str(port), **env)
             for port in ports]  # fmt: skip
    for port in ports:  # each added replica owns partitions ...
        wait_for(partial(metric_positive, port, ASSIGNED), 120, f"partitions assigned on :{port}")
    produce(stack, topic, records[third : 2 * third])
    for port in ports:  # ... and processes their records
        wait_for(partial(metric_positive, port, CONSUMED), 120, f"records consumed on :{port}")
    for process in extra:  # graceful: SIGTERM finishes the batch, commits and leaves
        process.terminate()
        process.wait(timeout=60)
        assert process.returncode == 0
    produce(stack, topic, records[2 * third :])
    assert first.poll() is None
    finish_and_compare(stack, pipeline, topic, processes)


def test_every_kind_of_bad_record_is_dead_lettered(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    topic = f"{unique_name}-bad"
    create_topics(stack, topic, 2)
    spec = {"source": {"tag": "t"},
            "metric": {"aggregation": "sum", "valueField": "v", "groupBy": ["k"], "window": "1m",
                       "allowedLateness": "10s"}}  # fmt: skip
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, spec, "elasticsearch")
    base = 1_700_000_000_000 // 60_000 * 60_000

    def good(second: int, v: float) -> bytes:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base / 1000 + second))
        return json.dumps({"time": when, "k": "a", "v": v}).encode()

    bad = {
        "malformed_json": b'{"time": "2023-11-14T22:13:20Z", "k": "a", "v": ',
        "not_utf8": b"\xff\xfe\x00garbage",
        "oversize": json.dumps({"time": "x", "k": "a", "v": 1, "pad": "x" * 20_000}).encode(),
        "missing_field": json.dumps({"time": "2023-11-14T22:13:20Z", "v": 1}).encode(),
        "bad_type": json.dumps({"time": "2023-11-14T22:13:20Z", "k": "a", "v": "1"}).encode(),
        "bad_time": json.dumps({"time": "14 Nov 2023", "k": "a", "v": 1}).encode(),
    }
    stream: list[tuple[bytes, bytes]] = []
    expected_reasons: list[str] = []
    for second in range(0, 600, 3):
        stream.append((b"a", good(second, float(second))))
        if second % 30 == 0:
            reason = list(bad)[(second // 30) % len(bad)]
            stream.append((b"a", bad[reason]))
            expected_reasons.append(reason)
        if second % 90 == 0 and second >= 180:
            stream.append((b"a", good(second - 150, 1000.0)))  # 150 s old: window long closed
            expected_reasons.append("late")
    produce(stack, topic, stream)
    # one key: the other partition stays empty, and idle 5 s after the start
    processes.start(
        pipeline, METRICPIPE_MAX_RECORD_BYTES="10000", METRICPIPE_IDLE_TIMEOUT_SECONDS="5"
    )
    wait_consumed(stack, pipeline, topic, processes)
    records = read_topic(stack, topic)
    reference = pipeline.expected(records, limits=oracle.Limits(max_record_bytes=10_000))
    expected = {r: expected_reasons.count(r) for r in set(expected_reasons)}
    assert dict(reference.dead_letters) == expected  # the oracle agrees with the test's intent
    reasons = dead_letter_reasons(stack, f"{topic}.dlq", f"it/{unique_name}")
    assert dict(reasons) == expected
    # All good records are counted: the sum over every window equals the sum of good values.
    wait_until_finalized(pipeline, base + 8 * 60_000)
    pipeline.sink.refresh()
    finals = pipeline.sink.search(pipeline.sink.index, {"term": {"final": True}})
    partials = pipeline.sink.search(pipeline.sink.index, {"term": {"final": False}})
    still_open = [d for d in partials if d["window_start_ms"] >= base + 9 * 60_000]
    total = sum(d["sum"] for d in finals) + sum(d["sum"] for d in still_open)
    assert total == pytest.approx(sum(float(s) for s in range(0, 600, 3)))
    # ... and each one once (the sum alone would miss the good record whose value is 0)
    count = sum(int(d["count"]) for d in finals) + sum(int(d["count"]) for d in still_open)
    assert count == len(range(0, 600, 3))
    assert _dlq_sources(stack, f"{topic}.dlq") == len(expected_reasons)


def _dlq_sources(stack: StackEnv, topic: str) -> int:
    """Each dead letter names its source record; none is repeated."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": str(uuid.uuid4())})
    sources: list[str | bytes | None] = []
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        while len(sources) < high - low:
            message = consumer.poll(10)
            assert message is not None
            sources.append(dict(message.headers() or [])["metricpipe.source"])
    finally:
        consumer.close()
    assert len(set(sources)) == len(sources)
    return len(sources)
