"""Status tells the truth, on the real stack: the operator (with its ResourceManager), the lag
exporter, Prometheus, Kafka, the real API server, controller-manager and scheduler, and the
stack's real kubelet running the consumer pods in containers.

One set-up for four pipelines (a few minutes in all):
- `backlog`: records wait in its topic before any consumer exists (the node cordoned): LAG and
  FRESHNESS come from Kafka, SLO is not Unknown and READY is not True;
- then the node is uncordoned and its consumer dead-letters most of that backlog: RecordsRejected
  True and the REJECTED column;
- `crash`: its consumer exits at once (PYTHONHOME names no Python): CrashLoopBackOff;
- `nosecret`: its sink Secret does not exist: CreateContainerConfigError, SinkReady False.
Each condition must follow the kubelet's report within one ResourceManager cycle (plus the
time of one status write).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from confluent_kafka import Producer
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import wait_for
from metricpipe_devstack.env import StackEnv
from node_harness import set_unschedulable
from pipelines import condition, create_pipeline, get_pipeline, printed_table

CYCLE_SECONDS = 5  # the ResourceManager's interval in this test
WRITE_SLACK_SECONDS = 6  # a cycle's own work and its status write, on a loaded machine
OPERATOR_ENV = {"METRICPIPE_SCALING_INTERVAL_SECONDS": str(CYCLE_SECONDS)}
BASE: dict[str, Any] = {
    "source": {"tag": "truth"},
    "topic": {"partitions": 1},
    "metric": {"aggregation": "count", "window": "1m", "allowedLateness": "10s"},
    "replicas": 1,
    "scaling": {"enabled": False},
}
GOOD, BAD = 20, 180  # the backlog: 90 % of it is not JSON


def pod_reason(kube: client.ApiClient, namespace: str, name: str) -> str | None:
    """The kubelet's waiting reason for the pipeline's consumer."""
    pods = client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector=f"metricpipe.io/pipeline={name}"
    )
    for pod in pods.items:
        assert pod.status is not None
        for status in pod.status.container_statuses or []:
            assert status.state is not None
            if status.state.waiting is not None:
                return str(status.state.waiting.reason)
    return None


def shows(kube: client.ApiClient, namespace: str, name: str, kind: str, status: str,
          reason: str) -> dict[str, Any]:  # fmt: skip
    pipeline = get_pipeline(kube, namespace, name)
    found = condition(pipeline, kind)
    return pipeline if (found.get("status"), found.get("reason")) == (status, reason) else {}


def row_of(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The pipeline's row of `kubectl get mp` (the API server's Table), by column."""
    headers, rows = printed_table(kube, namespace)
    (row,) = [r for r in rows if r[0] == name]
    return dict(zip(headers, row, strict=True))


def follows_within_a_cycle(kube: client.ApiClient, namespace: str, name: str, waiting: str,
                           kind: str, status: str, reason: str) -> dict[str, Any]:  # fmt: skip
    """Waits for the pod's waiting reason, then for the condition: at most one cycle later."""
    wait_for(lambda: pod_reason(kube, namespace, name) == waiting, 120, f"{name}: {waiting}")
    seen = time.monotonic()
    pipeline = wait_for(
        lambda: shows(kube, namespace, name, kind, status, reason),
        CYCLE_SECONDS + WRITE_SLACK_SECONDS, f"{name}: {kind} {reason}",
    )  # fmt: skip
    print(f"{name}: {kind}={status} {reason} {time.monotonic() - seen:.1f}s after the kubelet")
    return pipeline


def test_status_tells_the_truth(
    stack: StackEnv, kube: client.ApiClient, namespace: str, start_operator: Any,
    start_exporter: Any, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    start_exporter(namespace=namespace)
    operator = start_operator(namespace, METRICPIPE_PROMETHEUS_URL=stack.prometheus_url,
                              **OPERATOR_ENV)  # fmt: skip
    try:
        _check(stack, kube, namespace, request)
    except AssertionError:
        for name in ("backlog", "crash", "nosecret"):
            print(name, json.dumps(get_pipeline(kube, namespace, name).get("status"), indent=1))
        print(f"operator log:\n{operator.log()[-4000:]}")
        raise


def _check(
    stack: StackEnv, kube: client.ApiClient, namespace: str, request: pytest.FixtureRequest
) -> None:
    # -- a backlog and no consumer yet (the node cordoned: the pod cannot be scheduled) --------
    node = request.getfixturevalue("cordoned_node")
    create_pipeline(kube, namespace, "backlog", BASE)
    topic = wait_for(
        lambda: (get_pipeline(kube, namespace, "backlog").get("status") or {}).get("topic", {})
        .get("partitions") and get_pipeline(kube, namespace, "backlog")["status"]["topic"]["name"],
        60, "the backlog pipeline's topic",
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    produced_at = time.time()
    for i in range(GOOD + BAD):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        good = json.dumps({"time": stamp, "tag": "truth"}).encode()
        producer.produce(topic, value=good if i % 10 == 0 else b"{not json")
    assert producer.flush(30) == 0

    def numbers_shown() -> dict[str, Any]:
        status = get_pipeline(kube, namespace, "backlog").get("status") or {}
        has = status.get("lag") == GOOD + BAD and status.get("freshnessSeconds") is not None
        return status if has else {}

    status = wait_for(numbers_shown, 60, "LAG and FRESHNESS of the backlog, no consumer running")
    age = time.time() - produced_at
    assert 0 < status["freshnessSeconds"] <= age + 1, (status, age)  # the oldest record's age
    assert status["slo"] == "Met", status  # 1h target, seconds old: known, and met
    row = row_of(kube, namespace, "backlog")
    assert (row["LAG"], row["SLO"], row["READY"]) == (GOOD + BAD, "Met", "False"), row
    assert row["FRESHNESS"], row
    assert condition(get_pipeline(kube, namespace, "backlog"), "ConsumerReady")["reason"] in (
        "Unschedulable", "ReplicasUnavailable")  # fmt: skip

    # -- the node takes pods again: three more pipelines, each with its own trouble ------------
    set_unschedulable(kube, node.name, False)
    crash = {**BASE, "consumer": {"env": [{"name": "PYTHONHOME", "value": "/nonexistent"}]}}
    create_pipeline(kube, namespace, "crash", crash)
    secret = {**BASE, "sink": {"credentialsSecretRef": {"name": "no-such-creds"}}}
    create_pipeline(kube, namespace, "nosecret", secret)
    with pytest.raises(ApiException) as absent:  # the fault: the Secret really is absent
        client.CoreV1Api(kube).read_namespaced_secret("no-such-creds", namespace)
    assert absent.value.status == 404

    pipeline = follows_within_a_cycle(kube, namespace, "nosecret", "CreateContainerConfigError",
                                      "SinkReady", "False", "SecretMissing")  # fmt: skip
    assert "no-such-creds" in condition(pipeline, "SinkReady")["message"]
    assert condition(pipeline, "ConsumerReady")["reason"] == "CreateContainerConfigError"
    row = row_of(kube, namespace, "nosecret")
    assert (row["READY"], row["REASON"]) == ("False", "ConsumerReadyCreateContainerConfigError")

    pipeline = follows_within_a_cycle(kube, namespace, "crash", "CrashLoopBackOff",
                                      "ConsumerReady", "False", "CrashLoopBackOff")  # fmt: skip
    assert "last exit code 1" in condition(pipeline, "ConsumerReady")["message"]
    row = row_of(kube, namespace, "crash")
    assert (row["READY"], row["REASON"]) == ("False", "ConsumerReadyCrashLoopBackOff")
    time.sleep(3 * CYCLE_SECONDS)  # the Deployment watcher and the reconciler write meanwhile
    assert condition(get_pipeline(kube, namespace, "crash"), "ConsumerReady")["reason"] == (
        "CrashLoopBackOff"
    ), "a writer without the pods' view replaced the kubelet's reason"

    # -- the backlog's consumer runs and dead-letters 90 % of it -------------------------------
    pipeline = wait_for(
        lambda: shows(kube, namespace, "backlog", "RecordsRejected", "True", "DeadLetterShareHigh"),
        240, "RecordsRejected on the backlog",
    )  # fmt: skip
    status = pipeline["status"]
    # 180 of 200, counted exactly; above 0.9 for the moment a batch's dead letters are counted
    # and its reads not yet
    assert 0.9 <= status["rejectedShare"] <= 1.0, status
    assert condition(pipeline, "RecordsRejected")["message"].startswith(f"{BAD} of "), status
    assert row_of(kube, namespace, "backlog")["REJECTED"] == status["rejected"]
    assert status["rejected"].endswith("%")
    wait_for(lambda: shows(kube, namespace, "backlog", "Ready", "True", "AllReady"), 60,
             "the backlog pipeline Ready once its consumer is")  # fmt: skip
