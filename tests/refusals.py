"""Shared by the tests that make pipelines fail for real (Kafka or the sink refusing them) and
check they recover: Secrets, a CA that signed nothing of the stack's, and the search for
secret values in everything the pipelines wrote."""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Producer
from kubernetes import client

from helpers import present
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.settings import StackSettings
from pipelines import get_pipeline

MINUTE = 60_000
HOSTS = ("h0", "h1", "h2")
RECORDS = 600


def secret_body(name: str, data: dict[str, str]) -> client.V1Secret:
    return client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)


def other_ca(tmp_path: Path) -> str:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=not-the-ca",
         "-days", "1", "-keyout", str(tmp_path / "o.key"), "-out", str(tmp_path / "o.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    return (tmp_path / "o.crt").read_text()


def assert_no_secret_anywhere(
    kube: client.ApiClient,
    namespace: str,
    operator_log: str,
    pipelines: list[str],
    secrets: list[str],
) -> None:
    """Every log, Event, ConfigMap and status the pipelines wrote, and every log file of the
    stack's servers (Kafka, the search engines, the kubelet, containerd, ...), searched for
    each secret."""
    core = client.CoreV1Api(kube)
    texts = {"operator log": operator_log}
    settings = StackSettings()
    for path in [*settings.log_dir.glob("*.log"), *settings.search_root.glob("run-*/logs/*")]:
        if path.is_file():
            texts[f"file {path}"] = path.read_text(errors="replace")
    for path in settings.node_dir.glob(f"pod-logs/{namespace}_*/*/*.log"):  # every restart's
        texts[f"file {path}"] = path.read_text(errors="replace")
    for pod in core.list_namespaced_pod(namespace).items:
        name = str(present(pod.metadata).name)
        texts[f"log {name}"] = core.read_namespaced_pod_log(name, namespace, container="consumer")
        statuses = present(pod.status).container_statuses or []
        if any((s.restart_count or 0) > 0 for s in statuses):
            try:
                texts[f"previous log {name}"] = core.read_namespaced_pod_log(
                    name, namespace, container="consumer", previous=True
                )
            except client.ApiException as error:  # the kubelet removed that container already
                if error.status != 400:
                    raise
        texts[f"pod status {name}"] = json.dumps(kube.sanitize_for_serialization(pod.status))
    events = core.list_namespaced_event(namespace).items
    texts["events"] = json.dumps([kube.sanitize_for_serialization(e) for e in events])
    configmaps = core.list_namespaced_config_map(namespace).items
    texts["configmaps"] = json.dumps([c.data for c in configmaps])
    for fault in pipelines:
        texts[f"status {fault}"] = json.dumps(get_pipeline(kube, namespace, fault).get("status"))
    assert len(texts) > len(pipelines) + 3, texts.keys()
    leaks = [
        (where, i) for where, text in texts.items() for i, s in enumerate(secrets) if s in text
    ]
    assert leaks == [], leaks


# A last record six minutes after the others: the event time it carries closes every window
# before it, so their finals are written as soon as it is read (no idle time-out to wait for);
# its own window stays open and is left out of the comparison.
CLOSING_HOST = "closing"


def build_records(base: int) -> list[dict[str, Any]]:
    rng = random.Random(5)
    records = [{"ts": base + i * 4 * MINUTE // RECORDS, "host": rng.choice(HOSTS)}
               for i in range(RECORDS)]  # fmt: skip
    return [*records, {"ts": base + 10 * MINUTE, "host": CLOSING_HOST}]


def expected_counts(records: list[dict[str, Any]]) -> Counter[tuple[int, str]]:
    return Counter(
        (r["ts"] // MINUTE * MINUTE, r["host"]) for r in records if r["host"] != CLOSING_HOST
    )


def topic_of(kube: client.ApiClient, namespace: str, name: str) -> str | None:
    status = get_pipeline(kube, namespace, name).get("status") or {}
    return (status.get("topic") or {}).get("name")


def final_counts(stack: StackEnv, index: str) -> Counter[tuple[int, str]]:
    """The plain Elasticsearch sink's final documents, read with plain HTTP (no product code)."""
    requests.post(f"{stack.elasticsearch_url}/{index}/_refresh", timeout=10)
    found = requests.post(f"{stack.elasticsearch_url}/{index}/_search", json=FINALS, timeout=10)
    return count_finals(found.json())


FINALS = {"size": 1000, "query": {"term": {"final": True}}}  # the search for final documents


def count_finals(answer: dict[str, Any]) -> Counter[tuple[int, str]]:
    """A search answer's final documents as counts per (window start, host)."""
    counts: Counter[tuple[int, str]] = Counter()
    for hit in answer.get("hits", {}).get("hits", []):
        doc = hit["_source"]
        if doc["group"]["host"] != CLOSING_HOST:  # its window stays open
            counts[(int(doc["window_start_ms"]), str(doc["group"]["host"]))] += int(doc["count"])
    return counts


def finals_are(stack: StackEnv, index: str, expected: Counter[tuple[int, str]]) -> bool:
    return final_counts(stack, index) == expected


def produce(stack: StackEnv, topic: str, records: list[dict[str, Any]]) -> None:
    """The records as JSON, on the plaintext listener (the super user)."""
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for record in records:
        producer.produce(topic, value=json.dumps(record).encode())
    assert producer.flush(30) == 0
