"""bench/batch_modes.py's stores: the hour into Kafka and into the Redis cache, and what it
costs them (the topic's bytes on disk and the broker's memory; Redis's used memory)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from batch_modes_data import Event
from confluent_kafka import Producer
from consumer_memory import read_status
from consumer_throughput import say

from metricpipe_demo.cache_writer import CacheWriter
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.kafka import Kafka
from metricpipe_devstack.process import read_record
from metricpipe_devstack.redis import RedisAccess
from metricpipe_devstack.settings import StackSettings
from metricpipe_operator.reconcile.cache_route import CacheRoute, build_cache_fluent_conf


def broker_rss() -> int:
    record = read_record(StackSettings().run_dir, "kafka")
    return int(read_status(record.pid).get("VmRSS", 0)) if record else 0


def topic_bytes(topic: str) -> dict[str, int]:
    """The topic's partition folders in the broker's log directory: bytes of the segments
    (.log), and the disk blocks all their files hold (indices too: the active segment's are
    preallocated sparse files of 10 MiB, so their sizes would say more than the disk holds)."""
    logs = Kafka(StackSettings()).data_dir / "kraft-logs"
    files = [f for d in logs.glob(f"{topic}-[0-9]*") for f in d.iterdir() if f.is_file()]
    return {"segments": sum(f.stat().st_size for f in files if f.suffix == ".log"),
            "allocated": sum(f.stat().st_blocks * 512 for f in files)}  # fmt: skip


def produce(stack: StackEnv, topic: str, events: list[Event], partitions: int) -> None:
    """Round robin over the partitions, Kafka timestamp = Fluentd time, no compression
    (fluent-plugin-kafka's default)."""
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 20})
    for i, event in enumerate(events):
        value = json.dumps(event.record).encode()
        while True:
            try:
                producer.produce(topic, value=value, partition=i % partitions,
                                 timestamp=event.arrival_ms)  # fmt: skip
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        raise RuntimeError("records not delivered to Kafka within 60 s")


def redis_memory(redis: RedisAccess) -> dict[str, int]:
    """used_memory and used_memory_peak (INFO memory, as the admin user)."""
    info: dict[str, Any] = redis.connect("admin").info("memory")  # type: ignore[assignment]
    return {key: int(info[key]) for key in ("used_memory", "used_memory_peak")}


def write_cache(redis: RedisAccess, route: CacheRoute, events: list[Event]) -> dict[str, Any]:
    """The records into the cache through the Fluentd stand-in with the rendered route;
    Redis's memory before, sampled every 0.1 s meanwhile, and after."""
    before, sampled, stop = redis_memory(redis), [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            sampled[0] = max(sampled[0], redis_memory(redis)["used_memory"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.monotonic()
    conf = build_cache_fluent_conf(route)
    with CacheWriter(conf, redis.password_files["writer"]) as writer:
        writer.send_many((route.tag, e.arrival_ms / 1000, e.record) for e in events)
        summary = writer.close()
    seconds = time.monotonic() - began
    stop.set()
    sampler.join()
    after = redis_memory(redis)
    members: int = redis.connect("admin").zcard(route.key)  # type: ignore[assignment]
    if summary.records != len(events) or members != len(events):
        raise RuntimeError(f"{summary.records} written, {members} cached of {len(events)}")
    say(f"== cache: {members:,} members written in {seconds:.1f} s (the Fluentd stand-in)")
    return {
        "members": members, "write_seconds": round(seconds, 2), "before": before, "after": after,
        "sampled_max_used_memory": max(sampled[0], after["used_memory"]),
        "used_memory_delta": after["used_memory"] - before["used_memory"],
        "used_memory_peak_delta": after["used_memory_peak"] - before["used_memory_peak"],
    }  # fmt: skip
