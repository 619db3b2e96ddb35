"""Consumers as real containers on the stack's kubelet (containerd + runc), as on a cluster.

One pipeline replays 3 windows x 4 hosts of records; on its way:
- (c) `kubectl delete pod` while it replays: the kubelet's SIGTERM reaches the consumer (its log
  says so, read as the container ends), it finishes its batch and leaves with exit code 0
  within the grace period; the Deployment's next pod takes over, and the final documents equal
  an oracle computed here in plain Python from the records this file produced;
- (a) the new pod's root filesystem is read-only (a write fails) while its scratch volume takes
  writes; its process, read from the host's /proc, runs as 65532 with no capability.
A second pipeline's consumer gets a memory limit Spark cannot start in (b): the kernel kills it
(OOMKilled, as the kubelet reports) and the pipeline says ConsumerReady=False, OOMKilled, with
the limit in the message. A third pipeline's consumer is stopped with SIGSTOP once Ready (d): its
liveness probe fails and the kubelet restarts it. The three run side by side, so the minutes
the liveness probe takes to give up overlap the replay.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import defaultdict
from typing import Any

import requests
from confluent_kafka import Consumer, TopicPartition
from kubernetes import client, watch

from consumers import committed_everything, produce
from helpers import present, wait_for
from metricpipe_contract.naming import build_consumer_group
from metricpipe_devstack.env import StackEnv
from node_harness import Node, proc_status
from pipelines import condition, create_pipeline, get_pipeline

MINUTE = 60_000
WINDOWS = 3
HOSTS = ("h0", "h1", "h2", "h3")
RECORDS = 40_000
# small batches: the replay takes many of them (160, several seconds even when the pod starts
# while the records are being produced), so a delete lands mid-way
BATCH_RECORDS = 250
SPEC: dict[str, Any] = {
    "source": {"tag": "app.latency"},
    "topic": {"partitions": 2, "deletionPolicy": "Delete"},
    "metric": {"aggregation": "avg", "valueField": "latency", "groupBy": ["host"],
               "window": "1m", "allowedLateness": "10s",
               "eventTime": {"field": "ts", "format": "epoch_millis"}},
    "sink": {"backend": "elasticsearch"},
    "replicas": 1,
    "scaling": {"enabled": False},
    "consumer": {"resources": {"requests": {"cpu": "250m"}}, "maxBatchRecords": BATCH_RECORDS},
}  # fmt: skip
OOM_LIMIT = "160Mi"
OOM_SPEC: dict[str, Any] = {
    **SPEC,
    "consumer": {"resources": {"requests": {"cpu": "100m"},
                               "limits": {"memory": OOM_LIMIT}}},
}  # fmt: skip
HANG_SPEC: dict[str, Any] = {**SPEC, "consumer": {"resources": {"requests": {"cpu": "100m"}}}}
INSTANCE = "app.kubernetes.io/instance"
Series = dict[tuple[int, str], tuple[int, float, float, float]]


def build_records(base: int) -> list[dict[str, Any]]:
    """RECORDS records over three 1-minute windows; latencies are multiples of 1/4, so every
    sum is exact in any order."""
    rng = random.Random(17)
    span = WINDOWS * MINUTE
    return [{"ts": base + i * span // RECORDS, "host": HOSTS[rng.randrange(len(HOSTS))],
             "latency": rng.randrange(4, 4_000) / 4} for i in range(RECORDS)]  # fmt: skip


def oracle(records: list[dict[str, Any]]) -> Series:
    values: dict[tuple[int, str], list[float]] = defaultdict(list)
    for record in records:
        values[(record["ts"] // MINUTE * MINUTE, record["host"])].append(record["latency"])
    return {key: (len(v), sum(v), min(v), max(v)) for key, v in values.items()}


def final_series(stack: StackEnv, index: str) -> Series:
    """The sink's final documents, read with plain HTTP (no product code)."""
    requests.post(f"{stack.elasticsearch_url}/{index}/_refresh", timeout=10)
    query = {"size": 1000, "query": {"term": {"final": True}}}
    found = requests.post(f"{stack.elasticsearch_url}/{index}/_search", json=query, timeout=10)
    found = found.json()
    series: Series = {}
    for hit in found.get("hits", {}).get("hits", []):
        doc = hit["_source"]
        key = (int(doc["window_start_ms"]), str(doc["group"]["host"]))
        assert key not in series, f"two final documents for {key}"
        series[key] = (int(doc["count"]), float(doc["sum"]), float(doc["min"]), float(doc["max"]))
    return series


def consumer_pods(kube: client.ApiClient, namespace: str, name: str) -> list[Any]:
    pods = client.CoreV1Api(kube).list_namespaced_pod(
        namespace,
        label_selector=f"app.kubernetes.io/component=consumer,app.kubernetes.io/instance={name}",
    )
    return [p for p in pods.items if present(p.metadata).deletion_timestamp is None]


def running_pod(kube: client.ApiClient, namespace: str, name: str) -> Any:
    def ready() -> Any:
        for pod in consumer_pods(kube, namespace, name):
            statuses = pod.status.container_statuses or []
            if statuses and statuses[0].ready:
                return pod
        return None

    return wait_for(ready, 300, f"a Ready consumer pod of {name}", 2)


def committed_total(stack: StackEnv, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(SPEC["topic"]["partitions"])]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


class Follow:
    """`kubectl logs -f` of one container in a thread, and the container's last state seen
    through a watch on the pod: what the process said and how it ended, up to its deletion."""

    def __init__(self, kube: client.ApiClient, namespace: str, pod: str) -> None:
        self.lines: list[str] = []
        self.terminated: Any = None
        core = client.CoreV1Api(kube)

        def logs() -> None:
            # not preloaded: the client returns the HTTP response itself, not the log's text
            stream: Any = core.read_namespaced_pod_log(
                pod, namespace, container="consumer", follow=True, _preload_content=False
            )
            for raw in stream.stream():
                self.lines.extend(raw.decode(errors="replace").splitlines())

        def states() -> None:
            for event in watch.Watch().stream(core.list_namespaced_pod, namespace,
                                              field_selector=f"metadata.name={pod}",
                                              timeout_seconds=240):  # fmt: skip
                for status in event["object"].status.container_statuses or []:
                    if status.state.terminated is not None:
                        self.terminated = status.state.terminated
                if event["type"] == "DELETED":
                    return

        self.threads = [threading.Thread(target=f, daemon=True) for f in (logs, states)]
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)


def kubectl(stack: StackEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(stack.kubectl), "--kubeconfig", str(stack.kubeconfig), *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_consumer_containers_stop_gracefully_are_confined_and_are_restarted(
    stack: StackEnv, kube: client.ApiClient, namespace: str, start_operator: Any, node: Node,
) -> None:  # fmt: skip
    start_operator(namespace, METRICPIPE_PROMETHEUS_URL=stack.prometheus_url,
                   METRICPIPE_SCALING_INTERVAL_SECONDS="5")  # fmt: skip
    create_pipeline(kube, namespace, "oom", OOM_SPEC)
    create_pipeline(kube, namespace, "hang", HANG_SPEC)
    create_pipeline(kube, namespace, "replay", SPEC)

    def replay_topic() -> str | None:
        status = get_pipeline(kube, namespace, "replay").get("status") or {}
        return (status.get("topic") or {}).get("partitions") and status["topic"]["name"]

    topic = wait_for(replay_topic, 120, "the replay pipeline's topic")
    group = build_consumer_group(namespace, "replay")
    base = 1_700_000_000_000 // MINUTE * MINUTE
    records = build_records(base)
    produce(stack, topic, [(r["host"].encode(), json.dumps(r).encode()) for r in records])
    expected = oracle(records)

    # -- (c) delete the pod mid-replay ---------------------------------------------------------
    first = running_pod(kube, namespace, "replay").metadata.name
    wait_for(lambda: committed_total(stack, group, topic) > 0, 240, "the first commits", 0.5)
    follow = Follow(kube, namespace, first)
    deleted_at = committed_total(stack, group, topic)
    assert 0 < deleted_at < RECORDS, f"not mid-replay: {deleted_at} of {RECORDS} committed"
    result = kubectl(stack, "delete", "pod", "-n", namespace, first, "--wait=true")
    assert result.returncode == 0, result.stderr
    follow.join(60)
    said = "\n".join(follow.lines)
    assert "stop requested; finishing the current batch" in said, said[-3000:]
    assert '"signal": 15' in said, said[-3000:]
    assert "leaving the consumer group" in said, said[-3000:]
    assert "Unable to use shared archive" not in said, said[-3000:]  # the image's class archive
    assert follow.terminated is not None, "the container's end was not seen"
    assert follow.terminated.exit_code == 0, follow.terminated
    print(f"deleted {first} with {deleted_at} of {RECORDS} committed; exit {follow.terminated}")

    # -- (d), started: the hung consumer's liveness probe runs out while the replay goes on -------
    hung = running_pod(kube, namespace, "hang").metadata.name
    os.kill(node.container_pid(namespace, hung, "consumer"), signal.SIGSTOP)
    stopped = time.monotonic()

    pod = running_pod(kube, namespace, "replay")
    wait_for(lambda: committed_everything(stack, group, topic), 300, "the replay committed", 2)
    index = get_pipeline(kube, namespace, "replay")["status"]["sinkIndex"]
    wait_for(lambda: len(final_series(stack, index)) == len(expected), 180, "every window final", 2)
    assert final_series(stack, index) == expected

    # -- (a) confined: read-only root, scratch writable, uid 65532, no capabilities ---------------
    name = pod.metadata.name
    root = kubectl(stack, "exec", "-n", namespace, name, "-c", "consumer", "--",
                   "sh", "-c", "echo x > /probe")  # fmt: skip
    assert root.returncode != 0, root
    assert "Read-only file system" in root.stderr, root
    scratch = kubectl(stack, "exec", "-n", namespace, name, "-c", "consumer", "--",
                      "sh", "-c", "echo x > /tmp/probe && cat /tmp/probe")  # fmt: skip
    assert scratch.returncode == 0, scratch
    assert scratch.stdout.strip() == "x", scratch
    pid = node.container_pid(namespace, name, "consumer")
    status = proc_status(pid)
    assert status["Uid"].split() == ["65532"] * 4, status
    assert status["Gid"].split() == ["65532"] * 4, status
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps], 16) == 0, (caps, status[caps])
    assert status["NoNewPrivs"] == "1", status
    print(f"consumer pid {pid} on the host: Uid {status['Uid']}, CapEff {status['CapEff']}, "
          f"Seccomp {status.get('Seccomp')}")  # fmt: skip

    # -- (d) the hung process is restarted by its liveness probe ---------------------------------
    def restarted() -> Any:
        current = client.CoreV1Api(kube).read_namespaced_pod(hung, namespace)
        assert current.status is not None
        assert current.status.container_statuses is not None
        (state,) = current.status.container_statuses
        return state if state.restart_count >= 1 else None

    state = wait_for(restarted, 300, "the kubelet restarting the stopped consumer", 2)
    print(f"restarted {time.monotonic() - stopped:.0f} s after SIGSTOP: {state.last_state}")
    events = client.CoreV1Api(kube).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={hung}")  # fmt: skip
    assert any(e.reason == "Unhealthy" and "Liveness" in (e.message or "") for e in events.items), [
        (e.reason, e.message) for e in events.items]  # fmt: skip

    # -- (b) the memory limit too small for Spark: OOMKilled by the kernel, said in status -------
    def oom_reported() -> dict[str, Any] | None:
        found = condition(get_pipeline(kube, namespace, "oom"), "ConsumerReady")
        return found if found.get("reason") == "OOMKilled" else None

    found = wait_for(oom_reported, 240, "ConsumerReady OOMKilled on the small pipeline", 2)
    assert found["status"] == "False", found
    assert OOM_LIMIT in found["message"], found
    pods = consumer_pods(kube, namespace, "oom")
    reasons = {(s.last_state.terminated or s.state.terminated).reason
               for p in pods for s in p.status.container_statuses or []
               if s.last_state.terminated or s.state.terminated}  # fmt: skip
    assert "OOMKilled" in reasons, reasons
