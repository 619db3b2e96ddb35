"""Two operator replicas, one active, on the real stack (API server, Kafka, the kubelet running
the consumers): the leader is killed (SIGKILL) while it is reconciling new pipelines; the
standby takes the Lease within the stated bound (the Lease's duration plus one retry, plus
slack for a loaded machine), finishes the work, and every pipeline ends Ready with exactly one
of each child and then counts what is produced to it exactly (its final documents equal the
counts computed here). The standby wrote nothing before it led, and a replica that stops
normally gives the Lease up at once."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from kubernetes import client

from helpers import present, wait_for
from metricpipe_devstack.env import StackEnv
from pipelines import condition, create_pipeline, get_pipeline
from refusals import MINUTE, build_records, expected_counts, final_counts, produce, topic_of

DURATION, RENEW_DEADLINE, RETRY = 4, 3.0, 0.5  # seconds: a quick election for the test
SLACK = 5.0  # a loaded machine's scheduling
NAMES = ("one", "two", "three")
SPEC: dict[str, Any] = {
    "source": {"tag": "takeover"},
    "topic": {"partitions": 1},
    "metric": {
        "aggregation": "count",
        "groupBy": ["host"],
        "window": "1m",
        "allowedLateness": "10s",
        "eventTime": {"field": "ts", "format": "epoch_millis"},
    },
    "replicas": 1,
    "scaling": {"enabled": False},
    "consumer": {"resources": {"requests": {"cpu": "50m"}}},
}
WRITES = {"changed", "repaired"}  # the operator's log events for a change it made


def events_of(log: str) -> list[str]:
    """The structlog events of an operator's log, in order (its lines are JSON objects)."""
    found = []
    for line in log.splitlines():
        try:
            found.append(str(json.loads(line).get("event", "")))
        except (json.JSONDecodeError, AttributeError):
            continue
    return found


def holder(kube: client.ApiClient, namespace: str) -> str | None:
    lease = client.CoordinationV1Api(kube).read_namespaced_lease("metricpipe-operator", namespace)
    return present(lease.spec).holder_identity


def ready_with_one_of_each(kube: client.ApiClient, namespace: str, name: str) -> bool:
    if condition(get_pipeline(kube, namespace, name), "Ready").get("status") != "True":
        return False
    selector = f"metricpipe.io/pipeline={name}"
    deployments = (
        client.AppsV1Api(kube).list_namespaced_deployment(namespace, label_selector=selector).items
    )
    services = (
        client.CoreV1Api(kube).list_namespaced_service(namespace, label_selector=selector).items
    )
    return len(deployments) == 1 and len(services) == 1


@pytest.mark.usefixtures("fluent_operator_crds")
def test_the_standby_takes_over_a_killed_leader_mid_reconcile(
    kube: client.ApiClient, stack: StackEnv, namespace: str, start_operator: Callable[..., Any]
) -> None:
    election = {
        "METRICPIPE_LEASE_NAMESPACE": namespace,
        "METRICPIPE_LEASE_DURATION_SECONDS": str(DURATION),
        "METRICPIPE_LEASE_RENEW_DEADLINE_SECONDS": str(RENEW_DEADLINE),
        "METRICPIPE_LEASE_RETRY_SECONDS": str(RETRY),
    }
    identity = f"{socket.gethostname()}-{{}}"
    leader = start_operator(namespace, **election)
    wait_for(lambda: holder(kube, namespace) == identity.format(leader.process.pid), 30,
             "the first replica leading")  # fmt: skip
    standby = start_operator(namespace, **election)
    wait_for(lambda: "standing by" in events_of(standby.log()), 30, "the second standing by")

    for name in NAMES:
        create_pipeline(kube, namespace, name, SPEC)
    wait_for(lambda: WRITES & set(events_of(leader.log())), 60, "the leader reconciling")
    leader.stop(kill=True)
    killed = time.monotonic()
    wait_for(lambda: holder(kube, namespace) == identity.format(standby.process.pid),
             DURATION + RETRY + SLACK, "the standby leading")  # fmt: skip
    takeover = time.monotonic() - killed
    print(f"takeover {takeover:.1f} s after the kill (bound {DURATION + RETRY:.1f} s + slack)")

    for name in NAMES:
        wait_for(partial(ready_with_one_of_each, kube, namespace, name), 180,
                 f"{name}: Ready with one of each child")  # fmt: skip
    events = events_of(standby.log())
    before = events[: events.index("leading")]
    assert not WRITES & set(before), before  # nothing written while standing by

    # every pipeline the killed leader was setting up counts what is produced to it
    records = build_records((int(time.time() * 1000) - 30 * MINUTE) // MINUTE * MINUTE)
    for name in NAMES:
        produce(stack, present(topic_of(kube, namespace, name)), records)
    for name in NAMES:
        index = f"metricpipe-{namespace}.{name}.metrics"  # the default index (naming.py)
        wait_for(lambda: final_counts(stack, index) == expected_counts(records), 180,  # noqa: B023
                 f"{name}: finals equal to the records produced")  # fmt: skip

    standby.stop()  # SIGTERM: a normal stop gives the Lease up
    assert holder(kube, namespace) is None
