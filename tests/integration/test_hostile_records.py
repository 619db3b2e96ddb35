"""Hostile records on the real stack, through a real consumer process: each class is
dead-lettered once with its reason (or filtered, for a value built to make a backtracking
regex hang), the pipeline commits past them, and the windows equal an oracle computed here
from the good records alone; and a sparse metric's last window closes on time.

The oracle is plain Python over what this file generated: it imports nothing that parses
records or aggregates them.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from consumers import (
    ConsumerProcesses,
    Pipeline,
    create_topics,
    header_texts,
    make_pipeline,
    wait_consumed,
    wait_until_finalized,
)
from helpers import free_port, wait_for
from metricpipe_consumers.sink import SinkError
from metricpipe_devstack.env import StackEnv

MINUTE = 60_000
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def clf(ms: int, year: int | None = None) -> str:
    t = time.gmtime(ms / 1000)
    return (f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{year or t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")  # fmt: skip


def line(ms: int, path: str, size: int, tail: str = ' "-" "Mozilla/5.0 (X11; Linux)"',
         year: int | None = None) -> str:  # fmt: skip
    return f'10.1.2.3 - - [{clf(ms, year)}] "GET {path} HTTP/1.1" 200 {size}{tail}'


def produce_to(stack: StackEnv, topic: str, records: list[tuple[int, bytes]]) -> None:
    """(partition, value) in order; each partition's records keep their order."""
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 20,
                         "enable.idempotence": True})  # fmt: skip
    for partition, value in records:
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(60) == 0


def dead_letters(stack: StackEnv, topic: str) -> list[tuple[str, str]]:
    """(reason, source) of every letter on the dead-letter topic."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap,
                         "group.id": f"dlq-{time.monotonic_ns()}"})  # fmt: skip
    letters: list[tuple[str, str]] = []
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        while len(letters) < high - low:
            message = consumer.poll(10)
            assert message is not None, "reading the dead-letter topic stalled"
            if message.error() is None:
                headers = header_texts(message.headers())
                letters.append((headers["metricpipe.reason"], headers["metricpipe.source"]))
    finally:
        consumer.close()
    return letters


def finals(pipeline: Pipeline) -> dict[tuple[int, str], dict[str, Any]]:
    pipeline.sink.refresh()
    docs = pipeline.sink.search(pipeline.sink.index, {"term": {"final": True}}, size=1000)
    return {(int(d["window_start_ms"]), str(d["group"].get("path", ""))): d for d in docs}


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(row.rsplit(" ", 1)[1]) for row in text.splitlines()
               if row.startswith(name) and not row.startswith("#"))  # fmt: skip


@dataclass
class Stream:
    """What this test sends, and what it expects: the oracle."""

    records: list[tuple[int, bytes]] = field(default_factory=list)
    sums: dict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    counts: Counter[tuple[int, str]] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    filtered: int = 0

    def good(self, partition: int, ms: int, path: str, size: int, raw: str, wrap: bool) -> None:
        value = json.dumps({"message": raw, "stream": "stdout"}) if wrap else raw
        self.records.append((partition, value.encode()))
        key = (ms // MINUTE * MINUTE, path)
        self.sums[key] += size
        self.counts[key] += 1

    def bad(self, partition: int, value: bytes, reason: str) -> None:
        self.records.append((partition, value))
        self.reasons[reason] += 1

    def dropped(self, partition: int, value: bytes) -> None:
        self.records.append((partition, value))
        self.filtered += 1


PATHS = ("/a", "/aa", "/a/aa")  # three groups: the cap below lets exactly these in
CUT_TAILS = (' "-" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/537.36 (KH',
             ' "http://example.com/ref', ' "-" "', "")  # fmt: skip


def build_stream(base: int) -> Stream:
    stream = Stream()
    for minute in range(8):
        for partition in (0, 1):
            for i in range(9):
                ms = base + minute * MINUTE + i * 6_000 + partition * 1_000
                path, size = PATHS[i % 3], 100 * minute + 10 * i + partition
                tail = CUT_TAILS[i // 2 % 4] if i % 2 else ' "-" "Mozilla/5.0 (X11)"'
                stream.good(partition, ms, path, size, line(ms, path, size, tail), wrap=i % 3 == 0)
            t = base + minute * MINUTE + 57_000
            hostile = (minute + partition) % 4
            if hostile == 0:  # far future, and one hour ahead of the clock
                stream.bad(partition, line(t, "/a", 7, year=3000).encode(), "future")
                ahead = int(time.time() * 1000) + 3_600_000
                stream.bad(partition, line(ahead, "/a", 7).encode(), "future")
            elif hostile == 1:  # a key twice: which message is meant?
                twice = f'{{"message": {json.dumps(line(t, "/a", 7))}, "message": "x"}}'
                stream.bad(partition, twice.encode(), "ambiguous")
                escaped = f'{{"message": {json.dumps(line(t, "/a", 7))}, "\\u006dessage": "y"}}'
                stream.bad(partition, escaped.encode(), "ambiguous")
            elif hostile == 2:  # a group value over the byte limit; a fourth group
                stream.bad(partition, line(t, "/" + "a" * 600, 7).encode(), "oversize_key")
                stream.bad(partition, line(t, "/aaaa", 7).encode(), "oversize_key")
            else:  # values that make ^(/a+)+$ backtrack for ages on Python's re
                for length in (40, 60_000):
                    stream.dropped(partition, line(t, "/" + "a" * length + "!", 7).encode())
                stream.bad(partition, line(t, "/a", 7)[:40].encode(), "malformed_line")
    return stream


SPEC: dict[str, Any] = {
    "source": {"tag": "web", "format": "apache_combined",
               "filters": [{"field": "path", "matches": "^(/a+)+$"}]},
    "metric": {"aggregation": "sum", "valueField": "bytes", "groupBy": ["path"], "window": "1m",
               "allowedLateness": "10s", "eventTime": {"field": "time", "format": "clf"}},
}  # fmt: skip


def test_hostile_records_are_dead_lettered_once_and_the_rest_counted(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    topic = f"{unique_name}-hostile"
    create_topics(stack, topic, 2)
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, SPEC, "elasticsearch")
    base = 1_700_000_000_000 // MINUTE * MINUTE
    stream = build_stream(base)
    produce_to(stack, topic, stream.records)
    port = free_port()
    env = {"METRICPIPE_MAX_GROUPS_PER_WINDOW": "3", "METRICPIPE_IDLE_TIMEOUT_SECONDS": "5",
           "METRICPIPE_METRICS_PORT": str(port)}  # fmt: skip
    processes.start(pipeline, **env)
    wait_consumed(stack, pipeline, topic, processes, timeout=240)  # committed past everything

    letters = dead_letters(stack, f"{topic}.dlq")
    assert Counter(reason for reason, _ in letters) == stream.reasons
    assert len({source for _, source in letters}) == len(letters), "a record dead-lettered twice"
    # the backtracking values were filtered (read, not counted), in microseconds
    assert metric(port, "metricpipe_consumer_records_filtered_total") == stream.filtered

    # every window closes (the last one too: all partitions idle, time goes on), and equals
    # the oracle: the future records moved no watermark, so nothing after them was late
    wait_until_finalized(pipeline, base + 8 * MINUTE, timeout=120)
    got = finals(pipeline)
    assert set(got) == set(stream.counts)
    for key, doc in got.items():
        assert (int(doc["count"]), doc["sum"]) == (stream.counts[key], stream.sums[key]), key
    processes.assert_alive()


def test_a_sparse_metric_s_last_window_closes_within_lateness_and_idle_timeout(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    """Live records, a 10 s window, 2 s lateness, 4 s idle timeout. Phase 1: after a few 5xx,
    only filtered 200s flow: the window closes once they pass its end + lateness. Phase 2:
    after a few more 5xx the input stops: the window closes by its end + lateness + idle
    timeout. Bounds have 6 s of slack for the poll, finalize and refresh intervals."""
    topic = f"{unique_name}-sparse"
    create_topics(stack, topic, 2)  # partition 1 never receives anything
    spec = {"source": {"tag": "app", "filters": [{"field": "status", "matches": "^5"}]},
            "metric": {"aggregation": "count", "window": "10s", "allowedLateness": "2s",
                       "eventTime": {"field": "ts", "format": "epoch_millis"}}}  # fmt: skip
    pipeline = make_pipeline(stack, tmp_path, unique_name, topic, spec, "elasticsearch")
    window, lateness, idle, slack = 10_000, 2_000, 4_000, 6_000
    processes.start(pipeline, METRICPIPE_IDLE_TIMEOUT_SECONDS="4",
                    METRICPIPE_FINALIZE_INTERVAL_SECONDS="1")  # fmt: skip

    def state_docs() -> int:
        try:
            pipeline.sink.refresh()
            query = {"term": {"kind": "partition"}}
            return len(pipeline.sink.search(pipeline.sink.state_index, query))
        except SinkError:  # the consumer has not created its indices yet
            return 0

    wait_for(lambda: state_docs() == 2, timeout=180, what="the consumer to own both partitions")

    def send(status: int) -> int:
        now = int(time.time() * 1000)
        produce_to(stack, topic, [(0, json.dumps({"ts": now, "status": status}).encode())])
        return now

    def final_count(start: int) -> int | None:
        pipeline.sink.refresh()
        docs = pipeline.sink.search(pipeline.sink.index, {"bool": {"filter": [
            {"term": {"final": True}}, {"term": {"window_start_ms": start}}]}})  # fmt: skip
        return int(docs[0]["count"]) if docs else None

    # phase 1: three 5xx in a fresh window, then only filtered records, every 0.5 s
    while int(time.time() * 1000) % window > 3_000:  # start early in a window
        time.sleep(0.2)
    first = [send(503) for _ in range(3)]
    start = first[0] // window * window
    assert all(t // window * window == start for t in first)
    moved_on = None  # wall time of the first record past the window's end + lateness
    while final_count(start) is None:
        sent = send(200)
        if moved_on is None and sent >= start + window + lateness:
            moved_on = time.time()
        assert time.time() * 1000 < start + window + lateness + idle + slack + 10_000, (
            "the window did not close while filtered records flowed\n" + processes.logs(20)
        )
        time.sleep(0.5)
    closed = time.time()
    assert final_count(start) == 3
    assert moved_on is not None, "closed before the input moved past it: too early"
    assert closed - moved_on < (idle + slack) / 1000

    # phase 2: two 5xx, then nothing at all: the wall clock alone closes the window
    while int(time.time() * 1000) % window > 3_000:
        time.sleep(0.2)
    last = [send(500), send(502)]
    start = last[0] // window * window
    deadline = (start + window + lateness + idle + slack) / 1000
    wait_for(lambda: final_count(start) is not None, timeout=deadline - time.time() + 1,
             what="the sparse metric's last window to close", interval=0.25)  # fmt: skip
    assert time.time() < deadline
    assert final_count(start) == 2
    processes.assert_alive()
