"""Benchmark: the lag exporter's cost for 20 consumer groups x 100 partitions, every partition
behind (so every one needs its record timestamp read), against 1 group x 100 partitions in the
same run. Reports the cold cycle (all timestamps read), the warm cycle (timestamps cached) and
the scrape (rendering /metrics), against Prometheus' default scrape timeout of 10 s.

Run with `make bench` (or `python bench/exporter_scrape.py`). Results: bench/results/*.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from consumer_throughput import ensure_stack, say
from prometheus_client import CollectorRegistry, generate_latest

from metricpipe_exporters.collector import Collector
from metricpipe_exporters.kafka_reader import KafkaReader
from metricpipe_exporters.targets import PipelineTarget

SCRAPE_TIMEOUT_SECONDS = 10.0  # Prometheus' default
RECORDS_PER_PARTITION, COMMITTED_AT = 10, 5


def prepare(bootstrap: str, run: str, groups: int, partitions: int) -> list[PipelineTarget]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [f"scrape-{run}-{g}" for g in range(groups)]
    for future in admin.create_topics([NewTopic(t, partitions, 1) for t in topics]).values():
        future.result(120)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for topic in topics:
        for p in range(partitions):
            for _ in range(RECORDS_PER_PARTITION):
                producer.produce(topic, value=b"{}", partition=p)
        producer.poll(0)
    producer.flush(120)
    targets = []
    for g, topic in enumerate(topics):
        group = f"scrape-{run}-group-{g}"
        committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        committer.commit(
            offsets=[TopicPartition(topic, p, COMMITTED_AT) for p in range(partitions)],
            asynchronous=False,
        )
        committer.close()
        targets.append(
            PipelineTarget(f"bench/{topic}", group, topic, "elasticsearch", "-", "-", 3600)
        )
    return targets


def measure(bootstrap: str, targets: list[PipelineTarget]) -> dict[str, Any]:
    collector = Collector(KafkaReader(bootstrap), lambda: targets, None, lookup_budget=30.0)
    registry = CollectorRegistry()
    registry.register(collector)
    cold = collector.collect_cycle()
    warm = collector.collect_cycle()
    started = time.perf_counter()
    body = generate_latest(registry)
    scrape = time.perf_counter() - started
    partitions = sum(len(lags) for lags in cold.lags.values())
    with_time_lag = body.count(b"metricpipe_consumergroup_time_lag_seconds{")
    return {
        "groups": len(targets),
        "partitions": partitions,
        "cold_cycle_seconds": cold.cycle_seconds,
        "warm_cycle_seconds": warm.cycle_seconds,
        "scrape_seconds": scrape,
        "scrape_bytes": len(body),
        "time_lag_series": with_time_lag,
        "lookups": dict(collector.reader.lookups),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    stack = ensure_stack()
    run = uuid.uuid4().hex[:6]
    say(f"-- creating {args.groups} topics x {args.partitions} partitions, each group behind")
    targets = prepare(stack.kafka_bootstrap, run, args.groups, args.partitions)
    try:
        say("-- baseline: 1 group")
        base = measure(stack.kafka_bootstrap, targets[:1])
        say(f"   {base}")
        say(f"-- {args.groups} groups")
        full = measure(stack.kafka_bootstrap, targets)
        say(f"   {full}")
    finally:
        admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
        for future in admin.delete_topics([t.topic for t in targets]).values():
            future.result(120)
    ratio = full["cold_cycle_seconds"] / base["cold_cycle_seconds"]
    say(
        f"   cold cycle: {full['cold_cycle_seconds']:.2f} s ({ratio:.1f}x the 1-group baseline "
        f"for {args.groups}x the partitions); warm: {full['warm_cycle_seconds']:.2f} s; "
        f"scrape: {full['scrape_seconds'] * 1000:.0f} ms; timeout {SCRAPE_TIMEOUT_SECONDS:.0f} s"
    )
    result = {
        "when": datetime.now(UTC).isoformat(),
        "baseline_1_group": base,
        "full": full,
        "cold_ratio_to_baseline": ratio,
        "scrape_timeout_seconds": SCRAPE_TIMEOUT_SECONDS,
        "within_timeout": full["cold_cycle_seconds"] < SCRAPE_TIMEOUT_SECONDS,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"exporter-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    say(f"== results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
