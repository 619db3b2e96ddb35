"""The deletion handler with in-memory fakes of its appliers: a stored spec that no longer
parses never keeps a pipeline from going (its cluster route objects are deleted, its topic
kept, since its deletionPolicy is unknown), and a failed clean-up is retried with back-off."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import kopf
import pytest
from pydantic import ValidationError

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_operator import handlers
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.pipeline import Runtime

# Kopf's decorator types it as a handler taking all of Kopf's keyword arguments; called here
# with those the handler reads, as Kopf passes them
FINALIZE: Any = handlers.finalize
META = {"namespace": "team-a", "name": "requests", "uid": "u-1", "generation": 3}


@dataclass
class FakeKube:
    """Deletes what it holds; `broken` makes every call fail as an unreachable API would."""

    objects: set[tuple[str, str]] = field(default_factory=set)
    broken: bool = False
    deleted: list[tuple[str, str]] = field(default_factory=list)

    def delete(self, _api: str, kind: str, name: str) -> bool:
        if self.broken:
            raise ConnectionError("the API server did not answer")
        if (kind, name) in self.objects:
            self.objects.discard((kind, name))
            self.deleted.append((kind, name))
            return True
        return False

    def has_kind(self, _api: str, _kind: str) -> bool:
        return False  # no legacy route kinds to look for

    def fetch(self, *_: Any) -> None:
        return None


class NoKafka:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Kafka must not be touched (called {name})")


def runtime_with(kube: FakeKube) -> Runtime:
    return Runtime(config=OperatorConfig(), kube=kube, kafka=NoKafka(),  # type: ignore[arg-type]
                   kafka_settings={})  # fmt: skip


def test_a_spec_that_does_not_parse_still_lets_the_pipeline_go() -> None:
    route = "mp-team-a.requests"
    kube = FakeKube({("ClusterFluentdConfig", route), ("ClusterOutput", route),
                     ("ClusterFilter", route)})  # fmt: skip
    stored = {"metric": {"aggregation": "no-such"}}
    with pytest.raises(ValidationError):  # the case under test: a spec the model refuses
        MetricPipelineSpec.model_validate(stored)
    FINALIZE(spec=stored, meta=META, body={},
                      memo=kopf.Memo(runtime=runtime_with(kube)))  # fmt: skip
    assert sorted(kube.deleted) == sorted(
        [("ClusterFluentdConfig", route), ("ClusterOutput", route), ("ClusterFilter", route)]
    )
    assert kube.objects == set()


@pytest.mark.parametrize(("retry", "low", "high"), [(0, 5.0, 5.0), (3, 20.0, 40.0),
                                                    (9, 60.0, 120.0)])  # fmt: skip
def test_a_failed_clean_up_is_retried_with_back_off(retry: int, low: float, high: float) -> None:
    with pytest.raises(kopf.TemporaryError) as raised:
        FINALIZE(spec={}, meta=META, body={}, retry=retry,
                          memo=kopf.Memo(runtime=runtime_with(FakeKube(broken=True))))  # fmt: skip
    assert raised.value.delay is not None
    assert low <= raised.value.delay <= high
    assert "the API server did not answer" in str(raised.value)
