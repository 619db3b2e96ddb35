"""Only one ResourceManager acts: two operator replicas compete for the real Lease."""

from __future__ import annotations

import time

from kubernetes import client

from metricpipe_operator.leader import LeaderLease


def test_one_holder_and_takeover_after_expiry(kube: client.ApiClient, namespace: str) -> None:
    first = LeaderLease(kube, namespace, "rm", "replica-a", duration_seconds=2)
    second = LeaderLease(kube, namespace, "rm", "replica-b", duration_seconds=2)
    assert first.ensure_held()  # creates the Lease
    assert not second.ensure_held()  # held and fresh: stands by
    assert first.ensure_held()  # renews
    assert not second.ensure_held()
    time.sleep(3)  # replica-a stops renewing (crashed): the lease expires
    assert second.ensure_held()
    assert not first.ensure_held()
    lease = client.CoordinationV1Api(kube).read_namespaced_lease("rm", namespace)
    assert lease.spec is not None
    assert lease.spec.holder_identity == "replica-b"
