"""Benchmark: the lag exporter's cost for 20 consumer groups x 100 partitions, every partition
behind (so every one needs its record timestamp read), against 1 group x 100 partitions in the
same run, as deployed: the sink probe on (each pipeline's state documents read from
Elasticsearch, one per partition). Reports the cold cycle (all timestamps read), the warm cycle
(timestamps cached), a cycle after every group committed further (offsets moving, as a working
group's do: new timestamps to read) and the scrape (rendering /metrics), against Prometheus'
default scrape timeout of 10 s.

Run with `make bench` (or `python bench/exporter_scrape.py`). Results: bench/results/*.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from consumer_throughput import ensure_stack, say
from prometheus_client import CollectorRegistry, generate_latest

from metricpipe_consumers.sink import MetricSink, build_sink
from metricpipe_exporters.collector import Collector
from metricpipe_exporters.kafka_reader import KafkaReader
from metricpipe_exporters.targets import PipelineTarget

SCRAPE_TIMEOUT_SECONDS = 10.0  # Prometheus' default
RECORDS_PER_PARTITION, COMMITTED_AT = 10, 5


def prepare(bootstrap: str, search_url: str, run: str, groups: int,
            partitions: int) -> list[PipelineTarget]:  # fmt: skip
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
        commit(bootstrap, group, topic, partitions, COMMITTED_AT)
        index = f"scrape-{run}-{g}"
        write_sink_state(search_url, index, partitions)
        targets.append(
            PipelineTarget(f"bench/{topic}", group, topic, "elasticsearch", search_url, index, 3600)
        )
    return targets


def commit(bootstrap: str, group: str, topic: str, partitions: int, offset: int) -> None:
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    committer.commit(
        offsets=[TopicPartition(topic, p, offset) for p in range(partitions)], asynchronous=False
    )
    committer.close()


def write_sink_state(search_url: str, index: str, partitions: int) -> None:
    """What the consumers of a pipeline leave in the sink: one state document per partition,
    and a metrics index (no final yet)."""
    mapping = {"mappings": {"properties": {"final": {"type": "boolean"},
                                           "window_end_ms": {"type": "long"}}}}  # fmt: skip
    requests.put(f"{search_url}/{index}", json=mapping, timeout=30).raise_for_status()
    now_ms = int(time.time() * 1000)
    lines = []
    for p in range(partitions):
        lines.append(json.dumps({"index": {"_index": f"{index}-state", "_id": f"partition-{p}"}}))
        lines.append(json.dumps({"kind": "partition", "partition": p, "committed_offset":
                                 COMMITTED_AT, "watermark_ms": now_ms - 60_000,
                                 "caught_up": False, "updated_ms": now_ms}))  # fmt: skip
    response = requests.post(
        f"{search_url}/_bulk?refresh=true", data="\n".join(lines) + "\n",
        headers={"Content-Type": "application/x-ndjson"}, timeout=60,
    )  # fmt: skip
    response.raise_for_status()
    assert not response.json()["errors"], response.text[:500]


@lru_cache(maxsize=256)
def sink_for_index(endpoint: str, index: str) -> MetricSink:
    return build_sink("elasticsearch", endpoint, index, None, None)


def sink_for(target: PipelineTarget) -> MetricSink:
    """As the deployed exporter does: one client per (endpoint, index), kept."""
    return sink_for_index(target.endpoint, target.index)


def measure(bootstrap: str, targets: list[PipelineTarget], partitions: int) -> dict[str, Any]:
    collector = Collector(
        KafkaReader({"bootstrap.servers": bootstrap}), lambda: targets, sink_for, lookup_budget=30.0
    )
    registry = CollectorRegistry()
    registry.register(collector)
    cold = collector.collect_cycle()
    warm = collector.collect_cycle()
    for target in targets:  # every group moves on by a record: new timestamps to look up
        commit(bootstrap, target.consumer_group, target.topic, partitions, COMMITTED_AT + 1)
    moving = collector.collect_cycle()
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
        "moving_cycle_seconds": moving.cycle_seconds,
        "errors": dict(collector.errors),
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
    targets = prepare(stack.kafka_bootstrap, stack.elasticsearch_url, run, args.groups,
                      args.partitions)  # fmt: skip
    try:
        say("-- baseline: 1 group")
        base = measure(stack.kafka_bootstrap, targets[:1], args.partitions)
        say(f"   {base}")
        say(f"-- {args.groups} groups")
        full = measure(stack.kafka_bootstrap, targets, args.partitions)
        say(f"   {full}")
    finally:
        admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
        for future in admin.delete_topics([t.topic for t in targets]).values():
            future.result(120)
        for target in targets:
            requests.delete(f"{stack.elasticsearch_url}/{target.index}*", timeout=30)
    ratio = full["cold_cycle_seconds"] / base["cold_cycle_seconds"]
    say(
        f"   cold cycle: {full['cold_cycle_seconds']:.2f} s ({ratio:.1f}x the 1-group baseline "
        f"for {args.groups}x the partitions); warm: {full['warm_cycle_seconds']:.2f} s; "
        f"offsets moved: {full['moving_cycle_seconds']:.2f} s; "
        f"scrape: {full['scrape_seconds'] * 1000:.0f} ms; timeout {SCRAPE_TIMEOUT_SECONDS:.0f} s"
    )
    result = {
        "when": datetime.now(UTC).isoformat(),
        "baseline_1_group": base,
        "full": full,
        "cold_ratio_to_baseline": ratio,
        "scrape_timeout_seconds": SCRAPE_TIMEOUT_SECONDS,
        "sink_probe": True,
        "within_timeout": full["cold_cycle_seconds"] < SCRAPE_TIMEOUT_SECONDS,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"exporter-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    say(f"== results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
