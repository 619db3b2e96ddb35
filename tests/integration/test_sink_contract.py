"""One contract, two real servers: the sink behaves the same on Elasticsearch and OpenSearch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metricpipe_consumers.aggregate import Aggregate
from metricpipe_consumers.documents import SinkDoc, build_final_doc, build_partial_doc
from metricpipe_consumers.sink import SearchSink, SinkError, build_sink
from metricpipe_devstack.env import StackEnv

WINDOW = (1_478_181_600_000, 3_600_000)


@pytest.fixture(params=["elasticsearch", "opensearch"])
def sink(request: pytest.FixtureRequest, stack: StackEnv, unique_name: str) -> Iterator[SearchSink]:
    url = stack.elasticsearch_url if request.param == "elasticsearch" else stack.opensearch_url
    built = build_sink(request.param, url, f"{unique_name}-metrics", None, None)
    built.ensure_indices()
    built.ensure_indices()  # idempotent
    yield built
    built.client.indices.delete(index=f"{built.index},{built.state_index}")


def partial(sink: SearchSink, count: int, max_offset: int, partition: int = 0) -> SinkDoc:
    agg = Aggregate(
        count, float(count), 1.0, 1.0, float(count), None, max_offset, {partition: max_offset}
    )
    return build_partial_doc(
        sink.index, pipeline="ns/p", aggregation="count", interpolation="linear",
        group_by=["probe"], window=WINDOW, group=("7",), partition=partition, agg=agg,
        now_ms=WINDOW[0],
    )  # fmt: skip


def test_versioned_partials_refuse_stale_writes(sink: SearchSink) -> None:
    assert sink.write([partial(sink, 5, 10)]).written == 1
    assert sink.write([partial(sink, 3, 7)]).conflicts == 1  # older data: refused
    assert sink.write([partial(sink, 5, 10)]).conflicts == 1  # replay of the same: refused
    assert sink.write([partial(sink, 8, 12)]).written == 1
    sink.refresh()
    (doc,) = sink.search(sink.index, {"term": {"partition": 0}})
    assert (doc["count"], doc["max_offset"], doc["final"]) == (8, 12, False)
    assert doc["group"] == {"probe": "7"}


def test_finals_are_written_once(sink: SearchSink) -> None:
    agg = Aggregate(4, 4.0, 1.0, 1.0, 4.0, None, 9, {0: 9, 1: 3})
    final = build_final_doc(
        sink.index, pipeline="ns/p", aggregation="count", interpolation="linear",
        group_by=["probe"], window=WINDOW, group=("7",), agg=agg,
        now_ms=WINDOW[0] + WINDOW[1] + 5_000,
    )  # fmt: skip
    assert sink.write([final]).written == 1
    assert sink.write([final]).conflicts == 1
    sink.refresh()
    (doc,) = sink.search(sink.index, {"term": {"final": True}})
    assert doc["value"] == 4.0
    assert doc["offsets"] == {"0": 9, "1": 3}
    assert doc["delay_seconds"] == 5.0


def test_mapping_problems_are_clear_errors(sink: SearchSink) -> None:
    broken = SinkDoc(sink.index, "x", {"count": "not a number"})
    with pytest.raises(SinkError, match="refused with HTTP 400"):
        sink.write([broken])
