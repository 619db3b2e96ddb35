"""Elasticsearch and OpenSearch are real: each official client bulk-indexes and searches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from elasticsearch import helpers as es_helpers
from opensearchpy import OpenSearch
from opensearchpy import helpers as os_helpers

from metricpipe_devstack.env import StackEnv

DOCS = 2_000
INDEX_BODY = {
    "mappings": {"properties": {"probe": {"type": "keyword"}, "rtt": {"type": "double"}}},
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
}


@dataclass
class Backend:
    """The two clients differ in call style (the ES 9 client takes keyword bodies only)."""

    name: str
    client: Any
    bulk: Callable[..., tuple[int, int | list[Any]]]  # (ok, errors; their count if stats_only)
    keyword_bodies: bool

    def create_index(self, index: str, body: dict[str, Any]) -> None:
        if self.keyword_bodies:
            self.client.indices.create(index=index, **body)
        else:
            self.client.indices.create(index=index, body=body)

    def search(self, index: str, body: dict[str, Any]) -> Any:
        if self.keyword_bodies:
            return self.client.search(index=index, **body)
        return self.client.search(index=index, body=body)


@pytest.fixture(params=["elasticsearch", "opensearch"])
def backend(request: pytest.FixtureRequest, stack: StackEnv) -> Backend:
    if request.param == "elasticsearch":
        return Backend(
            "elasticsearch",
            Elasticsearch(stack.elasticsearch_url),
            es_helpers.bulk,
            keyword_bodies=True,
        )
    return Backend(
        "opensearch", OpenSearch(stack.opensearch_url), os_helpers.bulk, keyword_bodies=False
    )


def test_bulk_index_and_search(backend: Backend, unique_name: str) -> None:
    index = f"{unique_name}-{backend.name}"
    backend.create_index(index, INDEX_BODY)
    try:
        actions = [
            {"_index": index, "_id": str(i), "_source": {"probe": f"p{i % 4}", "rtt": float(i)}}
            for i in range(DOCS)
        ]
        indexed, errors = backend.bulk(backend.client, actions, refresh=True)
        assert (indexed, errors) == (DOCS, [])
        result = backend.search(
            index,
            {
                "size": 0,
                "query": {"term": {"probe": "p1"}},
                "aggs": {"avg_rtt": {"avg": {"field": "rtt"}}},
            },
        )
        p1 = [float(i) for i in range(DOCS) if i % 4 == 1]
        assert result["hits"]["total"]["value"] == len(p1)
        assert result["aggregations"]["avg_rtt"]["value"] == pytest.approx(sum(p1) / len(p1))
    finally:
        backend.client.indices.delete(index=index)
