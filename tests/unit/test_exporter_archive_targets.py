"""The exporter's LogArchive targets: which group and topic, and the archived-through time."""

from __future__ import annotations

from typing import Any

import pytest

from metricpipe_exporters.config import ExporterConfig
from metricpipe_exporters.targets import build_targets, fetch_pipeline_objects
from metricpipe_exporters.timelag import PartitionLag, decide_archived_through_ms

TAKEN_MS = 1_700_000_000_000


def part(end: int, committed: int | None, oldest_ms: int | None = None,
         start: int | None = None) -> PartitionLag:  # fmt: skip
    return PartitionLag("t", 0, end, committed, oldest_ms, start)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([part(10, 10)], TAKEN_MS),  # caught up: everything there at the cycle is archived
        ([part(10, 10), part(10, 4, TAKEN_MS - 60_000)], TAKEN_MS - 60_000),  # the oldest wins
        ([part(10, 4, TAKEN_MS - 5), part(9, 1, TAKEN_MS - 9)], TAKEN_MS - 9),
        ([part(10, 4, None), part(10, 10)], None),  # a record time not read yet: unknown
        ([part(10, None, None, None)], None),  # no position at all: unknown
        ([part(0, None, None, 0)], TAKEN_MS),  # never committed and empty: nothing to archive
        ([part(5, None, TAKEN_MS - 7, 0)], TAKEN_MS - 7),  # never committed: from the start
        ([], None),
    ],
)
def test_decide_archived_through(parts: list[PartitionLag], expected: int | None) -> None:
    assert decide_archived_through_ms(parts, TAKEN_MS) == expected


def test_archives_and_pipelines_of_one_name_are_two_targets() -> None:
    meta = {"namespace": "web", "name": "edge", "uid": "u1"}
    pipeline = {
        "kind": "MetricPipeline",
        "metadata": meta,
        "spec": {"source": {"tag": "edge.**"}, "metric": {"aggregation": "count"}},
    }
    archive = {"kind": "LogArchive", "metadata": meta,
               "spec": {"source": {"tag": "edge.**"}, "freshness": {"target": "10m"}},
               "status": {"replicas": 2}}  # fmt: skip
    targets = {t.key: t for t in build_targets([archive, pipeline], ExporterConfig())}
    assert set(targets) == {"web/edge", "archive:web/edge"}
    got = targets["archive:web/edge"]
    assert (got.topic, got.consumer_group) == ("metricpipe.web.edge.archive",) * 2
    assert (got.freshness_target_seconds, got.replicas, got.kind) == (600.0, 2, "archive")
    assert targets["web/edge"].topic != got.topic


class FakeApi:
    """The cluster's answers: pipelines, and the LogArchive CRD missing (404) or failing."""

    def __init__(self, archives_status: int) -> None:
        self.archives_status = archives_status

    def list_cluster_custom_object(self, group: str, version: str, plural: str) -> Any:
        if plural == "logarchives":
            error = RuntimeError(f"HTTP {self.archives_status}")
            error.status = self.archives_status  # type: ignore[attr-defined]
            raise error
        return {"items": [{"metadata": {"name": "p", "namespace": "n"}}]}


def test_a_cluster_without_the_logarchive_crd_still_has_its_pipelines() -> None:
    found = fetch_pipeline_objects(ExporterConfig(), FakeApi(404))
    assert [(o["kind"], o["metadata"]["name"]) for o in found] == [("MetricPipeline", "p")]
    with pytest.raises(RuntimeError, match="HTTP 403"):  # anything else is a failed cycle
        fetch_pipeline_objects(ExporterConfig(), FakeApi(403))
