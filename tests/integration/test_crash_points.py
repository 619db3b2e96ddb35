"""Crashes that provably land where they matter: the consumer kills itself (kill -9, its Spark
JVM with it) at a named point of its write path (`METRICPIPE_FAULT_EXIT_AT`, test-only), the
test proves from the outside that the crash left the sink ahead of Kafka's committed offsets
or of the pipeline's saved progress, a restarted consumer replays and its replay counters move,
and in the end the sink equals the independent oracle: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any

from consumers import (
    ConsumerProcesses,
    Pipeline,
    assert_matches_reference,
    committed_offsets,
    create_topics,
    make_pipeline,
    metric_positive,
    produce,
    read_topic,
    wait_consumed,
    wait_until_finalized,
)
from helpers import free_port, wait_for
from metricpipe_devstack.env import StackEnv

MINUTE = 60_000
BASE = 1_700_000_000_000 // MINUTE * MINUTE  # event times long past: windows close at once
SPEC: dict[str, Any] = {
    "source": {"tag": "crash"},
    "metric": {"aggregation": "sum", "valueField": "v", "groupBy": ["k"], "window": "1m",
               "allowedLateness": "10s"},
}  # fmt: skip
# The keys put every record on one partition of two: the other stays empty, and must not hold
# the pipeline watermark back once idle (5 s here, 60 s by default).
ENV = {"METRICPIPE_MAX_BATCH_RECORDS": "100", "METRICPIPE_SESSION_TIMEOUT_MS": "6000",
       "METRICPIPE_IDLE_TIMEOUT_SECONDS": "5"}  # fmt: skip
SKIPPED = "metricpipe_consumer_records_replay_skipped_total"
REWRITTEN = "metricpipe_consumer_finals_rewritten_total"


def chunk(minutes: range) -> list[tuple[bytes, bytes]]:
    """A record every 2 s of event time, keyed over both partitions; values include 0 and
    negatives (a lost or doubled 0 shows in the count, not the sum)."""
    out = []
    for second in range(minutes.start * 60, minutes.stop * 60, 2):
        at = BASE + second * 1000
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at / 1000)) + "Z"
        group = "abc"[second % 3]
        value = float((second * 7) % 11 - 3)
        out.append((group.encode(), json.dumps({"time": when, "k": group, "v": value}).encode()))
    return out


def crash_at(processes: ConsumerProcesses, pipeline: Pipeline, point: str) -> None:
    process = processes.start(pipeline, METRICPIPE_FAULT_EXIT_AT=point, **ENV)
    assert process.wait(timeout=240) == -9, processes.logs()
    log_text = processes.running[-1][1].read_text(errors="replace")
    assert "fault injected" in log_text, processes.logs()
    assert point in log_text, processes.logs()


def recover(
    stack: StackEnv, processes: ConsumerProcesses, pipeline: Pipeline, topic: str, replayed: str
) -> None:
    """A clean consumer takes over, consumes everything, and its replay counter `replayed`
    moves (the restart found work of the crashed one in the sink and did not redo it)."""
    port = free_port()
    process = processes.start(pipeline, METRICPIPE_METRICS_PORT=str(port), **ENV)
    wait_consumed(stack, pipeline, topic, processes, timeout=240)
    wait_for(partial(metric_positive, port, replayed), 120, f"{replayed} > 0")
    process.terminate()
    assert process.wait(timeout=60) == 0


def sink_offsets(pipeline: Pipeline) -> tuple[dict[int, int], dict[int, int]]:
    """(highest offset any partial holds, the partition state's resume offset) per partition."""
    pipeline.sink.refresh()
    partials = pipeline.sink.search(pipeline.sink.index, {"term": {"final": False}}, 10_000)
    held: dict[int, int] = {}
    for doc in partials:
        partition = int(doc["partition"])
        held[partition] = max(held.get(partition, -1), int(doc["max_offset"]))
    states = pipeline.sink.search(pipeline.sink.state_index, {"term": {"kind": "partition"}})
    return held, {int(d["partition"]): int(d["committed_offset"]) for d in states}


def test_crashes_at_each_write_point_replay_and_lose_nothing(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    topic = f"{unique_name}-crash"
    create_topics(stack, topic, 2)
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, SPEC, "elasticsearch")

    # 1. After the batch's partials are written, before its state write and offset commit.
    produce(stack, topic, chunk(range(0, 5)))
    crash_at(processes, pipeline, "after_partials_write")
    held, resume = sink_offsets(pipeline)
    kafka = committed_offsets(stack, pipeline.group, topic)
    ahead = [p for p, o in held.items() if o >= max(resume.get(p, 0), kafka[p])]
    assert ahead, f"the crash left no partial ahead: {held} {resume} {kafka}"
    recover(stack, processes, pipeline, topic, SKIPPED)

    # 2. After the partition states are written, before the offset commit.
    produce(stack, topic, chunk(range(5, 10)))
    crash_at(processes, pipeline, "after_state_write")
    _, resume = sink_offsets(pipeline)
    kafka = committed_offsets(stack, pipeline.group, topic)
    assert any(o > max(kafka[p], 0) for p, o in resume.items()), (resume, kafka)
    recover(stack, processes, pipeline, topic, SKIPPED)

    # 3. In a finalisation round: finals written, the round's progress not saved.
    produce(stack, topic, chunk(range(10, 15)))
    crash_at(processes, pipeline, "mid_finalize")
    pipeline.sink.refresh()
    finals = pipeline.sink.search(pipeline.sink.index, {"term": {"final": True}}, 10_000)
    progress = pipeline.sink.search(pipeline.sink.state_index, {"term": {"kind": "pipeline"}})
    saved = int(progress[0]["finalized_through_ms"]) if progress else -(2**62)
    assert max(int(d["window_end_ms"]) for d in finals) > saved, "no final beyond the progress"
    recover(stack, processes, pipeline, topic, REWRITTEN)  # the round was repeated

    # The sink equals the oracle, window by window (finals once each: sink_results checks).
    processes.start(pipeline, **ENV)
    expected = pipeline.expected(read_topic(stack, topic))
    assert expected.dead_letters == {}
    assert expected.filtered == 0
    through = BASE + 14 * MINUTE
    wait_until_finalized(pipeline, through, timeout=240)
    assert assert_matches_reference(pipeline, expected, through) >= 14 * 3
