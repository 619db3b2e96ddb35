"""The lag exporter as a real process, scraped by the real Prometheus, against real Kafka.

A consumer group is paused while records arrive at a known rate: the exported time lag is the
age of the oldest unconsumed record (within one scrape interval), the lag in records is exactly
what the AdminClient says, and both fall to 0 once the group resumes. A quiet topic gives 0,
never NaN. Freshness from the consumers' watermarks and from the sink prober agree.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_api_client import PrometheusConnect

from consumers import ConsumerProcesses, create_topics, make_pipeline
from exporter_harness import CYCLE_SECONDS, register
from freshness_probe import FreshnessProbe
from helpers import free_port, wait_for
from metricpipe_contract import names
from metricpipe_devstack.env import StackEnv

PARTITIONS = 3
SCRAPE_SECONDS = 5.0  # the local stack's scrape interval
FINALIZE_SECONDS = 2.0  # the test consumers' finalize (tick) interval (tests/consumers.py)
# how old a source's value may be against the probe: a scrape, a consumer tick, a cycle
TRUTH_STALENESS = SCRAPE_SECONDS + FINALIZE_SECONDS + CYCLE_SECONDS + 1.0


def pipeline_object(name: str, topic: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "it", "name": name},
            "spec": {"topic": {"name": topic}, "source": {"tag": "t"},
                     "metric": {"aggregation": "count", "window": "1m"}}}  # fmt: skip


def query(stack: StackEnv, promql: str) -> tuple[float, dict[str, float]]:
    """Evaluate now; (evaluation time, {partition or pipeline: value})."""
    at = time.time()
    prom = PrometheusConnect(url=stack.prometheus_url, disable_ssl=True)
    result = prom.custom_query(promql, params={"time": at})
    values = {}
    for sample in result:
        key = sample["metric"].get("partition") or sample["metric"].get("pipeline", "")
        values[key] = float(sample["value"][1])
    return at, values


def admin_lag(stack: StackEnv, group: str, topic: str) -> dict[str, int]:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    ends = admin.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in range(PARTITIONS)}
    )
    request = [ConsumerGroupTopicPartitions(group)]
    committed = admin.list_consumer_group_offsets(request)[group].result().topic_partitions
    by_partition = {tp.partition: tp.offset for tp in committed}
    return {
        str(tp.partition): f.result().offset - by_partition[tp.partition] for tp, f in ends.items()
    }


def consume_all_and_commit(stack: StackEnv, group: str, topic: str) -> None:
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "enable.partition.eof": True})  # fmt: skip
    consumer.subscribe([topic])
    at_end: set[int] = set()
    deadline = time.monotonic() + 60
    while len(at_end) < PARTITIONS and time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=1):
            if message.error() is not None:
                at_end.add(message.partition() or 0)
            else:
                at_end.discard(message.partition() or 0)
    consumer.commit(asynchronous=False)
    consumer.close()
    assert len(at_end) == PARTITIONS, "could not read the topic to its end"


class RateProducer:
    """Produces `rate` records/s spread over the partitions; remembers, per partition, the
    broker timestamp of the first record it produced (the oldest unconsumed one)."""

    def __init__(self, stack: StackEnv, topic: str, rate: float) -> None:
        self.producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 5})
        self.topic, self.rate = topic, rate
        self.first_ms: dict[str, int] = {}
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, error: Any, message: Any) -> None:
        if error is None:
            self.first_ms.setdefault(str(message.partition()), message.timestamp()[1])

    def _run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            while self.sent < (time.monotonic() - started) * self.rate:
                self.producer.produce(self.topic, value=b"{}", partition=self.sent % PARTITIONS,
                                      on_delivery=self._delivered)  # fmt: skip
                self.sent += 1
            self.producer.poll(0.02)
        self.producer.flush(30)

    def __enter__(self) -> RateProducer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def assert_time_lag_exact(stack: StackEnv, group: str, first_ms: dict[str, int]) -> None:
    at, values = query(stack, f'{names.GROUP_TIME_LAG}{{consumergroup="{group}"}}')
    assert set(values) == set(first_ms) == {str(p) for p in range(PARTITIONS)}
    for partition, value in values.items():
        age = at - first_ms[partition] / 1000  # the oldest unconsumed record's age, now
        # The value is exact when it is scraped (the record's timestamp is looked up once; the
        # committed offset does not move while paused), and the sample Prometheus answers with
        # is from its latest scrape: at most one scrape interval old (0.5 s for clock reads).
        assert age - SCRAPE_SECONDS - 0.5 <= value <= age + 0.5, (
            partition,
            value,
            age,
        )


def test_time_lag_is_exact_while_paused_and_zero_after_resume(
    stack: StackEnv, unique_name: str, start_exporter: Any
) -> None:
    topic, name = f"lag-{unique_name}", f"lag-{unique_name}"[:50]
    group = f"metricpipe.it.{name}"
    create_topics(stack, topic, PARTITIONS)
    with RateProducer(stack, topic, rate=60) as early:  # some history, then caught up
        time.sleep(2)
    assert early.sent > 0
    consume_all_and_commit(stack, group, topic)
    exporter = start_exporter([pipeline_object(name, topic)])

    # Quiet topic, group caught up: 0 for every partition, never NaN and no false lag.
    def quiet_zero() -> bool:
        _, values = query(stack, f'{names.GROUP_TIME_LAG}{{consumergroup="{group}"}}')
        return len(values) == PARTITIONS and all(v == 0.0 for v in values.values())

    wait_for(quiet_zero, 45, "time lag 0 on a quiet, caught-up topic")

    # The group is paused (no member) while records arrive at a known rate.
    with RateProducer(stack, topic, rate=50) as paused:
        time.sleep(12)
        assert_time_lag_exact(stack, group, paused.first_ms)  # while they still arrive
    time.sleep(SCRAPE_SECONDS + 2 * CYCLE_SECONDS + 1)  # a scrape after the last record
    assert_time_lag_exact(stack, group, paused.first_ms)

    # Lag in records: exactly the AdminClient's, both at the exporter and in Prometheus.
    expected = admin_lag(stack, group, topic)
    assert sum(expected.values()) == paused.sent
    exported = {s.labels["partition"]: int(s.value)
                for s in exporter.families()[names.GROUP_LAG].samples}  # fmt: skip
    assert exported == expected
    _, in_prometheus = query(stack, f'{names.GROUP_LAG}{{consumergroup="{group}"}}')
    assert {k: int(v) for k, v in in_prometheus.items()} == expected

    # Resumed: the group reads everything; time lag and lag fall to 0.
    consume_all_and_commit(stack, group, topic)

    def drained() -> bool:
        _, seconds = query(stack, f'{names.GROUP_TIME_LAG}{{consumergroup="{group}"}}')
        _, records = query(stack, f'{names.GROUP_LAG}{{consumergroup="{group}"}}')
        return (
            len(seconds) == PARTITIONS and not any(seconds.values()) and not any(records.values())
        )

    wait_for(drained, 30, "time lag and lag back to 0 after the group resumed")


def test_freshness_from_watermarks_and_from_the_sink_agree(
    stack: StackEnv, unique_name: str, tmp_path: Path, start_exporter: Any,
    processes: ConsumerProcesses,
) -> None:  # fmt: skip
    """A deliberately slow consumer (tiny batches) falls behind live traffic: freshness grows
    to tens of seconds, and both sources say what the outside probe measures all along."""
    topic = f"fresh-{unique_name}"
    create_topics(stack, topic, PARTITIONS)
    spec = {"source": {"tag": "t"},
            "metric": {"aggregation": "count", "window": "1m", "groupBy": ["time"]}}  # fmt: skip
    pipeline = make_pipeline(stack, tmp_path, f"fresh-{unique_name}"[:50], topic, spec,
                             "elasticsearch")  # fmt: skip
    key = f"it/{pipeline.name}"
    sink = pipeline.document["sink"]
    probe = FreshnessProbe(sink["endpoint"], sink["index"], window_seconds=60)
    metrics_port = free_port()
    # 10 records a batch: well under the 300 records/s of the traffic whatever the machine's
    # load (at 25 a batch it kept pace at ~13 s behind in one run of the whole suite)
    slow = processes.start(pipeline, METRICPIPE_METRICS_PORT=str(metrics_port),
                           METRICPIPE_MAX_BATCH_RECORDS="10")  # fmt: skip
    consumer_sd = register(stack, metrics_port, names.CONSUMER_JOB, f"consumer-{metrics_port}")
    spec_object = {"metadata": {"namespace": "it", "name": pipeline.name},
                   "spec": {**spec, "topic": {"name": topic}}}  # fmt: skip
    start_exporter([spec_object])
    consumer_expr = f'time() - min by (pipeline) ({names.CONSUMER_WATERMARK}{{pipeline="{key}"}})'
    sink_expr = f'{names.SINK_FRESHNESS}{{pipeline="{key}"}}'
    pairs: list[tuple[float, float]] = []  # while live traffic arrives
    after: list[tuple[float, float]] = []  # after it stopped
    # (time, the consumers' lowest watermark, the sink prober's watermark): what each source
    # says the sink reflects, compared with the probe's truth
    reported: list[tuple[float, float, float]] = []
    watermark_exprs = (f'min by (pipeline) ({names.CONSUMER_WATERMARK}{{pipeline="{key}"}})',
                       f'{names.SINK_WATERMARK}{{pipeline="{key}"}}')  # fmt: skip

    def sample(into: list[tuple[float, float]]) -> None:
        into.extend(_pair(stack, consumer_expr, sink_expr, key))
        reported.extend((time.time(), w, s) for w, s in _pair(stack, *watermark_exprs, key))

    try:
        with probe.watch():
            with LiveEvents(stack, topic, rate=300, probe=probe):
                # both sources answer once the consumer's first batches are in (JVM start included)
                wait_for(lambda: _pair(stack, consumer_expr, sink_expr, key), 120, "both sources")
                # The tolerance below holds while freshness moves at most 1 s/s (it grows no faster
                # than the clock). The first batches after the JVM start drain the backlog of the
                # start faster than that, so a source sampled a scrape earlier may differ by more:
                # comparison starts once that first catch-up is a scrape and a cycle behind.
                time.sleep(SCRAPE_SECONDS + CYCLE_SECONDS)
                deadline = time.monotonic() + 30  # >= 10 pairs at one per 2 s
                while time.monotonic() < deadline:
                    processes.assert_alive()
                    sample(pairs)
                    time.sleep(2)
            # Traffic stopped. The slow consumer hands over (SIGTERM) to one with the default
            # batch size on the same metrics port, as a scale-up would: its backlog (tens of
            # seconds of traffic, more on a busy machine) would otherwise take minutes at 25
            # records a batch. Both sources must see the catch-up; sampled a further 10 s to
            # compare them after the step.
            slow.terminate()
            assert slow.wait(timeout=60) == 0
            processes.start(pipeline, METRICPIPE_METRICS_PORT=str(metrics_port))
            deadline, settled = time.monotonic() + 150, None
            while time.monotonic() < (settled or deadline):
                sample(after)
                if settled is None and after and max(after[-1]) < 5:
                    settled = time.monotonic() + 10
                time.sleep(2)
    finally:
        consumer_sd.unlink(missing_ok=True)
    print(f"(from watermarks, from the sink) every 2 s: {pairs}; after the traffic: {after}")
    print(f"probe (s since start, true freshness): {probe.timeline()}")
    print(f"true delay of each window's finals, s: {probe.window_delays()}")
    assert len(pairs) >= 10, (
        f"too few samples with both sources present: {pairs}\n{processes.logs()}"
    )
    assert max(s for _, s in pairs) > 15, f"the consumer never fell behind: {pairs}"
    # Each source is sampled at most a scrape interval plus a consumer tick / exporter cycle
    # before the evaluation, so they may differ by that much, never by the trend.
    tolerance = 2 * SCRAPE_SECONDS + 2.0 + CYCLE_SECONDS
    for from_watermarks, from_sink in pairs:
        assert abs(from_watermarks - from_sink) <= tolerance, pairs
    # Catching up is one step down (the whole backlog at once), which each source sees at its
    # own next scrape: the two may disagree by the step for up to a scrape interval, so here
    # only the outcome is compared: both see the catch-up, and then agree.
    caught_up = [i for i, (w, s) in enumerate(after) if w < 5 and s < 5]
    assert caught_up, f"a source never saw the catch-up: {after}"
    for from_watermarks, from_sink in after[caught_up[0] :]:
        assert abs(from_watermarks - from_sink) <= tolerance, after
    # The truth, from what was produced and what the sink holds: each source is at most a
    # scrape interval plus an exporter cycle / a batch old, and event time counts in whole
    # seconds; a source fresher than the sink is (or staler) fails here.
    assert not any(r.excess for r in probe.readings), "the sink holds more than was sent"
    assert max(r.freshness for r in probe.readings) > 15, "truly behind at some point"
    assert probe.readings[-1].freshness < 5, "truly caught up at the end"
    problems = [problem for at, consumers, sink_prober in reported
                for problem in (probe.frontier_disagreement(at, consumers, TRUTH_STALENESS),
                                probe.frontier_disagreement(at, sink_prober, TRUTH_STALENESS))
                if problem]  # fmt: skip
    assert problems == [], problems


def _pair(
    stack: StackEnv, consumer_expr: str, sink_expr: str, key: str
) -> list[tuple[float, float]]:
    _, watermark = query(stack, consumer_expr)
    _, sink = query(stack, sink_expr)
    if key in watermark and key in sink:
        return [(watermark[key], sink[key])]
    return []


class LiveEvents(RateProducer):
    """Records whose event time is their produce time, each told to the probe."""

    def __init__(self, stack: StackEnv, topic: str, rate: float, probe: FreshnessProbe) -> None:
        super().__init__(stack, topic, rate)
        self.probe = probe

    def _run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            while self.sent < (time.monotonic() - started) * self.rate:
                when = _now_rfc3339()
                value = json.dumps({"time": when, "tag": "t"}).encode()
                self.producer.produce(self.topic, value=value, partition=self.sent % PARTITIONS)
                self.probe.produced(when)
                self.sent += 1
            self.producer.poll(0.02)
        self.producer.flush(30)


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
