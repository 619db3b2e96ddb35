"""The closed loop on the real stack: traffic → Kafka → consumers → sink, metrics → Prometheus →
ResourceManager → /scale → Deployment → ReplicaSet → scheduler → the stack's kubelet → consumer
containers (containerd, runc).

One pipeline with a scaled-down freshness target (240 s) and a burst one replica cannot absorb
in time: the ResourceManager scales up, freshness stays under the target, and it scales back
down after the burst. The burst is sized from one replica's capacity measured before, on this
machine, by the test (not the ResourceManager's estimate); freshness is measured from the
outside (`freshness_probe.py`: what was produced against what the sink holds) and
`status.freshnessSeconds` must agree with it. With Prometheus unreachable: no change, and a
condition says why.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from kubernetes import client
from kubernetes.client.rest import ApiException

from consumers import (
    ConsumerProcesses,
    committed_offsets,
    create_topics,
    make_pipeline,
    wait_consumed,
)
from exporter_harness import CYCLE_SECONDS
from freshness_probe import BAND, FreshnessProbe
from helpers import wait_for
from live_traffic import Traffic
from metricpipe_devstack.env import StackEnv
from node_harness import Node
from pipelines import condition, create_pipeline, get_pipeline

TARGET_SECONDS = 240
PARTITIONS = 4
SPEC: dict[str, Any] = {
    "source": {"tag": "e2e"},
    "topic": {"partitions": PARTITIONS},
    # grouped by the event-time text: the outside probe counts each second's records
    "metric": {
        "aggregation": "count",
        "window": "1m",
        "allowedLateness": "10s",
        "groupBy": ["time"],
    },
    "freshness": {"target": f"{TARGET_SECONDS}s"},
    "replicas": 1,
    "scaling": {"minReplicas": 1, "maxReplicas": 4, "scaleDownStabilization": "40s"},
    # Small batches make one replica slow enough that a burst outruns it on this small machine.
    "consumer": {"maxBatchRecords": 40, "maxBatchWait": "1s"},
}
OPERATOR_ENV = {"METRICPIPE_SCALING_INTERVAL_SECONDS": "5", "METRICPIPE_STARTUP_SECONDS": "20",
                "METRICPIPE_REBALANCE_SECONDS": "5"}  # fmt: skip
STEADY_RATE = 100  # records/s: one replica is enough, and busy enough to measure its capacity
# the burst: this many times one replica's capacity as measured here (the ResourceManager
# measures more under a backlog: bigger batches), so that the lag soon outgrows what the
# policy lets build on purpose (the hold: 71 s at a 240 s target)
BURST_FACTOR = 3.0
MAX_BURST_RATE = 2000.0  # records/s: what the test's producer thread sustains on this machine
CAPACITY_RECORDS = 9_000  # the backlog one replica works through to measure its capacity
CAPACITY_WARM_UP = 3_000  # ... of which the first are not timed: the JVM is still compiling
# How old status.freshnessSeconds may be against the probe: a ResourceManager cycle, a scrape,
# an exporter cycle and a consumer tick (its deployed finalize interval); and by how much it
# may differ, being rewritten only on a change of max(5 s, 10 %) (scaling/loop.py).
STATUS_STALENESS = 5.0 + 5.0 + CYCLE_SECONDS + 5.0 + 1.0


def status_band(freshness: float) -> float:
    return max(5.0, 0.1 * freshness) + BAND


def measure_capacity(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Any, name: str
) -> float:
    """One replica's records/s on this machine, measured by the test: a consumer process with
    the pipeline's batch settings works through a backlog of live-shaped records; the rate
    over the backlog's last two thirds (Spark's start-up and the JVM's first minutes of
    compiling excluded: a replica of the loop runs for minutes, and the first thousands of
    records ran at half its later speed)."""
    topic = f"{name}-capacity"
    create_topics(stack, topic, PARTITIONS)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 20})
    for i in range(CAPACITY_RECORDS):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        value = json.dumps({"time": stamp, "tag": "e2e"}).encode()
        producer.produce(topic, value=value, partition=i % PARTITIONS)
        producer.poll(0)
    assert producer.flush(30) == 0
    spec = {key: SPEC[key] for key in ("source", "metric")}
    pipeline = make_pipeline(stack, tmp_path, topic, topic, spec, "elasticsearch")
    processes.start(
        pipeline,
        METRICPIPE_MAX_BATCH_RECORDS=str(SPEC["consumer"]["maxBatchRecords"]),
        METRICPIPE_SPARK_WARM_UP_ROUNDS="3",
    )  # the capacity of a deployed consumer
    first = wait_for(
        lambda: (n if (n := _committed_count(stack, pipeline.group, topic)) >= CAPACITY_WARM_UP
                 else None),
        240, "the capacity run's warm-up records committed", interval=0.2,
    )  # fmt: skip
    started = time.monotonic()
    wait_consumed(stack, pipeline, topic, processes, timeout=300)
    capacity = (CAPACITY_RECORDS - first) / (time.monotonic() - started)
    processes.stop_all()
    return capacity


def _committed_count(stack: StackEnv, group: str, topic: str) -> int:
    return sum(max(0, offset) for offset in committed_offsets(stack, group, topic).values())


Sample = tuple[float, int, float | None, float | None]  # time, spec.replicas, freshness, capacity


def observe(kube: client.ApiClient, namespace: str, name: str) -> Sample:
    pipeline = get_pipeline(kube, namespace, name)
    status = pipeline.get("status") or {}
    return (time.time(), int(pipeline["spec"]["replicas"]), status.get("freshnessSeconds"),
            status.get("capacityPerReplica"))  # fmt: skip


def test_scales_up_for_a_burst_holds_freshness_and_scales_back(
    stack: StackEnv, kube: client.ApiClient, namespace: str, unique_name: str,
    start_operator: Any, start_exporter: Any, node: Node, processes: ConsumerProcesses,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The burst is three times one replica's capacity as the test measured it on this machine
    just before (a burst of fixed size either fits in the freshness budget of one replica, and the
    right answer is then not to scale, or not, depending on how fast this machine is today),
    and it lasts until the ResourceManager answers it. An overestimated capacity in the
    ResourceManager would under-scale, and the true freshness would show it."""
    name = "burst"
    topic = f"e2e-{unique_name}"
    capacity = measure_capacity(stack, processes, tmp_path, topic)
    burst_rate = min(MAX_BURST_RATE, BURST_FACTOR * capacity)
    print(f"one replica, measured: {capacity:.0f} records/s; burst at {burst_rate:.0f}")
    assert capacity > STEADY_RATE / 0.7, "one replica must carry the steady phase"
    probe = FreshnessProbe(stack.elasticsearch_url, f"metricpipe-{namespace}.{name}.metrics",
                           window_seconds=60)  # the operator's default index (docs)  # fmt: skip
    create_topics(stack, topic, PARTITIONS)  # created up front: the producer starts at once
    start_exporter(namespace=namespace)
    operator = start_operator(namespace, METRICPIPE_PROMETHEUS_URL=stack.prometheus_url,
                              METRICPIPE_ADOPT_TOPICS=re.escape(topic) + r"(\.dlq)?",  # pre-created
                              **OPERATOR_ENV)  # fmt: skip
    create_pipeline(kube, namespace, name, {**SPEC, "topic": {**SPEC["topic"], "name": topic}})
    apps = client.AppsV1Api(kube)

    def ready_consumers() -> int:
        try:
            status = apps.read_namespaced_deployment(f"{name}-consumer", namespace).status
        except ApiException as error:
            if error.status == 404:  # the operator has not created it yet
                return 0
            raise
        return int(status.ready_replicas or 0) if status is not None else 0

    traffic = Traffic(stack, topic, probe, PARTITIONS)
    traffic.thread.start()
    seen: list[Sample] = []

    def sample() -> Sample:
        seen.append(observe(kube, namespace, name))
        return seen[-1]

    with probe.watch(interval=2.0):
        try:
            wait_for(lambda: ready_consumers() == 1, 120, "one ready consumer pod")
            traffic.rate = STEADY_RATE
            wait_for(lambda: sample()[3] is not None, 180,
                     "a measured capacity in status (the consumer is processing)")  # fmt: skip
            steady_until = time.monotonic() + 20  # four scaling cycles
            while time.monotonic() < steady_until:  # one replica is enough
                assert sample()[1] == 1, f"scaled without a burst: {seen}"
                time.sleep(5)
            steady = len(seen)

            def outrun_one_replica() -> bool:
                replicas = sample()[1]
                if replicas == 1:
                    traffic.rate = burst_rate
                return replicas > 1

            wait_for(outrun_one_replica, 300, "a scale-up for the burst", interval=5)
            burst_until = time.monotonic() + 30  # the larger group works through the burst a while
            while time.monotonic() < burst_until:
                sample()
                time.sleep(5)
            traffic.rate = STEADY_RATE
            wait_for(lambda: sample()[1] == 1, 420, "scale-down to 1 replica after the burst",
                     interval=5)  # fmt: skip
        except AssertionError:
            status = get_pipeline(kube, namespace, name).get("status")
            print(f"pipeline status: {status}\noperator log:\n{operator.log()[-3000:]}")
            raise
        finally:
            traffic.stop.set()
            print(f"true freshness (s since start, s): {probe.timeline()}")
            timeline = [(round(t - seen[0][0]), r, f, c) for t, r, f, c in seen] if seen else []
            print(f"timeline (s, replicas, freshness, capacity/replica): {timeline}")
    assert max(r for _, r, _, _ in seen[steady:]) > 1
    # The SLO, measured from the outside: what was produced against what the sink held.
    assert not any(r.excess for r in probe.readings), "the sink holds more than was sent"
    assert max(r.freshness for r in probe.readings) <= TARGET_SECONDS, probe.timeline()
    # status.freshnessSeconds says the same, within its staleness and rewrite band.
    problems = [
        problem for at, _, freshness, _ in seen if freshness is not None
        if (problem := probe.disagreement(at, freshness, STATUS_STALENESS,
                                          status_band(freshness)))
    ]  # fmt: skip
    assert problems == [], problems
    events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
    reasons = {e.reason for e in events if e.involved_object.name == name}
    assert {"ScaledUp", "ScaledDown"} <= reasons, reasons
    status = get_pipeline(kube, namespace, name)["status"]  # the last scale, in status too
    assert status.get("lastScaleTime"), status
    assert "→ 1" in status.get("lastScaleReason", ""), status  # the scale-down came last


def test_no_change_and_a_condition_when_prometheus_is_unreachable(
    stack: StackEnv, kube: client.ApiClient, namespace: str, start_operator: Any,
) -> None:  # fmt: skip
    name = "blind"
    start_operator(namespace, METRICPIPE_PROMETHEUS_URL="http://127.0.0.1:9", **OPERATOR_ENV)
    create_pipeline(kube, namespace, name, {**SPEC, "replicas": 2})

    def unavailable() -> dict[str, Any] | None:
        found = condition(get_pipeline(kube, namespace, name), "MetricsAvailable")
        return found if found.get("status") == "False" else None

    found = wait_for(unavailable, 60, "MetricsAvailable=False")
    assert found["reason"] == "MetricsUnavailable"
    assert "127.0.0.1:9" in found["message"]
    time.sleep(12)  # two more cycles
    pipeline = get_pipeline(kube, namespace, name)
    assert pipeline["spec"]["replicas"] == 2
    assert pipeline["status"]["slo"] == "Unknown"
