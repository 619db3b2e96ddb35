"""Poison pills on the real stack, with real consumer processes: a record larger than the
dead-letter topic was made for, a group value Elasticsearch refuses to index, and a crash
between the dead-letter flush and the state write. Each time the consumer keeps running (or
restarts once after the injected crash), commits past the bad record, dead-letters it exactly
once, and its numbers equal an oracle computed here over the good records."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from consumers import (
    ConsumerProcesses,
    Pipeline,
    fetch_end_offsets,
    header_texts,
    make_pipeline,
    sink_results,
    wait_consumed,
)
from metricpipe_devstack.env import StackEnv
from metricpipe_operator.reconcile.topic import TopicPlan, build_dead_letter_plan

MINUTE = 60_000
BASE = 1_700_000_000_000 // MINUTE * MINUTE
SPEC: dict[str, Any] = {
    "source": {"tag": "t"},
    "metric": {"aggregation": "sum", "valueField": "v", "groupBy": ["k"], "window": "1m",
               "allowedLateness": "10s"},
}  # fmt: skip
FAST = {"METRICPIPE_SESSION_TIMEOUT_MS": "6000"}
Expected = dict[tuple[int, str], tuple[int, float]]  # (window start, k) -> (count, sum)


# -- records and the oracle (nothing from the product) -----------------------------------------
def record(second: int, k: str, v: float) -> bytes:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE / 1000 + second))
    return json.dumps({"time": when, "k": k, "v": v}).encode()


def good_records(partition: int, seconds: range) -> list[tuple[int, bytes, float, int]]:
    """(partition, value, v, second) of good records, two groups."""
    return [(partition, record(s, "ab"[s % 2], float(s % 17)), float(s % 17), s) for s in seconds]


def oracle(goods: list[tuple[int, bytes, float, int]]) -> Expected:
    expected: dict[tuple[int, str], tuple[int, float]] = {}
    for _partition, _value, v, second in goods:
        key = ((BASE + second * 1000) // MINUTE * MINUTE, "ab"[second % 2])
        count, total = expected.get(key, (0, 0.0))
        expected[key] = (count + 1, total + v)
    return expected


def assert_sink_equals(pipeline: Pipeline, expected: Expected) -> None:
    """Final documents where windows are final, merged partials elsewhere: each (window, k)
    has the oracle's count and sum, and the sink has nothing the oracle does not."""
    finals, partials = sink_results(pipeline)
    got: dict[tuple[int, str], tuple[int, float]] = {}
    for (start, group), agg in partials.items():
        got[(start, group[0])] = (agg.count, agg.total)
    for (start, group), doc in finals.items():
        got[(start, group[0])] = (int(doc["count"]), float(doc["sum"]))
    assert got.keys() == expected.keys()
    for key, (count, total) in expected.items():
        assert got[key][0] == count, key
        assert got[key][1] == pytest.approx(total), key


# -- Kafka helpers -------------------------------------------------------------------------------
def create_topics(stack: StackEnv, topic: str, partitions: int, config: dict[str, str]) -> None:
    """The input topic and its DLQ as the operator plans them (`build_dead_letter_plan`)."""
    plan = TopicPlan(topic, partitions, 1, {"cleanup.policy": "delete", **config})
    dlq = build_dead_letter_plan(plan)
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    futures = admin.create_topics([
        NewTopic(p.name, p.partitions, p.replication_factor, config=p.config) for p in (plan, dlq)
    ])  # fmt: skip
    for future in futures.values():
        future.result(timeout=30)


def produce_to(stack: StackEnv, topic: str, records: list[tuple[int, bytes]]) -> None:
    """(partition, value) records, in order, each acknowledged."""
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 20,
                         "enable.idempotence": True, "message.max.bytes": 4_000_000})  # fmt: skip
    for partition, value in records:
        producer.produce(topic, value=value, partition=partition,
                         on_delivery=lambda e, _m: errors.append(e) if e else None)  # fmt: skip
        producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []


def read_letters(stack: StackEnv, dlq: str) -> list[dict[str, Any]]:
    """Every letter of every DLQ partition: its partition, headers and value size."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap,
                         "group.id": str(uuid.uuid4()), "enable.auto.commit": False})  # fmt: skip
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    letters: list[dict[str, Any]] = []
    try:
        for q in sorted(admin.list_topics(dlq, timeout=10).topics[dlq].partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(dlq, q), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(dlq, q, low)])
            seen = low
            while seen < high:
                message = consumer.poll(10)
                assert message is not None, "reading the DLQ stalled"
                if message.error() is not None:
                    continue
                headers = header_texts(message.headers())
                letters.append({"partition": q, "size": len(message.value() or b""), **headers})
                seen = (message.offset() or 0) + 1
    finally:
        consumer.close()
    return letters


def committed(stack: StackEnv, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return {tp.partition: tp.offset for tp in found}
    finally:
        consumer.close()


def coordinates(stream: list[tuple[int, bytes]], index: int) -> tuple[int, int]:
    """(partition, offset) the record at `index` of a freshly produced stream got."""
    partition = stream[index][0]
    return partition, sum(1 for p, _ in stream[:index] if p == partition)


def source_of(letter: dict[str, Any]) -> tuple[int, int]:
    _topic, partition, offset = letter["metricpipe.source"].rsplit("/", 2)
    return int(partition), int(offset)


# -- (a) a record larger than the DLQ takes, (b) a document the sink refuses ------------------
def test_one_consumer_survives_oversize_records_and_documents_the_sink_refuses(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    """One consumer process through three poison pills (one Spark start for both classes).

    (a) The input takes 3 MB records; the consumer's limit is 1 MiB, so a 2 MB record is
    `oversize`. The DLQ was configured with the input (3 MB + headers): the letter is the whole
    record. Then an admin lowers the DLQ's limit to Kafka's default behind the consumer's
    back: the next 2 MB record's letter is refused by Kafka, and the consumer sends a truncated
    copy that says so, instead of crash-looping.
    (b) A group value of 40,000 bytes (the consumer's key limit raised to 100,000):
    Elasticsearch refuses to index a keyword over 32,766 bytes. The records behind the refused
    partials go to the DLQ as `sink_rejected` with Elasticsearch's reason; the rest is written."""
    topic = f"{unique_name}-pills"
    create_topics(stack, topic, 2, {"max.message.bytes": str(3 * 1024 * 1024)})
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, SPEC, "elasticsearch")
    huge = json.dumps({"time": "x", "k": "a", "v": 1, "pad": "x" * 2_000_000}).encode()
    long_key = record(150, "k" * 40_000, 5.0)
    goods = good_records(0, range(0, 180, 2)) + good_records(1, range(1, 180, 2))
    part = [[(p, value) for p, value, _, s in goods if lo <= s < lo + 60] for lo in (0, 60, 120)]
    first = [*part[0][:40], (1, huge), *part[0][40:]]
    produce_to(stack, topic, first)
    process = processes.start(pipeline, METRICPIPE_MAX_GROUP_KEY_BYTES="100000", **FAST)
    wait_consumed(stack, pipeline, topic, processes)

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    dlq = ConfigResource(ConfigResource.Type.TOPIC, f"{topic}.dlq", incremental_configs=[
        ConfigEntry("max.message.bytes", "1048588", incremental_operation=AlterConfigOpType.SET)
    ])  # fmt: skip
    admin.incremental_alter_configs([dlq])[dlq].result(timeout=30)
    second = [*part[1][:10], (0, huge), *part[1][10:]]
    third = [*part[2][:15], (0, long_key), *part[2][15:45], (1, long_key), *part[2][45:]]
    produce_to(stack, topic, second + third)
    wait_consumed(stack, pipeline, topic, processes)

    assert process.poll() is None, processes.logs()
    assert len(processes.running) == 1  # one process throughout: no crash, no restart
    everything = first + second + third
    letters = read_letters(stack, f"{topic}.dlq")
    for letter in letters:
        assert letter["partition"] == source_of(letter)[0]  # input partition p -> DLQ p
    oversize = {x["partition"]: x for x in letters if x["metricpipe.reason"] == "oversize"}
    refused = [x for x in letters if x["metricpipe.reason"] == "sink_rejected"]
    assert len(oversize) + len(refused) == len(letters) == 4

    whole, cut = oversize[1], oversize[0]
    assert (source_of(whole), whole["size"]) == (coordinates(everything, 40), len(huge))
    assert "metricpipe.truncated" not in whole
    assert source_of(cut) == coordinates(everything, len(first) + 10)
    assert cut["metricpipe.truncated"] == "value"
    assert int(cut["metricpipe.original.bytes"]) == len(huge)
    assert 1_000_000 < cut["size"] < 1_048_588
    # the fallback ran: the limit was lowered behind the consumer's back
    assert "sending them smaller" in processes.logs(tail=10_000)

    at = len(first) + len(second)
    assert sorted(source_of(x) for x in refused) == [
        coordinates(everything, at + 15), coordinates(everything, at + 46)
    ]  # fmt: skip
    for letter in refused:
        assert letter["metricpipe.stage"] == "sink"
        assert letter["metricpipe.detail"].startswith("HTTP 400")
        # the sink's own words, about the group field (ES 9 names `group.k` or `group_key`)
        assert "failed to parse field [group" in letter["metricpipe.detail"]
    assert_sink_equals(pipeline, oracle(goods))


# -- (c) a crash between the dead-letter flush and the state write -----------------------------
def test_a_crash_after_the_dead_letter_flush_does_not_send_letters_twice(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    """kill -9 at the named point after the scan's letters are flushed, then (restarted) after
    the sink refusals' letters are flushed — both before the state write and the commit.
    The third process finishes: each bad record is in the DLQ once, the numbers equal the
    oracle's over the good records."""
    topic = f"{unique_name}-crash"
    create_topics(stack, topic, 2, {})
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, SPEC, "elasticsearch")
    goods = good_records(0, range(0, 100, 2)) + good_records(1, range(1, 100, 2))
    plain = [(p, value) for p, value, _, _ in goods]
    malformed = b'{"time": "2023-11-14T22:13:20Z", "k": "a", "v": '
    long_key = record(40, "k" * 40_000, 3.0)
    stream = [
        *plain[:10], (0, malformed), *plain[10:30], (0, long_key), (1, malformed),
        *plain[30:60], (1, malformed), (1, long_key), *plain[60:], (0, malformed),
    ]  # fmt: skip
    produce_to(stack, topic, stream)
    bad = [i for i, (_, value) in enumerate(stream) if value in (malformed, long_key)]
    env = {"METRICPIPE_MAX_GROUP_KEY_BYTES": "100000", **FAST}

    for point in ("after_dead_letter_flush", "after_sink_dead_letter_flush"):
        process = processes.start(pipeline, METRICPIPE_FAULT_EXIT_AT=point, **env)
        assert process.wait(timeout=240) == -9, processes.logs()
        log_text = processes.running[-1][1].read_text()
        assert "fault injected" in log_text
        assert point in log_text  # the crash landed at the named point ...
        letters = read_letters(stack, f"{topic}.dlq")
        stage = "scan" if point == "after_dead_letter_flush" else "sink"
        assert any(x["metricpipe.stage"] == stage for x in letters)
        offsets = committed(stack, pipeline.group, topic, 2)
        for letter in letters:  # ... after the letters were flushed, before their commit
            partition, offset = source_of(letter)
            if letter["metricpipe.stage"] == stage:
                assert offsets[partition] <= offset, (offsets, letter)
        assert Counter(source_of(x) for x in letters).most_common(1)[0][1] == 1

    processes.start(pipeline, **env)
    wait_consumed(stack, pipeline, topic, processes)
    letters = read_letters(stack, f"{topic}.dlq")
    sources = Counter(source_of(x) for x in letters)
    assert sorted(sources) == sorted(coordinates(stream, i) for i in bad)
    assert max(sources.values()) == 1  # each bad record once, across three processes
    assert Counter(x["metricpipe.reason"] for x in letters) == {
        "malformed_json": 4, "sink_rejected": 2
    }  # fmt: skip
    ends = fetch_end_offsets(stack, topic, 2)
    assert committed(stack, pipeline.group, topic, 2) == ends  # committed past every one
    assert_sink_equals(pipeline, oracle(goods))
