"""Whole ResourceManager cycles with in-memory fakes of the API server and Prometheus: the
state it keeps (metric history, status write times) belongs to a pipeline object, so one
deleted and re-created under the same name starts with no history, and the gone one's state is
dropped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from kubernetes import client

from metricpipe_operator.scaling import loop
from metricpipe_operator.scaling.collect import QUERIES
from metricpipe_operator.scaling.model import Decision, MetricSample, PipelineScaling, PolicyConfig
from metricpipe_operator.scaling.observe import Observed

SPEC = {"source": {"tag": "web"}, "metric": {"aggregation": "count"}, "replicas": 1}
KEY = "team-a/requests"


def pipeline(uid: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "team-a", "name": "requests", "uid": uid,
                         "generation": 1, "resourceVersion": "1"},
            "spec": SPEC, "status": {"replicas": 1, "readyReplicas": 1}}  # fmt: skip


class FakeObjects:
    """The custom objects API: lists what `items` holds, accepts status writes."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.status_writes = 0

    def list_cluster_custom_object(self, *_: Any) -> dict[str, Any]:
        return {"items": self.items}

    def patch_namespaced_custom_object_status(self, *_: Any, **__: Any) -> Any:
        self.status_writes += 1
        return FakeAnswer()


class FakeAnswer:
    def read(self) -> bytes:
        return b"{}"

    def release_conn(self) -> None:
        return None


class Policy:
    """Records how much history each decision saw; never scales."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, history: Sequence[MetricSample], facts: PipelineScaling,
                 _config: PolicyConfig, _now: float) -> Decision:  # fmt: skip
        self.seen.append(len(history))
        return Decision(facts.current_replicas, "held")


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> tuple[loop.ResourceManager, FakeObjects, Policy]:
    values = {name: {KEY: 1.0} for name in QUERIES}
    monkeypatch.setattr(loop, "fetch_metric_values", lambda *_: values)
    monkeypatch.setattr(loop, "fetch_observed", lambda *_: Observed(consumer_pods={}))
    policy = Policy()
    rm = loop.ResourceManager(client.ApiClient(), loop.LoopSettings(prometheus_url="http://p"),
                              PolicyConfig(), policy)  # fmt: skip
    objects = FakeObjects()
    rm.objects = objects  # type: ignore[assignment]
    return rm, objects, policy


def test_a_pipeline_re_created_under_its_name_starts_without_history(
    manager: tuple[loop.ResourceManager, FakeObjects, Policy],
) -> None:
    rm, objects, policy = manager
    objects.items = [pipeline("uid-old")]
    for cycle in range(3):
        rm.cycle(1_000.0 + 15 * cycle)
    assert policy.seen == [1, 2, 3]
    objects.items = []  # deleted
    rm.cycle(1_045.0)
    assert rm.history == {}
    assert rm.written_at == {}
    objects.items = [pipeline("uid-new")]  # created again, same namespace and name
    rm.cycle(1_060.0)
    rm.cycle(1_075.0)
    assert policy.seen == [1, 2, 3, 1, 2]
    assert set(rm.history) == {"uid-new"}


def test_a_re_creation_between_two_cycles_drops_the_old_state(
    manager: tuple[loop.ResourceManager, FakeObjects, Policy],
) -> None:
    """No cycle sees it gone: the new UID alone tells it apart."""
    rm, objects, policy = manager
    objects.items = [pipeline("uid-old")]
    rm.cycle(1_000.0)
    rm.cycle(1_015.0)
    objects.items = [pipeline("uid-new")]
    rm.cycle(1_030.0)
    assert policy.seen == [1, 2, 1]
    assert set(rm.history) == {"uid-new"}
    assert set(rm.written_at) <= {"uid-new"}
