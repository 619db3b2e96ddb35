"""Tenants apart on the data path: `team/a-x` and `team-a/x`, whose default index was one and
the same before the naming fix (`metricpipe-<namespace>-<name>`), run as two real consumer
processes at the same time on the same records, each on its own default topic, index, state
index and consumer group, all taken from the product's naming. Each pipeline's final
documents equal an oracle computed here in plain Python over the records this file produced
(nothing that parses or aggregates is imported for it), no index holds a document of the
other pipeline, and a record sent to the second topic only is counted by the second pipeline
only.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from consumers import (
    ConsumerProcesses,
    Pipeline,
    create_topics,
    produce,
    read_topic,
    wait_consumed,
    wait_until_finalized,
)
from metricpipe_consumers.sink import build_sink
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.naming import (
    build_consumer_group,
    build_default_index,
    build_default_topic,
    build_index_names,
)
from metricpipe_contract.refs import PipelineRef
from metricpipe_devstack.env import StackEnv
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.consumer import build_pipeline_document

MINUTE = 60_000
WINDOWS = 3
HOSTS = ("h0", "h1", "h2", "h3")
SPEC: dict[str, Any] = {
    "source": {"tag": "app.latency"},
    "metric": {"aggregation": "avg", "valueField": "latency", "groupBy": ["host"],
               "window": "1m", "allowedLateness": "10s",
               "eventTime": {"field": "ts", "format": "epoch_millis"}},
}  # fmt: skip
# Series key: (window start in ms, host). Value: (count, sum, min, max).
Oracle = dict[tuple[int, str], tuple[int, float, float, float]]


def build_records(base: int) -> list[dict[str, Any]]:
    """100 records a window over three 1-minute windows, four hosts; event times jitter by up
    to 3 s (within the 10 s lateness). Latencies are multiples of 1/4, so every sum is exact
    whatever order it is added in."""
    rng = random.Random(16)
    records = []
    for i in range(WINDOWS * 100):
        ms = base + i * 600 + rng.randrange(0, 3_000)
        ms = min(ms, base + WINDOWS * MINUTE - 1)
        records.append({"ts": ms, "host": HOSTS[rng.randrange(len(HOSTS))],
                        "latency": rng.randrange(4, 4_000) / 4, "path": f"/p{i % 7}"})  # fmt: skip
    return records


def oracle(records: list[dict[str, Any]]) -> Oracle:
    values: dict[tuple[int, str], list[float]] = defaultdict(list)
    for record in records:
        values[(record["ts"] // MINUTE * MINUTE, record["host"])].append(record["latency"])
    return {key: (len(v), sum(v), min(v), max(v)) for key, v in values.items()}


def encoded(records: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    return [(r["host"].encode(), json.dumps(r).encode()) for r in records]


def default_pipeline(stack: StackEnv, tmp_path: Path, namespace: str, name: str) -> Pipeline:
    """The pipeline document the operator mounts for <namespace>/<name> with every name left to
    its default (no topic.name, no sink.index)."""
    spec = MetricPipelineSpec.model_validate({**SPEC, "sink": {"backend": "elasticsearch"}})
    config = OperatorConfig(
        kafka_bootstrap=stack.kafka_bootstrap,
        elasticsearch_url=stack.elasticsearch_url,
        opensearch_url=stack.opensearch_url,
    )
    ref = PipelineRef(namespace, name, f"uid-{namespace}-{name}")
    document = build_pipeline_document(ref, spec, spec.topic_name(namespace, name), config)
    path = tmp_path / f"{namespace}.{name}.json"
    path.write_text(json.dumps(document))
    sink = build_sink("elasticsearch", document["sink"]["endpoint"], document["sink"]["index"],
                      None, None)  # fmt: skip
    return Pipeline(f"{namespace}.{name}", spec, path, sink, document, document["spec"])


def stored(pipeline: Pipeline, index: str) -> list[dict[str, Any]]:
    pipeline.sink.refresh()
    return pipeline.sink.search(index, {"match_all": {}}, size=1_000)


def final_series(pipeline: Pipeline) -> Oracle:
    docs = [d for d in stored(pipeline, pipeline.sink.index) if d["final"]]
    series: Oracle = {}
    for doc in docs:
        key = (int(doc["window_start_ms"]), str(doc["group"]["host"]))
        assert key not in series, f"two final documents for {key}"
        count, total = int(doc["count"]), float(doc["sum"])
        assert abs(float(doc["value"]) - total / count) <= 1e-9 * abs(total / count), doc
        series[key] = (count, total, float(doc["min"]), float(doc["max"]))
    return series


def test_team_a_x_and_team_a_x_on_the_same_data_both_equal_the_oracle(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    first, second = (unique_name, "a-x"), (f"{unique_name}-a", "x")
    # the scheme the fix replaced gave both pipelines one index (and one state index)
    assert f"metricpipe-{first[0]}-{first[1]}" == f"metricpipe-{second[0]}-{second[1]}"
    names = {
        key: {
            "topic": build_default_topic(*key),
            "group": build_consumer_group(*key),
            "indices": build_index_names(build_default_index(*key)),
        }
        for key in (first, second)
    }
    one, other = names[first], names[second]
    assert one["topic"] != other["topic"]
    assert one["group"] != other["group"]
    assert set(one["indices"]).isdisjoint(other["indices"])

    pipelines = [default_pipeline(stack, tmp_path, *key) for key in (first, second)]
    for pipeline, key in zip(pipelines, (first, second), strict=True):
        # the documents the consumers read carry the product's default names
        assert pipeline.document["topic"] == names[key]["topic"]
        assert pipeline.group == names[key]["group"]
        assert (pipeline.sink.index, pipeline.sink.state_index) == names[key]["indices"]

    base = 1_700_000_000_000 // MINUTE * MINUTE
    common = build_records(base)
    # only the second topic gets this one: a host of its own in the middle window, sent in its
    # place in event time (after the records of a minute later it would be late)
    extra = {"ts": base + MINUTE + 30_000, "host": "only-second", "latency": 7.25, "path": "/x"}
    middle = next(i for i, r in enumerate(common) if r["ts"] >= extra["ts"])
    with_extra = [*common[:middle], extra, *common[middle:]]
    for pipeline in pipelines:
        create_topics(stack, pipeline.document["topic"], 2)
    produce(stack, pipelines[0].document["topic"], encoded(common))
    produce(stack, pipelines[1].document["topic"], encoded(with_extra))
    expected = [oracle(common), oracle(with_extra)]
    assert len(expected[0]) == WINDOWS * len(HOSTS)
    assert (base + MINUTE, "only-second") not in expected[0]

    for pipeline in pipelines:
        processes.start(pipeline, METRICPIPE_IDLE_TIMEOUT_SECONDS="5")
    for pipeline in pipelines:
        wait_consumed(stack, pipeline, pipeline.document["topic"], processes, timeout=240)
    for pipeline in pipelines:
        wait_until_finalized(pipeline, base + WINDOWS * MINUTE, timeout=120)

    for pipeline, want, (namespace, name) in zip(pipelines, expected, (first, second),
                                                 strict=True):  # fmt: skip
        assert final_series(pipeline) == want, pipeline.name
        # nothing late, nothing dead-lettered: the other pipeline's progress moved nothing here
        assert read_topic(stack, pipeline.document["deadLetterTopic"]) == []
        owner = f"{namespace}/{name}"
        for index in (pipeline.sink.index, pipeline.sink.state_index):
            docs = stored(pipeline, index)
            assert docs, f"{index} is empty"
            assert {d["pipeline"] for d in docs} == {owner}, index
    assert (base + MINUTE, "only-second") in final_series(pipelines[1])
    assert not [d for d in stored(pipelines[0], pipelines[0].sink.index)
                if d["group"]["host"] == "only-second"]  # fmt: skip
    processes.assert_alive()
