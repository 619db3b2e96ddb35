"""Benchmark: records/s of one consumer replica against a raw consume loop, measured in the same
run on the same topic; then end-to-end freshness at a steady load of half that capacity.

Run with `make bench` (starts the local stack if needed). Results: bench/results/*.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from cpu import delta, snapshot

from metricpipe_consumers.document import PipelineDocument
from metricpipe_consumers.engine import SparkAggregator
from metricpipe_consumers.metrics import ConsumerMetrics
from metricpipe_consumers.sink import build_sink
from metricpipe_consumers.stream import StreamConsumer, StreamSettings
from metricpipe_devstack.datasets import DatasetMissingError, iter_rtt_records
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.settings import StackSettings
from metricpipe_devstack.stack import read_env_file, stack_status, stack_up
from metricpipe_operator.api.model import MetricPipelineSpec
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.consumer import build_pipeline_document
from metricpipe_operator.reconcile.names import PipelineRef

PARTITIONS = 6
SERVERS = ("kafka", "elasticsearch")
SETTLE_SECONDS = 60
BATCH = int(os.environ.get("BENCH_BATCH", "200000"))
SPEC = {"source": {"tag": "atlas"},
        "metric": {"aggregation": "avg", "valueField": "rtt", "groupBy": ["probe"]}}  # fmt: skip


def say(text: str) -> None:
    print(text, flush=True)


def ensure_stack() -> StackEnv:
    settings = StackSettings()
    if not all(r["health"].startswith("healthy") for r in stack_status(settings)):
        say("== starting the local stack")
        stack_up(settings)
        # Servers busy with their own start-up (JIT, index creation) skew the first minute:
        # measured 45k instead of 55k records/s on a stack started seconds before.
        say(f"-- letting the fresh stack settle for {SETTLE_SECONDS} s")
        time.sleep(SETTLE_SECONDS)
    return StackEnv.from_entries(read_env_file(settings), settings.versions["KUBE_VERSION"])


def load_records(stack: StackEnv, copies: int) -> list[tuple[bytes, bytes]]:
    try:
        base = sorted(iter_rtt_records(stack.data_dir), key=lambda r: str(r["time"]))
        source = "RIPE Atlas RTT (real data)"
    except DatasetMissingError:
        say("!! ../shared/data is absent: using generated RTT-like records instead")
        base = [{"time": f"2016-10-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", "probe": str(i % 50),
                 "rtt": 20.0 + i % 97} for i in range(400_000)]  # fmt: skip
        source = "generated"
    records = []
    for r in base:  # copies interleaved in event-time order, as more probes would be
        for copy in range(copies):
            value = dict(r, probe=f"{r['probe']}-{copy}")
            records.append((str(value["probe"]).encode(), json.dumps(value).encode()))
    say(f"-- {len(records):,} records from {source}")
    return records


def produce(stack: StackEnv, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 50,
                         "batch.num.messages": 10_000, "compression.type": "lz4"})  # fmt: skip
    for i, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 50_000 == 0:
            producer.poll(0)
    producer.flush(120)


def raw_consume_rate(stack: StackEnv, topic: str, total: int) -> float:
    """The ceiling here: a confluent-kafka consume loop that does no work."""
    group = f"raw-{uuid.uuid4()}"
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.max.bytes": 52_428_800})  # fmt: skip
    consumer.subscribe([topic])
    seen, started = 0, None
    while seen < total:
        batch = consumer.consume(100_000, timeout=5)
        if batch and started is None:
            started = time.perf_counter()
        seen += sum(1 for m in batch if m.error() is None)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return seen / elapsed


def settings_for_replay() -> StreamSettings:
    return StreamSettings(max_batch_records=BATCH, max_batch_seconds=1.0,
                          finalize_interval_seconds=5.0)  # fmt: skip


def pipeline_document(stack: StackEnv, topic: str, name: str) -> PipelineDocument:
    spec = MetricPipelineSpec.model_validate({**SPEC, "topic": {"name": topic}})
    config = OperatorConfig(kafka_bootstrap=stack.kafka_bootstrap,
                            elasticsearch_url=stack.elasticsearch_url)  # fmt: skip
    raw = build_pipeline_document(PipelineRef("bench", name, "uid"), spec, topic, config)
    return PipelineDocument.model_validate(raw)


def lagging(stack: StackEnv, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        lag = 0
        for tp in consumer.committed(parts, timeout=10):
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=10
            )
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def run_consumer(doc: PipelineDocument, engine: SparkAggregator, settings: StreamSettings,
                 until: Any, profile: bool) -> tuple[StreamConsumer, float, str]:  # fmt: skip
    sink = build_sink("elasticsearch", doc.sink.endpoint, doc.sink.index, None, None)
    consumer = StreamConsumer(doc, sink, engine, ConsumerMetrics(doc.pipeline.key), settings)
    original = consumer.process_batch
    first: list[float] = []

    def timed(messages: list[Message], fetch_seconds: float = 0.0) -> None:
        if not first:
            first.append(time.perf_counter())
        original(messages, fetch_seconds=fetch_seconds)

    consumer.process_batch = timed  # type: ignore[method-assign]
    commit = consumer._commit
    committed: dict[int, int] = {}
    last_commit: list[float] = []

    def tracked(resume: dict[int, int]) -> None:
        commit(resume)
        committed.update(resume)
        last_commit[:] = [time.perf_counter()]

    consumer._commit = tracked  # type: ignore[method-assign]

    def watch() -> None:
        while not until(consumer):
            time.sleep(0.5)
        consumer.stopping = True

    threading.Thread(target=watch, daemon=True).start()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    consumer.run()
    # The end is the commit that covered the last record, not when the watcher noticed.
    end = last_commit[0] if last_commit else time.perf_counter()
    report = ""
    if profiler:
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
        report = text.getvalue()
    return consumer, end - (first[0] if first else end), report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=2, help="copies of the data set to replay")
    parser.add_argument("--steady-seconds", type=int, default=90)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    stack = ensure_stack()
    records = load_records(stack, args.copies)
    run = uuid.uuid4().hex[:6]
    topic = f"bench-{run}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1),
                                       NewTopic(f"{topic}.dlq", 1, 1)]).values():  # fmt: skip
        future.result(30)
    say(f"-- producing into {topic}")
    produce(stack, topic, records)
    total = len(records)

    say("-- baseline: raw confluent-kafka consume loop")
    run_dir = StackSettings().run_dir
    cpu_before = snapshot(run_dir, SERVERS)
    raw_rate = raw_consume_rate(stack, topic, total)
    raw_cpu = delta(cpu_before, snapshot(run_dir, SERVERS))
    say(f"   raw: {raw_rate:,.0f} records/s; CPU seconds: {raw_cpu}")

    say("-- metricpipe consumer (1 replica, Spark local[2], Elasticsearch sink)")
    engine = SparkAggregator("local[2]")
    engine.warm_up()  # as the consumer process does before it joins the group
    say("   an untimed replay first (a new group), so every server has seen this workload")
    warm = pipeline_document(stack, topic, f"bench-warm-{run}")
    run_consumer(warm, engine, settings_for_replay(),
                 lambda c: lagging(stack, warm.consumer_group, topic) == 0, False)  # fmt: skip
    doc = pipeline_document(stack, topic, f"bench-{run}")
    settings = settings_for_replay()
    cpu_before = snapshot(run_dir, SERVERS)
    consumer, elapsed, _ = run_consumer(
        doc, engine, settings, lambda c: lagging(stack, doc.consumer_group, topic) == 0, False
    )
    consumer_cpu = delta(cpu_before, snapshot(run_dir, SERVERS))
    rate = total / elapsed
    say(f"   metricpipe: {rate:,.0f} records/s ({elapsed:.1f} s for {total:,})")
    say(f"   CPU seconds: {consumer_cpu} (the machine has {os.cpu_count()} cores)")
    phases = {
        sample.labels["phase"]: round(sample.value, 2)
        for metric in consumer.metrics.registry.collect()
        if metric.name == "metricpipe_consumer_phase_seconds"
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    say(f"   seconds per phase: {phases} (the rest: polling Kafka and finalizing windows)")
    say(f"   ratio to raw: {rate / raw_rate:.3f}")
    say("-- the same replay again under cProfile (a new group), to see what limits it")
    profiled = pipeline_document(stack, topic, f"bench-profiled-{run}")
    _, _, profile = run_consumer(
        profiled, engine, settings,
        lambda c: lagging(stack, profiled.consumer_group, topic) == 0, True,
    )  # fmt: skip

    steady = freshness_at_load(stack, engine, rate / 2, args.steady_seconds, run)
    engine.stop()
    result = {
        "when": datetime.now(UTC).isoformat(), "records": total, "partitions": PARTITIONS,
        "raw_records_per_second": raw_rate, "metricpipe_records_per_second": rate,
        "ratio_to_raw": rate / raw_rate, "goal_ratio": 0.5, "goal_min_rate": 50_000,
        "seconds_per_phase": phases, "elapsed_seconds": elapsed, "batch_records": BATCH,
        "cpu_seconds_raw": raw_cpu, "cpu_seconds_metricpipe": consumer_cpu,
        "steady_load_records_per_second": rate / 2, **steady, "profile_top": profile,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"consumer-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    say(profile)
    say(f"== results written to {path}")
    return 0


def freshness_at_load(stack: StackEnv, engine: SparkAggregator, rate: float, seconds: int,
                      run: str) -> dict[str, float]:  # fmt: skip
    """Produce re-timed records at `rate` for `seconds`; sample freshness every second
    (now minus the lowest partition watermark in the sink)."""
    say(f"-- steady load: {rate:,.0f} records/s for {seconds} s; sampling freshness")
    topic = f"bench-steady-{run}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1),
                                       NewTopic(f"{topic}.dlq", 1, 1)]).values():  # fmt: skip
        future.result(30)
    doc = pipeline_document(stack, topic, f"bench-steady-{run}")
    stop = threading.Event()
    samples: list[float] = []

    def load() -> None:
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 20})
        sent, started = 0, time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            while sent < due:
                value = {"time": now, "probe": str(sent % 50), "rtt": 10.0 + sent % 90}
                try:
                    producer.produce(
                        topic, key=str(sent % 50).encode(), value=json.dumps(value).encode()
                    )
                except BufferError:
                    producer.poll(0.05)
                    continue
                sent += 1
            producer.poll(0)
            time.sleep(0.01)
        producer.flush(30)

    sink = build_sink("elasticsearch", doc.sink.endpoint, doc.sink.index, None, None)

    def sample() -> None:
        time.sleep(15)  # warm-up: Spark, group join
        while not stop.is_set():
            states = sink.search(sink.state_index, {"term": {"kind": "partition"}})
            marks = [s["watermark_ms"] for s in states if s.get("watermark_ms")]
            if len(marks) == PARTITIONS:
                samples.append(time.time() - min(marks) / 1000)
            time.sleep(1)

    threads = [
        threading.Thread(target=load, daemon=True),
        threading.Thread(target=sample, daemon=True),
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    settings = StreamSettings(max_batch_records=200_000, max_batch_seconds=1.0)
    run_consumer(doc, engine, settings, lambda c: time.monotonic() > deadline, False)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    if not samples:
        say("!! no freshness samples")
        return {}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    say(f"   freshness: p50 {statistics.median(ordered):.1f} s, p99 {p99:.1f} s "
        f"({len(ordered)} samples; goal p99 <= 30 s)")  # fmt: skip
    return {"freshness_p50_seconds": statistics.median(ordered), "freshness_p99_seconds": p99,
            "freshness_samples": len(ordered)}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
