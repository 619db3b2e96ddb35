"""Benchmark: stream, batch over Kafka and batch over the Redis cache, on the same records and
machine: delay from a window's end to its final document, CPU seconds per million records, and
what the hour costs the store (Redis memory; Kafka's segment bytes and broker memory).

Data: the busiest hour of the shared Apache log (else the seeded generator, said in the output)
repeated `--copies` times (100), moved into a recent closed hour, each record as Fluentd sends
it ({"message": line}) with its Fluentd time (= Kafka timestamp = cache score) its event time
plus 0-1.5 s; and one record of the next hour per partition at end + lateness, the records
that in live traffic move the stream consumer's watermark past the window. One metric, the
hourly request count (`aggregation: count`, apache_combined, 1h window, 10m lateness) into
Elasticsearch, an index per mode; the three final documents of the hour must be equal, count
and value (exit 1 if not).

Each mode runs as deployed, in a process started as its pod starts it (the container's env,
`python -m metricpipe_consumers stream|batch`):
- stream: the consumer starts and joins its group first (a Deployment runs all the time);
  then the hour is produced, and once it is consumed the closing records. Its CPU is the
  process tree's (Python + Spark JVM) from the first record produced to the final document;
  its delay is the lateness (the closing records' event time, by the watermark rule) plus the
  measured time from the closing records in Kafka to the final document (poll, batch, state
  write, the next finalisation tick of 5 s);
- batch: the CronJob's run for the hour, `batch --window-start`, started after the data is in
  the store. Its CPU is exact (bench/cpu.py run_to_exit: the JVM start included); its delay
  is the schedule's (build_batch_schedule: the run fires at end + lateness, rounded up to the
  minute) plus the run's measured wall time from process start. A pod's start (scheduling,
  the image, the container) is not included.

Run with `make bench` (starts the local stack if needed). Results:
bench/results/batch-modes-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from batch_modes_data import (
    HEADER,
    HOUR_MS,
    Event,
    build_closing_events,
    build_hour_events,
    build_rows,
    compare_modes,
    decide_bench_hour,
    format_table,
    next_cron_fire_ms,
    pick_busiest_hour,
    window_results,
)
from batch_modes_stores import broker_rss, produce, topic_bytes, write_cache
from confluent_kafka.admin import AdminClient, NewTopic
from consumer_memory import free_port, replica_env, wait_started
from consumer_throughput import ensure_stack, lagging, say
from cpu import run_to_exit, tree_cpu_seconds
from spark_peer import fetch_windows

from metricpipe_consumers.documents import iso, series_id
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.naming import build_index_names
from metricpipe_contract.refs import PipelineRef
from metricpipe_demo.generator import (
    SyntheticSettings,
    describe_synthetic,
    iter_synthetic_access_lines,
)
from metricpipe_devstack.datasets import DatasetMissingError, iter_access_log_lines
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.redis import ROLE_USERS
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.batchjob import build_batch_container
from metricpipe_operator.reconcile.cache_route import CacheRoute
from metricpipe_operator.reconcile.consumer import build_container, build_pipeline_document
from metricpipe_operator.scaling.batch import build_batch_schedule

MODES = ("stream", "kafka batch", "redis batch")
TAG = "edge.access"
LATENESS_MS = 600_000
METRIC = {"aggregation": "count", "eventTime": {"field": "time", "format": "clf"},
          "window": "1h", "allowedLateness": "10m"}  # fmt: skip
RUN_TIMEOUT_SECONDS = 600
SYNTHETIC_HOURS = 84  # as long as the real log


def build_spec(mode: str, topic: str) -> MetricPipelineSpec:
    source: dict[str, Any] = {"tag": TAG, "format": "apache_combined"}
    if mode == "redis batch":
        source["store"] = "redis"
    return MetricPipelineSpec.model_validate({
        "mode": "stream" if mode == "stream" else "batch", "source": source, "metric": METRIC,
        "topic": {"name": topic}, "sink": {"backend": "elasticsearch"},
    })  # fmt: skip


class Bench:
    """One run: its names, the pipelines' documents and containers, and the scratch folder."""

    def __init__(self, stack: StackEnv, scratch: Path) -> None:
        assert stack.redis is not None, "the stack has no Redis: run 'make stack-up'"
        self.stack, self.scratch, run = stack, scratch, uuid.uuid4().hex[:6]
        self.namespace, self.topic = f"bench-modes-{run}", f"bench-modes-{run}"
        self.config = OperatorConfig(
            kafka_bootstrap=stack.kafka_bootstrap, elasticsearch_url=stack.elasticsearch_url,
            redis_host=stack.redis.host, redis_port=stack.redis.port,
        )  # fmt: skip
        self.refs = {m: PipelineRef(self.namespace, m.replace(" ", "-"), "uid") for m in MODES}
        self.documents = {
            m: build_pipeline_document(self.refs[m], build_spec(m, self.topic), self.topic,
                                       self.config)
            for m in MODES
        }  # fmt: skip
        self.route = CacheRoute(self.namespace, TAG, stack.redis.host, stack.redis.port,
                                self.config.cache_retention_seconds)  # fmt: skip

    def index(self, mode: str) -> str:
        return str(self.documents[mode]["sink"]["index"])

    def env(self, mode: str, port: int) -> dict[str, str]:
        """The container's environment on this host (consumer_memory.replica_env), with the
        stack's Kafka connector jars and Redis credentials where the pod gets them."""
        ref, spec = self.refs[mode], build_spec(mode, self.topic)
        if mode == "stream":
            container = build_container(ref, spec, self.config, "h")
        else:  # the CronJob's container, at the parallelism of a new pipeline (replicas)
            container = build_batch_container(ref, spec, self.config, "h", spec.replicas)
        path = self.scratch / f"{ref.name}.json"
        path.write_text(json.dumps(self.documents[mode]))
        env = replica_env(container, path, self.scratch, port)
        if self.stack.spark_class_archive:  # the consumer image has one
            env["METRICPIPE_SPARK_CLASS_ARCHIVE"] = str(self.stack.spark_class_archive)
        # the Kafka connector's jars where this host keeps them (the image's path otherwise);
        # a run over the cache reads no Kafka and starts without them
        env.pop("METRICPIPE_SPARK_JARS", None)
        if mode == "kafka batch":
            env["METRICPIPE_SPARK_JARS"] = ",".join(self.stack.spark_kafka_jars)
        if mode == "redis batch":
            assert self.stack.redis is not None
            env["METRICPIPE_REDIS_USERNAME"] = ROLE_USERS["batch"]
            env["METRICPIPE_REDIS_PASSWORD"] = self.stack.redis.password("batch")
        return env

    def final_visible(self, mode: str, window_start_ms: int) -> bool:
        """The window's final document, read by id (a realtime GET: no refresh wait)."""
        key = f"{self.namespace}/{self.refs[mode].name}"
        doc_id = f"{series_id(key, window_start_ms, ())}-final"
        url = f"{self.stack.elasticsearch_url}/{self.index(mode)}/_doc/{doc_id}"
        return requests.get(url, timeout=10).status_code == 200


def load_hour(data_dir: Path) -> tuple[str, int, list[str]]:
    """(where the lines come from, the busiest hour's start, its lines)."""
    try:
        lines = list(iter_access_log_lines(data_dir))
        source = "the shared Apache log"
    except DatasetMissingError:
        say(f"!! {describe_synthetic(data_dir)} (seeded: the same lines on every machine)")
        generated = iter_synthetic_access_lines(SyntheticSettings(), SYNTHETIC_HOURS)
        lines = [entry.line.decode() for entry in generated]
        source = "synthetic (metricpipe_demo.generator, seed 7)"
    start, hour = pick_busiest_hour(lines)
    return source, start, hour


def wait_for(condition: Any, timeout: float, what: str, process: Any = None) -> float:
    """Polls every 0.1 s; the monotonic time it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the consumer exited with {process.returncode} ({what})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic()


@contextmanager
def stream_consumer(bench: Bench) -> Iterator[subprocess.Popen[bytes]]:
    port = free_port()
    log = (bench.scratch / "stream.log").open("wb")
    argv = [sys.executable, "-m", "metricpipe_consumers", "stream"]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                               env=bench.env("stream", port))  # fmt: skip
    try:
        started = wait_started(port, process, 300)
        say(f"   the consumer started in {started:.1f} s (Spark up, group joined)")
        yield process
    except (RuntimeError, TimeoutError):
        say((bench.scratch / "stream.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        process.terminate()
        process.wait(120)
        log.close()


def measure_stream(bench: Bench, hour: list[Event], closing: list[Event], start_ms: int,
                   partitions: int) -> dict[str, Any]:  # fmt: skip
    say("== stream: the consumer as its Deployment runs it, then the hour into its topic")
    group = str(bench.documents["stream"]["consumerGroup"])
    with stream_consumer(bench) as process:
        idle_cpu = tree_cpu_seconds(process.pid)
        began, cpu_before = time.monotonic(), idle_cpu
        produce(bench.stack, bench.topic, hour, partitions)
        available = time.monotonic()
        consumed = wait_for(lambda: lagging(bench.stack, group, bench.topic) == 0, 300,
                            "the hour consumed", process)  # fmt: skip
        produce(bench.stack, bench.topic, closing, partitions)
        closed = time.monotonic()
        final = wait_for(lambda: bench.final_visible("stream", start_ms), 300,
                         "the final document", process)  # fmt: skip
        cpu = tree_cpu_seconds(process.pid) - cpu_before
    result = {
        "start_cpu_seconds": round(idle_cpu, 2), "cpu_seconds": round(cpu, 2),
        "produce_seconds": round(available - began, 2),
        "hour_available_to_consumed_seconds": round(consumed - available, 2),
        "closing_records_to_final_seconds": round(final - closed, 2),
        "first_record_to_final_seconds": round(final - began, 2),
    }  # fmt: skip
    say(f"   {result}")
    return result


def measure_batch(bench: Bench, mode: str, start_ms: int) -> dict[str, Any]:
    say(f"== {mode}: the CronJob's run for the hour, `batch --window-start {iso(start_ms)}`")
    argv = [sys.executable, "-m", "metricpipe_consumers", "batch", "--window-start", iso(start_ms)]
    name = mode.replace(" ", "-")
    out, log = bench.scratch / f"{name}.out", bench.scratch / f"{name}.log"
    with out.open("wb") as stdout, log.open("wb") as stderr:
        run = run_to_exit(argv, bench.env(mode, 0), stdout, stderr, RUN_TIMEOUT_SECONDS)
    if run.returncode != 0:
        say(log.read_text(errors="replace")[-3000:])
        raise RuntimeError(f"the {mode} run exited with {run.returncode}")
    report = json.loads(out.read_text().strip().splitlines()[-1])
    result = {"wall_seconds": round(run.wall_seconds, 2), "cpu_seconds": round(run.cpu_seconds, 2),
              "reaped_descendants": run.descendants, "report": report}  # fmt: skip
    say(f"   wall {run.wall_seconds:.1f} s, CPU {run.cpu_seconds:.1f} s; {report}")
    return result


def cleanup(bench: Bench) -> None:
    admin = AdminClient({"bootstrap.servers": bench.stack.kafka_bootstrap})
    for future in admin.delete_topics([bench.topic, f"{bench.topic}.dlq"]).values():
        try:
            future.result(30)
        except Exception as error:  # a topic never made: said, the rest still cleaned
            say(f"   topic not deleted: {error}")
    if bench.stack.redis is not None:
        keys = [bench.route.key, *(str(bench.documents["redis batch"]["cache"]["deadLetterKey"]),)]
        bench.stack.redis.connect("admin").delete(*keys)
    for mode in MODES:
        for index in build_index_names(bench.index(mode)):
            requests.delete(f"{bench.stack.elasticsearch_url}/{index}", timeout=30)
    say("== cleaned up: the topic and its .dlq, the cache key and dead-letter hash, 6 indices")


@dataclass
class Outcome:
    """What one run measured."""

    source: str
    source_start: int
    start: int  # the hour computed
    records: int  # in that hour
    closing: int  # records of the next hour at end + lateness
    schedule: str  # the batch CronJob's
    offset_s: float  # from the window's end to the CronJob's run, by the schedule
    modes: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, dict[str, tuple[int, float]]] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    kafka: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[list[Any]]:
        lateness_s = LATENESS_MS / 1000
        delays = {"stream": (lateness_s, self.modes["stream"]["closing_records_to_final_seconds"])}
        for mode in MODES[1:]:
            delays[mode] = (self.offset_s, self.modes[mode]["wall_seconds"])
        return build_rows(self.records, {m: self.modes[m]["cpu_seconds"] for m in MODES}, delays)


def measure(bench: Bench, outcome: Outcome, hour: list[Event], closing: list[Event]) -> None:
    """The three modes over the same records, one after the other; the stores' figures."""
    stack, partitions = bench.stack, len(closing)
    rss_before = broker_rss()
    topics = [NewTopic(bench.topic, partitions, 1), NewTopic(f"{bench.topic}.dlq", 1, 1)]
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for future in admin.create_topics(topics).values():
        future.result(30)
    outcome.modes["stream"] = measure_stream(bench, hour, closing, outcome.start, partitions)
    outcome.kafka = {"topic": topic_bytes(bench.topic), "broker_rss_before": rss_before,
                     "broker_rss_after": broker_rss()}  # fmt: skip
    outcome.modes["kafka batch"] = measure_batch(bench, "kafka batch", outcome.start)
    assert stack.redis is not None
    records = sorted(hour + closing, key=lambda e: e.arrival_ms)
    outcome.cache = write_cache(stack.redis, bench.route, records)
    outcome.modes["redis batch"] = measure_batch(bench, "redis batch", outcome.start)
    for mode in MODES:
        finals = fetch_windows(stack.elasticsearch_url, bench.index(mode))
        outcome.results[mode] = window_results(finals, outcome.start)


def print_report(outcome: Outcome) -> None:
    """The table, and what its figures consist of."""
    modes, cache, kafka = outcome.modes, outcome.cache, outcome.kafka
    say(f"\n-- the hour {iso(outcome.start)}: {outcome.records:,} records; final documents "
        f"(group: count, value): {outcome.results}")  # fmt: skip
    for line in format_table(HEADER, outcome.rows()):
        say(line)
    say(f"stream: the lateness (the closing records' event time: the watermark rule) + closing "
        f"records in Kafka -> final document (measured); CPU from the first record produced "
        f"to the final document, its start ({modes['stream']['start_cpu_seconds']} CPU s) not "
        f"counted. batch: the schedule '{outcome.schedule}' fires {outcome.offset_s:.0f} s "
        f"after the end + the run's wall time from process start (JVM start included, a pod's "
        f"start not); CPU of the whole run.")  # fmt: skip
    used = cache["used_memory_delta"]
    say(f"redis: used_memory {cache['before']['used_memory']:,} -> "
        f"{cache['after']['used_memory']:,} B (+{used:,} B, {used / cache['members']:.0f} B a "
        f"member), sampled max {cache['sampled_max_used_memory']:,} B; used_memory_peak "
        f"+{cache['used_memory_peak_delta']:,} B (a lifetime high-water mark: +0 when an "
        f"earlier peak was higher)")  # fmt: skip
    topic = kafka["topic"]
    say(f"kafka: the topic's segments on disk {topic['segments']:,} B (disk blocks of all its "
        f"files {topic['allocated']:,} B); broker JVM RSS {kafka['broker_rss_before']:,} -> "
        f"{kafka['broker_rss_after']:,} B (Kafka keeps records in its log files and the page "
        f"cache, not on its heap)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=100, help="copies of the busiest hour")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the shared data (default: METRICPIPE_DATA_DIR)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    began = time.monotonic()
    stack = ensure_stack()
    source, source_start, lines = load_hour(args.data_dir or stack.data_dir)
    start = decide_bench_hour(int(time.time() * 1000), LATENESS_MS)
    hour = build_hour_events(lines, source_start, start, args.copies)
    partitions = build_spec("stream", "t").topic.partitions
    closing = build_closing_events(lines[0], start + HOUR_MS, LATENESS_MS, partitions)
    schedule = build_batch_schedule(HOUR_MS / 1000, LATENESS_MS / 1000)
    offset_s = (next_cron_fire_ms(schedule, start + HOUR_MS) - start - HOUR_MS) / 1000
    outcome = Outcome(source, source_start, start, len(hour), len(closing), schedule, offset_s)
    say(f"-- {len(lines)} lines of the busiest hour of {source} ({iso(source_start)}) x"
        f"{args.copies} = {len(hour):,} records, moved to {iso(start)}; + {partitions} closing "
        f"records at end + lateness ({iso(start + HOUR_MS + LATENESS_MS)})")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-modes-") as scratch:
        bench = Bench(stack, Path(scratch))
        try:
            measure(bench, outcome, hour, closing)
        finally:
            cleanup(bench)
    problems = compare_modes(outcome.results)
    print_report(outcome)
    run_seconds = time.monotonic() - began
    say(f"run time {run_seconds:.0f} s on {os.cpu_count()} cores")
    result = {
        "when": datetime.now(UTC).isoformat(), **asdict(outcome), "copies": args.copies,
        "metric": METRIC, "table": [dict(zip(HEADER, r, strict=True)) for r in outcome.rows()],
        "equal": not problems, "problems": problems, "run_seconds": round(run_seconds, 1),
        "cores": os.cpu_count(),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"batch-modes-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    say(f"== results written to {path}")
    for problem in problems:
        say(f"!! the modes differ: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
