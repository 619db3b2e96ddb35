"""Helpers that run real consumer processes against the real stack and check their output."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import oracle
from helpers import free_port, wait_for
from metricpipe_consumers.aggregate import Aggregate
from metricpipe_consumers.sink import SearchSink, build_sink
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_devstack.env import StackEnv
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.consumer import build_pipeline_document

PAGE = 10_000  # the search engines' default limit of hits per request

Records = list[oracle.Record]


def create_topics(
    stack: StackEnv, topic: str, partitions: int, *, keep_forever: bool = False
) -> None:
    """The topic and its DLQ. `keep_forever` for records with their original (years old)
    timestamps: time-based retention would otherwise delete them while the test reads."""
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    config = {"retention.ms": "-1"} if keep_forever else {}
    futures = admin.create_topics(
        [NewTopic(topic, partitions, 1, config=config), NewTopic(f"{topic}.dlq", 1, 1)]
    )
    for future in futures.values():
        future.result(timeout=30)


def produce(
    stack: StackEnv, topic: str,
    records: Iterable[tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, int]],
) -> int:  # fmt: skip
    """(key, value) or (key, value, Kafka timestamp in ms) records, in order."""
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 50,
                         "batch.num.messages": 10_000, "enable.idempotence": True})  # fmt: skip
    count = 0
    for key, value, *stamp in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, timestamp=stamp[0] if stamp else 0)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return count


def read_topic(stack: StackEnv, topic: str) -> Records:
    """Every record of a topic (partition, value, Kafka timestamp), in offset order per
    partition: what the oracle computes the expected results from."""
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "reader",
                         "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    out: Records = []
    try:
        for partition in sorted(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            while True:
                message = consumer.poll(10)
                assert message is not None, f"reading {topic}/{partition} stalled"
                value, offset = message.value(), message.offset()
                if message.error() is None:
                    raw = value.encode() if isinstance(value, str) else value
                    out.append(oracle.Record(partition, raw, max(message.timestamp()[1], 0)))
                if offset is not None and offset >= high - 1:
                    break
    finally:
        consumer.close()
    return out


def dead_letter_reasons(stack: StackEnv, topic: str, pipeline: str) -> Counter[str]:
    """Reasons of the dead letters one pipeline wrote (pipelines may share a topic)."""
    reasons: Counter[str] = Counter()
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "dlq-reader",
                         "enable.auto.commit": False})  # fmt: skip
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, low)])
        seen = low
        while seen < high:
            message = consumer.poll(10)
            assert message is not None, "reading the dead-letter topic stalled"
            if message.error() is None:
                headers = header_texts(message.headers())
                if headers.get("metricpipe.pipeline") == pipeline:
                    reasons[headers["metricpipe.reason"]] += 1
                seen = (message.offset() or 0) + 1
    finally:
        consumer.close()
    return reasons


def header_texts(
    headers: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]] | None,
) -> dict[str, str]:
    """A Kafka message's headers as text (absent values as "")."""
    pairs = list(headers.items()) if isinstance(headers, dict) else headers or []
    out: dict[str, str] = {}
    for name, value in pairs:
        out[name] = value.decode() if isinstance(value, bytes) else (value or "")
    return out


_COORDINATOR_NOT_READY = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._TIMED_OUT,
}


def committed_everything(stack: StackEnv, group: str, topic: str) -> bool:
    """True once the group committed every partition's end; False while not yet known.

    A group coordinator that is moving or still loading (NOT_COORDINATOR,
    COORDINATOR_LOAD_IN_PROGRESS — common right after a broker restart or while a group
    rebalances under kill -9) answers with a retriable error: that is "not yet", not a
    failure, and the caller polls again.
    """
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as error:
            if error.args[0].code() in _COORDINATOR_NOT_READY or error.args[0].retriable():
                return False
            raise
        for tp in committed:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=10
            )
            if high > 0 and tp.offset < high:
                return False
        return True
    finally:
        consumer.close()


@dataclass
class Pipeline:
    """A pipeline document on disk, as the operator would mount it, and its sink."""

    name: str
    spec: MetricPipelineSpec
    document_path: Path
    sink: SearchSink
    document: dict[str, Any]
    applied: dict[str, Any]  # the spec as a user applies it: what the oracle reads

    def expected(self, records: Records, now_ms: int | None = None,
                 limits: oracle.Limits | None = None) -> oracle.Outcome:  # fmt: skip
        """What the pipeline must compute from `records`, by the independent oracle; `now_ms`
        the wall clock records without an earlier Kafka timestamp are judged at; lateness by
        the clock of the pipeline's mode."""
        at = int(time.time() * 1000) if now_ms is None else now_ms
        clock = "batch" if self.applied.get("mode") == "batch" else "stream"
        return oracle.compute(self.applied, records, at, limits or oracle.Limits(), clock)

    @property
    def group(self) -> str:
        return str(self.document["consumerGroup"])


def make_pipeline(
    stack: StackEnv, tmp_path: Path, name: str, topic: str, spec: dict[str, Any], backend: str
) -> Pipeline:
    applied = {**spec, "topic": {"name": topic}, "sink": {"backend": backend}}
    spec_model = MetricPipelineSpec.model_validate(applied)
    config = OperatorConfig(
        kafka_bootstrap=stack.kafka_bootstrap,
        elasticsearch_url=stack.elasticsearch_url,
        opensearch_url=stack.opensearch_url,
    )
    ref = PipelineRef("it", name, "uid")
    document = build_pipeline_document(ref, spec_model, topic, config)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document))
    sink = build_sink(backend, document["sink"]["endpoint"], document["sink"]["index"], None, None)
    return Pipeline(name, spec_model, path, sink, document, applied)


@dataclass(frozen=True)
class SinkAccess:
    """A secured sink for a consumer: pipeline.json's `sink` fields (endpoint, caFile), the
    process's credentials (METRICPIPE_SINK_*), and the sink the test reads the results from."""

    target: dict[str, str]
    env: dict[str, str]
    reader: SearchSink


@dataclass
class ConsumerProcesses:
    log_dir: Path
    class_archive: Path | None = None  # METRICPIPE_SPARK_CLASS_ARCHIVE
    running: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, pipeline: Pipeline, **env: str) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"{pipeline.name}-{len(self.running)}.log"
        process_env = {
            **os.environ,
            "METRICPIPE_PIPELINE_CONFIG": str(pipeline.document_path),
            "METRICPIPE_METRICS_PORT": str(free_port()),
            "METRICPIPE_SPARK_MASTER": "local[1]",
            "METRICPIPE_FINALIZE_INTERVAL_SECONDS": "2",
            "METRICPIPE_MAX_BATCH_SECONDS": "1",
            "METRICPIPE_LOG_LEVEL": "INFO",
            # no warm-up: the tests check what is computed, not how soon the first batch runs
            # (the deployed default, 3 rounds, is measured by bench/consumer_start.py)
            "METRICPIPE_SPARK_WARM_UP_ROUNDS": "0",
            **(
                {"METRICPIPE_SPARK_CLASS_ARCHIVE": str(self.class_archive)}
                if self.class_archive
                else {}
            ),
            **env,
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "metricpipe_consumers", "stream"],
                stdout=log, stderr=subprocess.STDOUT, env=process_env, start_new_session=True,
            )  # fmt: skip
        self.running.append((process, log_path))
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process, _ in self.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.running:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def logs(self, tail: int = 60) -> str:
        """The last lines of every replica's log, without Spark's progress bars."""

        def last_lines(path: Path) -> str:
            lines = [line for line in path.read_text(errors="replace").splitlines()
                     if line.strip() and "[Stage " not in line]  # fmt: skip
            return "\n".join(lines[-tail:])

        return "\n".join(f"== {p}\n{last_lines(p)}" for _, p in self.running)

    def assert_alive(self) -> None:
        # 0: stopped on purpose (SIGTERM is graceful); -9: killed on purpose.
        dead = [(p.returncode, log) for p, log in self.running if p.poll() not in (None, 0, -9)]
        if dead:
            pytest.fail(f"a consumer exited: {dead}\n{self.logs()}")


def wait_until_finalized(pipeline: Pipeline, through_ms: int, timeout: float = 180) -> None:
    def reached() -> bool:
        pipeline.sink.refresh()
        found = pipeline.sink.search(pipeline.sink.state_index, {"term": {"kind": "pipeline"}}, 1)
        return bool(found) and int(found[0]["finalized_through_ms"]) >= through_ms

    wait_for(reached, timeout=timeout, what=f"windows finalized through {through_ms}")


def sink_results(pipeline: Pipeline) -> tuple[dict[Any, dict[str, Any]], dict[Any, Aggregate]]:
    """(final documents, merged partials) keyed by (window start, group)."""
    pipeline.sink.refresh()
    finals: dict[Any, dict[str, Any]] = {}
    partials: dict[Any, Aggregate] = {}
    for doc in _all_docs(pipeline.sink):
        key = (int(doc["window_start_ms"]), tuple(str(v) for v in doc["group"].values()))
        if doc["final"]:
            assert key not in finals, f"two final documents for {key}"
            finals[key] = doc
        else:
            partials[key] = partials.get(key, Aggregate()).merge(
                Aggregate.from_fields(doc, int(doc["partition"]))
            )
    return finals, partials


def _all_docs(sink: SearchSink) -> list[dict[str, Any]]:
    """Every metric document, in pages sorted by window start. A full page stops before its
    last window start, which the next page starts from, so no document is read twice or
    skipped (one query per 10,000 documents, however many days they span)."""
    docs: list[dict[str, Any]] = []
    query: dict[str, Any] = {"match_all": {}}
    while True:
        page = sink.search(sink.index, query, PAGE, sort=[{"window_start_ms": "asc"}])
        if len(page) < PAGE:
            return docs + page
        last = int(page[-1]["window_start_ms"])
        before = [doc for doc in page if int(doc["window_start_ms"]) < last]
        assert before, f"one window start holds {PAGE} documents or more: too many for a page"
        docs += before
        query = {"range": {"window_start_ms": {"gte": last}}}


def assert_matches_reference(
    pipeline: Pipeline, reference: oracle.Outcome, finalized_through: int
) -> int:
    """Every window of the oracle's outcome is in the sink with the same numbers: final
    documents for windows finalized, merged partials for open ones. Returns the number of
    finals checked."""
    metric = pipeline.spec.metric
    seconds = oracle.duration_ms(pipeline.applied["metric"].get("window", "1h")) / 1000
    finals, partials = sink_results(pipeline)
    problems: list[str] = []
    checked = 0
    method = metric.percentile_interpolation
    for key, ref in sorted(reference.windows.items()):
        start = key[0]
        if start + seconds * 1000 <= finalized_through:
            doc = finals.get(key)
            if doc is None:
                problems.append(f"{key}: no final document")
                continue
            checked += 1
            got_count, got_value = int(doc["count"]), doc["value"]
            got_min, got_max, got_sum = doc["min"], doc["max"], doc["sum"]
            if metric.aggregation == "ratio":  # both counts, as the oracle counted them
                counts = (doc.get("numerator"), doc.get("denominator"))
                if counts != (round(sum(ref.values)), ref.count):
                    problems.append(f"{key}: numerator, denominator {counts}")
        else:
            agg = partials.get(key)
            if agg is None:
                problems.append(f"{key}: no partial documents")
                continue
            got_count, got_value = agg.count, agg.value(metric.aggregation, seconds, method)
            got_min, got_max, got_sum = agg.minimum, agg.maximum, agg.total
        if got_count != ref.count:
            problems.append(f"{key}: count {got_count} != {ref.count}")
        if ref.values:
            if (got_min, got_max) != (min(ref.values), max(ref.values)):
                problems.append(f"{key}: min/max {got_min}/{got_max}")
            if abs(got_sum - sum(ref.values)) > 1e-9 * max(1.0, abs(sum(ref.values))):
                problems.append(f"{key}: sum {got_sum} != {sum(ref.values)}")
        expected = reference.value(key, pipeline.applied)
        tolerance = 0.01 if metric.aggregation.startswith("p") else 1e-9
        if expected is None or got_value is None:
            if expected != got_value:
                problems.append(f"{key}: value {got_value} != {expected}")
        elif abs(got_value - expected) > tolerance * abs(expected) + 1e-12:
            problems.append(f"{key}: value {got_value} != {expected}")
    extra = set(finals) - set(reference.windows)
    if extra:
        problems.append(f"final documents the oracle does not have: {sorted(extra)[:5]}")
    assert problems == [], "\n".join(problems[:20]) + f"\n({len(problems)} problems)"
    return checked


def wait_consumed(stack: StackEnv, pipeline: Pipeline, topic: str, procs: ConsumerProcesses,
                  timeout: float = 300) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.assert_alive()
        if committed_everything(stack, pipeline.group, topic):
            return
        time.sleep(1)
    pytest.fail(
        f"{pipeline.name} did not consume everything in {timeout}s\n"
        f"{offsets_report(stack, pipeline.group, topic)}\n{procs.logs(tail=40)}"
    )


def offsets_report(stack: StackEnv, group: str, topic: str) -> str:
    """Per partition: the group's committed offset and the log end (for failure messages)."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.topics[topic].partitions)]
        lines = []
        for tp in consumer.committed(partitions, timeout=10):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), 10)
            lines.append(f"  partition {tp.partition}: committed {tp.offset}, end {high}")
        return "\n".join([f"group {group} on {topic}:", *lines])
    except KafkaException as error:
        return f"group {group} on {topic}: offsets unavailable ({error})"
    finally:
        consumer.close()


def committed_offsets(stack: StackEnv, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (a negative number: nothing committed)."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = [TopicPartition(topic, p) for p in sorted(metadata.topics[topic].partitions)]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()


def scrape(port: int, name: str) -> float:
    """The sum of a metric's samples (all label sets) on a process's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(row.rsplit(" ", 1)[1]) for row in text.splitlines()
               if row.split("{")[0].split(" ")[0] == name)  # fmt: skip


def metric_positive(port: int, name: str) -> bool:
    """The metric is above 0 on the process's /metrics (False while it has no server yet)."""
    try:
        return scrape(port, name) > 0
    except OSError:  # connection refused: still starting
        return False


def commit_offsets(stack: StackEnv, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Set a group's committed offsets from outside (the group must have no members)."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in sorted(offsets.items())],
            asynchronous=False,
        )
    finally:
        consumer.close()


def with_kafka_times(lines: list[str]) -> list[tuple[None, bytes, int]]:
    """Each line stamped with its request time (read by the oracle); a line without a readable
    time (the log has truncated ones) with its predecessor's, as a shipper stamping arrival
    time would."""
    stamped, last = [], 0
    for line in lines:
        with contextlib.suppress(oracle.Dead):
            last = oracle.event_ms(oracle.scan_access_line(line)["time"], "clf", None)
        stamped.append((None, line.encode(), last))
    return stamped


def run_and_compare(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, prefix: str, topic: str,
    specs: dict[str, dict[str, Any]], backend: str, records: Records,
    *, kafka: dict[str, dict[str, Any]] | None = None,
    sinks: dict[str, SinkAccess] | None = None,
) -> dict[str, tuple[Pipeline, oracle.Outcome, int]]:  # fmt: skip
    """Runs one pipeline per spec over the topic, their consumers side by side, and compares
    each with the reference. Returns each pipeline, its reference and the event time through
    which its windows are final. kafka: per spec name, pipeline.json's `kafka` for its
    consumer (a secured listener and its credentials) instead of the plaintext listener;
    sinks: per spec name, a secured sink its consumer writes to instead."""
    pipelines = start_pipelines(stack, processes, tmp_path, prefix, topic, specs, backend,
                                kafka=kafka, sinks=sinks)  # fmt: skip
    references = {name: pipeline.expected(records) for name, pipeline in pipelines.items()}
    return compare_pipelines(stack, processes, topic, pipelines, references)


def start_pipelines(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, prefix: str, topic: str,
    specs: dict[str, dict[str, Any]], backend: str,
    *, kafka: dict[str, dict[str, Any]] | None = None,
    sinks: dict[str, SinkAccess] | None = None,
) -> dict[str, Pipeline]:  # fmt: skip
    """One consumer process per spec over the topic (run_and_compare's kafka and sinks)."""
    started = {}
    for name, spec in specs.items():
        pipeline = make_pipeline(stack, tmp_path, f"{prefix}-{name}", topic, spec, backend)
        if kafka is not None and name in kafka:
            pipeline.document["kafka"] = kafka[name]
        env = {"METRICPIPE_IDLE_TIMEOUT_SECONDS": "5"}  # all data is there already
        access = (sinks or {}).get(name)
        if access is not None:
            pipeline.document["sink"] = {**pipeline.document["sink"], **access.target}
            pipeline.sink = access.reader
            env.update(access.env)
        pipeline.document_path.write_text(json.dumps(pipeline.document))
        processes.start(pipeline, **env)
        started[name] = pipeline
    return started


def compare_pipelines(
    stack: StackEnv, processes: ConsumerProcesses, topic: str, pipelines: dict[str, Pipeline],
    references: dict[str, oracle.Outcome], *, finals_required: bool = True,
) -> dict[str, tuple[Pipeline, oracle.Outcome, int]]:  # fmt: skip
    """Waits until each pipeline consumed the topic and finalized what it can, then compares
    its sink with its reference (finals for finalized windows, merged partials for open ones).
    finals_required=False for data of the current hour only, whose windows are all open."""
    window_ms = 3_600_000
    out = {}
    for name, pipeline in pipelines.items():
        reference = references[name]
        wait_consumed(stack, pipeline, topic, processes)
        max_event = max(start for start, _ in reference.windows) + window_ms
        through = (max_event - window_ms - 5 * 60_000) // window_ms * window_ms
        wait_until_finalized(pipeline, through)
        checked = assert_matches_reference(pipeline, reference, through)
        assert checked > 0 or not finals_required
        assert dead_letter_reasons(stack, f"{topic}.dlq", f"it/{pipeline.name}") == (
            reference.dead_letters
        )
        out[name] = pipeline, reference, through
    return out


def fetch_end_offsets(stack: StackEnv, topic: str, partitions: int) -> dict[int, int]:
    """partition -> log-end offset (the next offset to be written) of each partition."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "ends"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)}  # fmt: skip
    finally:
        consumer.close()
