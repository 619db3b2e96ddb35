"""Scale to zero on the real stack: a low-rate pipeline with `minReplicas: 0` and a short
freshness target sleeps (0 consumer pods), is woken before its records grow too old, drains
and sleeps again, at least twice — through the whole loop: the exporter reporting lag and time
lag with no consumer running, Prometheus, the ResourceManager's sleep layer, /scale, the
Deployment and the stack's kubelet starting real consumer containers.

Every event-time window's final documents must hold every record sent for it, no more, within
the target of the window's end; measured from the outside (`freshness_probe.py`: what the test
produced against what the sink holds), not from the system's own numbers. `kubectl get mp`
shows the sleep (State, Next-Wake) and Events say why.
"""

from __future__ import annotations

import re
import subprocess
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from consumers import create_topics
from freshness_probe import FreshnessProbe
from helpers import wait_for
from live_traffic import Traffic
from metricpipe_devstack.env import StackEnv
from node_harness import Node
from pipelines import create_pipeline, get_pipeline

TARGET_SECONDS = 150
WINDOW_SECONDS = 30  # short windows: several close within the test
PARTITIONS = 2
RATE = 40.0  # records/s: one replica is busy enough to measure, and well under half busy
SPEC: dict[str, Any] = {
    "source": {"tag": "e2e"},
    "topic": {"partitions": PARTITIONS},
    "metric": {"aggregation": "count", "window": f"{WINDOW_SECONDS}s", "allowedLateness": "5s",
               "groupBy": ["time"]},  # the outside probe counts each second's records
    "freshness": {"target": f"{TARGET_SECONDS}s"},
    "replicas": 1,
    "scaling": {"minReplicas": 0, "maxReplicas": 2, "scaleDownStabilization": "30s"},
    "consumer": {"maxBatchWait": "1s"},
}  # fmt: skip
# A short target makes short cycles: the operator is told a cycle of ~2 minutes pays (a real
# deployment keeps the default 4 events an hour), and to allow a change every 20 s.
OPERATOR_ENV = {"METRICPIPE_SCALING_INTERVAL_SECONDS": "5", "METRICPIPE_STARTUP_SECONDS": "20",
                "METRICPIPE_REBALANCE_SECONDS": "5", "METRICPIPE_SCALING_COOLDOWN_SECONDS": "20",
                "METRICPIPE_SLEEP_MAX_EVENTS_PER_HOUR": "120"}  # fmt: skip
WAKES = 2  # sleep, wake, drain, sleep again: twice


def ready_pods(kube: client.ApiClient, namespace: str, name: str) -> int:
    try:
        status = (
            client.AppsV1Api(kube).read_namespaced_deployment(f"{name}-consumer", namespace).status
        )
    except ApiException as error:
        if error.status == 404:  # the operator has not created it yet
            return 0
        raise
    return int(status.ready_replicas or 0) if status is not None else 0


def kubectl_get(stack: StackEnv, namespace: str, name: str) -> str:
    """`kubectl get mp NAME` as a user runs it (the CRD's printer columns)."""
    answer = subprocess.run(
        [str(stack.kubectl), "--kubeconfig", str(stack.kubeconfig), "get", "mp", name, "-n",
         namespace],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return answer.stdout


def test_sleeps_wakes_drains_and_sleeps_again_within_the_target(
    stack: StackEnv, kube: client.ApiClient, namespace: str, unique_name: str,
    start_operator: Any, start_exporter: Any, node: Node, tmp_path: Path,
) -> None:  # fmt: skip
    name = "dozer"
    topic = f"e2e-{unique_name}"
    probe = FreshnessProbe(stack.elasticsearch_url, f"metricpipe-{namespace}.{name}.metrics",
                           window_seconds=WINDOW_SECONDS)  # fmt: skip
    create_topics(stack, topic, PARTITIONS)  # created up front: the producer starts at once
    start_exporter(namespace=namespace)
    operator = start_operator(namespace, METRICPIPE_PROMETHEUS_URL=stack.prometheus_url,
                              METRICPIPE_ADOPT_TOPICS=re.escape(topic) + r"(\.dlq)?",
                              **OPERATOR_ENV)  # fmt: skip
    create_pipeline(kube, namespace, name, {**SPEC, "topic": {**SPEC["topic"], "name": topic}})
    traffic = Traffic(stack, topic, probe, PARTITIONS)
    timeline: list[tuple[float, int, int, str | None]] = []  # time, spec, ready pods, state
    shown: list[str] = []
    asleep_numbers: list[tuple[Any, Any, Any]] = []  # lag, time lag, freshness while asleep

    def sample() -> tuple[float, int, int, str | None]:
        obj = get_pipeline(kube, namespace, name)
        status = obj.get("status") or {}
        point = (time.time(), int(obj["spec"]["replicas"]), ready_pods(kube, namespace, name),
                 status.get("scalingState"))  # fmt: skip
        if point[1] == 0 and status.get("nextWakeTime") and not shown:
            shown.append(kubectl_get(stack, namespace, name))
        if point[1] == 0 and point[2] == 0:
            asleep_numbers.append((status.get("lag"), status.get("timeLagSeconds"),
                                   status.get("freshnessSeconds")))  # fmt: skip
        timeline.append(point)
        return point

    def changes() -> list[int]:
        """spec.replicas each time it changed."""
        values = [r for _, r, _, _ in timeline]
        return [b for a, b in pairwise(values) if a != b]

    def cycles_done() -> bool:
        sample()
        seen = changes()
        wakes = sum(1 for a, b in pairwise(seen) if a == 0 and b > 0)
        return wakes >= WAKES and seen[-1] == 0 and len(seen) >= 2 * WAKES + 1

    traffic.rate = RATE
    traffic.thread.start()
    began = time.time()
    with probe.watch(interval=2.0):
        try:
            wait_for(lambda: ready_pods(kube, namespace, name) == 1, 180, "one ready consumer")
            wait_for(cycles_done, 900, f"{WAKES} wakes, each followed by a sleep", interval=3)
            # the windows that ended before the last wake: its drain finalised them
            last_wake = max(b[0] for a, b in pairwise(timeline) if a[1] == 0 and b[1] > 0)
            closed = sorted({s - s % WINDOW_SECONDS for s in probe.sent
                             if s - s % WINDOW_SECONDS + WINDOW_SECONDS <= last_wake})  # fmt: skip
            wait_for(lambda: set(closed) <= set(probe.final_at), 60,
                     "the final documents of every window closed before the last wake",
                     interval=2)  # fmt: skip
        except AssertionError:
            print(f"status: {get_pipeline(kube, namespace, name).get('status')}")
            print(f"operator log:\n{operator.log()[-4000:]}")
            raise
        finally:
            traffic.stop.set()
            points = [(round(t - began), r, p, s) for t, r, p, s in timeline]
            print(f"timeline (s, spec.replicas, ready pods, state): {points}")
            print(f"window delays (window start: s after its end): {probe.window_delays()}")
    # It slept for real: no consumer pod ran while spec.replicas was 0 for long.
    asleep = [p for t, r, p, _ in timeline if r == 0 and t > began]
    assert asleep.count(0) >= len(asleep) // 2, timeline
    # With no consumer running, the lag, time lag and freshness are still reported (the
    # exporter reads Kafka and the sink, not the consumers): the wake is decided on them.
    reported = [n for n in asleep_numbers if None not in n]
    assert len(reported) >= len(asleep_numbers) // 2, asleep_numbers
    assert any(lag > 0 for lag, _, _ in reported), asleep_numbers  # records waited in Kafka
    # Every window that ended before the last wake holds all its records, no more, in its
    # final documents, each within the target of its end.
    assert not any(r.excess for r in probe.readings), "the sink holds more than was sent"
    assert len(closed) >= 2, closed
    delays = probe.window_delays()
    late = {w: d for w, d in delays.items() if w in closed and d > TARGET_SECONDS}
    assert late == {}, f"windows final after the target: {late}"
    # What a user sees: the state and the next wake in `kubectl get mp`, and Events saying why.
    assert shown, "no kubectl get mp while asleep with a wake time"
    header, row = shown[0].splitlines()[:2]
    assert "STATE" in header, header
    assert "NEXT-WAKE" in header, header
    assert "Sleeping" in row, row
    events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
    said = [(e.reason, e.message) for e in events if e.involved_object.name == name]
    reasons = {reason for reason, _ in said}
    assert {"Sleeping", "Woken"} <= reasons, said
    assert any("1 → 0" in (message or "") for reason, message in said if reason == "Sleeping"), said
