"""The dashboards show live data: every query of the generated Grafana dashboard returns
series for the test's pipelines from the real Prometheus, 2.x and 3.x (the stack runs both on
the same targets and rules), and every saved visualization's
aggregation returns buckets from the real Elasticsearch and OpenSearch.

Two pipelines over one topic (2 partitions), one writing to Elasticsearch, one to OpenSearch,
each with a real consumer process (scraped through the stack's file_sd) and one lag exporter
for both (the stack's Prometheus scrapes it and runs the project's recording rules). The
topic gets a backlog of three minutes of past windows (so final documents are written as soon
as the consumers read it) and then live records, one in 25 of them not JSON: that makes the
dead-letter series move (reason malformed_json). The pipelines' status is given to the
exporter through its pipelines file; desiredReplicas goes from 1 to 2 mid-test, which is the
scaling event the dashboard's annotation marks. The queries are the files `make manifests`
writes, run by metricpipe_dashboards.live, which takes the Prometheus and sink URLs as
parameters.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Producer

from consumers import ConsumerProcesses, Pipeline, create_topics, make_pipeline, produce
from exporter_harness import register
from helpers import free_port, wait_for
from metricpipe_contract import names
from metricpipe_dashboards import cli, live
from metricpipe_dashboards.saved_objects_model import SavedObjects
from metricpipe_devstack.env import StackEnv

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "manifests" / "components" / "monitoring" / "dashboards"
PARTITIONS = 2
SCRAPE_SECONDS = 5  # the local stack's scrape interval
STEP_SECONDS = 5  # the query step (Grafana's $__interval for a few minutes on a wide panel)
BACKLOG_MINUTES = 3
SPEC = {"source": {"tag": "t"},
        "metric": {"aggregation": "avg", "valueField": "rtt", "window": "1m",
                   "allowedLateness": "10s", "groupBy": ["host"]}}  # fmt: skip
DEAD_LETTER_REASON = "malformed_json"


def record(at: float, n: int) -> bytes:
    when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"time": when, "tag": "t", "host": f"h{n % 3}", "rtt": n % 50}).encode()


def backlog(now: float) -> list[tuple[None, bytes, int]]:
    """Ten records per partition for each of the past minutes (oldest first), each with its
    event time as its Kafka timestamp: on time when it was "sent", not a late record."""
    start = (int(now) // 60 - BACKLOG_MINUTES - 1) * 60
    span = BACKLOG_MINUTES * 60
    count = 10 * PARTITIONS * BACKLOG_MINUTES
    times = [start + i * span / count for i in range(count)]
    return [(None, record(at, i), int(at * 1000)) for i, at in enumerate(times)]


class LiveRecords:
    """`rate` records a second stamped now, every 25th not JSON (a dead letter)."""

    def __init__(self, stack: StackEnv, topic: str, rate: float) -> None:
        self.producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 5})
        self.topic, self.rate, self.sent = topic, rate, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            while self.sent < (time.monotonic() - started) * self.rate:
                value = b"not json" if self.sent % 25 == 24 else record(time.time(), self.sent)
                self.producer.produce(self.topic, value=value, partition=self.sent % PARTITIONS)
                self.sent += 1
            self.producer.poll(0.05)
        self.producer.flush(30)

    def __enter__(self) -> LiveRecords:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def exporter_objects(pipelines: list[Pipeline], desired: int) -> list[dict[str, Any]]:
    """The pipelines as the exporter reads them, with the status the operator would write."""
    return [{"metadata": {"namespace": "it", "name": p.name},
             "spec": {**p.applied},
             "status": {"replicas": 1, "desiredReplicas": desired}}
            for p in pipelines]  # fmt: skip


def write_atomically(path: Path, text: str) -> None:
    """The exporter re-reads its pipelines file every cycle: never let it see half a file."""
    part = path.with_suffix(".part")
    part.write_text(text)
    part.replace(path)


def missing_series(results: list[live.QueryResult], keys: set[str]) -> dict[str, set[str]]:
    """where -> the test's pipelines a query returned no series for."""
    found = {r.where: keys - {s.get("pipeline", "") for s in r.series} for r in results}
    return {where: missing for where, missing in found.items() if missing}


def test_every_dashboard_query_returns_data_for_live_pipelines(
    stack: StackEnv, unique_name: str, tmp_path: Path, start_exporter: Any,
    processes: ConsumerProcesses,
) -> None:  # fmt: skip
    began = time.time()
    topic = f"dash-{unique_name}"
    create_topics(stack, topic, PARTITIONS)
    produce(stack, topic, backlog(began))
    pipelines = [
        make_pipeline(stack, tmp_path, f"dash-{backend[:2]}-{unique_name}", topic, SPEC, backend)
        for backend in ("elasticsearch", "opensearch")
    ]
    keys = {f"it/{p.name}" for p in pipelines}
    assert stack.prometheus3_url, ".stack/env names no PROMETHEUS3_URL: run `make stack-up` again"
    # both servers scrape the same targets and load the same rules (docs/local-stack.md)
    servers = {"prometheus 2.x": stack.prometheus_url, "prometheus 3.x": stack.prometheus3_url}
    model = json.loads((DASHBOARDS / cli.GRAFANA_FILE).read_text())
    objects = SavedObjects.parse_ndjson((DASHBOARDS / cli.SAVED_OBJECTS_FILE).read_text())
    variables = live.Variables(tuple(sorted(keys)), STEP_SECONDS, SCRAPE_SECONDS)
    registered = []
    start_exporter(exporter_objects(pipelines, desired=1))
    pipelines_file = tmp_path / "pipelines-0.yaml"  # where start_exporter wrote them
    try:
        for pipeline in pipelines:
            port = free_port()
            processes.start(pipeline, METRICPIPE_METRICS_PORT=str(port))
            registered.append(register(stack, port, names.CONSUMER_JOB, f"consumer-{port}"))
        with LiveRecords(stack, topic, rate=10) as traffic:

            def desired_scraped() -> bool:
                """Both servers hold the desired replicas before they change: a server that first
                scraped the exporter after the change would see no change to mark."""
                expr = f'{names.PIPELINE_DESIRED_REPLICAS}{{pipeline=~"it/dash-.*-{unique_name}"}}'
                return all(
                    len(live.query_range(url, expr, began, time.time(), 5)) == len(keys)
                    for url in servers.values()
                )

            wait_for(desired_scraped, 60, "the desired replicas in both Prometheus servers")
            # the scaling event: the operator wants 2 replicas now
            write_atomically(pipelines_file, yaml.safe_dump(exporter_objects(pipelines, 2)))

            def run_everywhere() -> dict[str, list[live.QueryResult]]:
                return {version: live.run_grafana_queries(url, model, began, time.time(),
                                                          variables)
                        for version, url in servers.items()}  # fmt: skip

            def every_query_answers() -> dict[str, list[live.QueryResult]]:
                processes.assert_alive()
                answers = run_everywhere()
                missing = any(missing_series(found, keys) for found in answers.values())
                return {} if missing else answers

            try:
                answered = wait_for(every_query_answers, 150, "series for every query", 5)
            finally:
                for version, last in run_everywhere().items():
                    print(f"{version}: missing series after {time.time() - began:.0f} s: "
                          f"{missing_series(last, keys)}")  # fmt: skip
            assert traffic.sent > 0
    finally:
        for path in registered:
            path.unlink(missing_ok=True)
    end = time.time()
    for version, results in answered.items():
        for result in results:
            print(f"{version} {result.where}: {len(result.series)} series, "
                  f"{result.samples} samples")  # fmt: skip
        assert missing_series(results, keys) == {}, version
        (by_reason,) = [r for r in results if r.where == "panel 'Dead letters' A"]
        assert {s["reason"] for s in by_reason.series} >= {DEAD_LETTER_REASON}, version
        variable = live.fetch_variable_values(servers[version], model, "pipeline", began, end)
        assert set(variable) >= keys, version

    # the sink's side: every visualization over each backend's index pattern
    only_ours = [{"terms": {"pipeline": sorted(keys)}}]
    start_ms, end_ms = int((began - 3600) * 1000), int(end * 1000)
    for pipeline in pipelines:
        url = stack.elasticsearch_url if pipeline.document["sink"]["backend"] == "elasticsearch" \
            else stack.opensearch_url  # fmt: skip

        def all_have_buckets(url: str = url) -> list[live.SearchResult]:
            found = live.run_saved_objects(url, objects, start_ms=start_ms, end_ms=end_ms,
                                           interval="1m", extra_filters=only_ours)  # fmt: skip
            return found if all(r.rows for r in found) else []

        searched = wait_for(all_have_buckets, 60, f"buckets in every visualization at {url}", 2)
        for answer in searched:
            print(f"{url} {answer.visualization}: {len(answer.rows)} buckets")
            assert any(v is not None for _, values in answer.rows for v in values.values())
        by_id = {r.visualization: r for r in searched}
        assert by_id["metricpipe-final-value"].keys_at(1) == {f"it/{pipeline.name}"}
        assert "true" in by_id["metricpipe-partial-vs-final"].keys_at(1)  # final documents
    print(f"the check took {time.time() - began:.0f} s")
