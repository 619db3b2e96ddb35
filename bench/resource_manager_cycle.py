"""Benchmark: one ResourceManager cycle for 1,000 synthetic pipelines on the real API server and
the real Prometheus — queries + decisions + the status patches that changed — against a
10-pipeline baseline in the same run.

Synthetic metrics come from an in-process exporter registered with the stack's Prometheus
(file_sd); the 1,000 MetricPipelines are real objects in a throw-away namespace (the operator is
not running, so nothing else touches them). Results: bench/results/resourcemanager-*.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from consumer_throughput import ensure_stack, say
from kubernetes import client, config
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from metricpipe_devstack.env import StackEnv
from metricpipe_exporters import names
from metricpipe_exporters.rules import build_file_sd
from metricpipe_operator.api.model import GROUP, PLURAL, VERSION
from metricpipe_operator.scaling.loop import LoopSettings, ResourceManager
from metricpipe_operator.scaling.model import PolicyConfig
from metricpipe_operator.scaling.policy import decide

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS, GOAL_QUERIES = 2.0, 10


def serve_synthetic_metrics(keys: list[str]) -> tuple[int, threading.Event]:
    """Every pipeline: steady input, a consumer keeping up at ~60 % busy, small lag."""
    registry = CollectorRegistry()
    offsets = Counter(names.TOPIC_PARTITION_OFFSET, "", ["pipeline", "topic", "partition"],
                      registry=registry)  # fmt: skip
    consumed = Counter(names.CONSUMER_RECORDS_CONSUMED.removesuffix("_total"), "", ["pipeline"],
                       registry=registry)  # fmt: skip
    busy = Counter(names.CONSUMER_BUSY_SECONDS.removesuffix("_total"), "", ["pipeline"],
                   registry=registry)  # fmt: skip
    gauges = {name: Gauge(name, "", ["pipeline"], registry=registry) for name in (
        names.SINK_FRESHNESS, names.TOPIC_PARTITIONS)}  # fmt: skip
    lag = Gauge(names.GROUP_LAG, "", ["pipeline", "partition"], registry=registry)
    time_lag = Gauge(names.GROUP_TIME_LAG, "", ["pipeline", "partition"], registry=registry)
    for i, key in enumerate(keys):
        gauges[names.SINK_FRESHNESS].labels(key).set(5 + i % 7)
        gauges[names.TOPIC_PARTITIONS].labels(key).set(6)
        lag.labels(key, "0").set(50)
        time_lag.labels(key, "0").set(1.5)
    stop = threading.Event()

    def advance() -> None:
        while not stop.is_set():
            for i, key in enumerate(keys):
                rate = 100 + 10 * (i % 10)
                offsets.labels(key, f"t{i}", "0").inc(rate)
                consumed.labels(key).inc(rate)
                busy.labels(key).inc(0.6)  # 60 % busy
            stop.wait(1)

    threading.Thread(target=advance, daemon=True).start()
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    return int(server.server_port), stop


def create_pipelines(api: client.CustomObjectsApi, namespace: str, count: int) -> list[str]:
    spec = {"source": {"tag": "bench"}, "metric": {"aggregation": "count"},
            "scaling": {"maxReplicas": 6}}  # fmt: skip
    made = []
    for i in range(count):
        name = f"p{i:04d}"
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MetricPipeline",
                "metadata": {"name": name}, "spec": spec}  # fmt: skip
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        made.append(f"{namespace}/{name}")
        if (i + 1) % 250 == 0:
            say(f"   {i + 1} pipelines created")
    return made


def measure(
    kube: client.ApiClient, stack: StackEnv, namespace: str, args: argparse.Namespace
) -> dict[str, Any]:
    settings = LoopSettings(
        prometheus_url=stack.prometheus_url, namespace=namespace,
        write_concurrency=args.write_concurrency, max_status_writes_per_cycle=args.status_budget,
    )  # fmt: skip
    manager = ResourceManager(kube, settings, PolicyConfig(), decide)
    first = manager.cycle(time.time())  # every status is new: all written
    time.sleep(5)
    steady = manager.cycle(time.time())  # only what changed
    # every status at its maximum age: all rewritten (the worst steady-state cycle)
    manager.written_at.clear()
    aged = manager.cycle(time.time())

    def row(report: Any) -> dict[str, Any]:
        return {"pipelines": report.pipelines, "queries": report.queries,
                "seconds": round(report.seconds, 3), "status_patches": report.status_patches,
                "scaled": report.scaled, "deferred": report.deferred,
                "metrics_available": report.metrics_available}  # fmt: skip

    return {"first_cycle": row(first), "steady_cycle": row(steady), "all_aged_cycle": row(aged)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--write-concurrency", type=int, default=LoopSettings.write_concurrency)
    parser.add_argument("--status-budget", type=int,
                        default=LoopSettings.max_status_writes_per_cycle)  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    stack = ensure_stack()
    kube = config.new_client_from_config(config_file=str(stack.kubeconfig))
    crd = yaml.safe_load((REPO / "crds" / "metricpipelines.metricpipe.io.yaml").read_text())
    try:
        client.ApiextensionsV1Api(kube).create_custom_resource_definition(crd)
        time.sleep(3)
    except client.exceptions.ApiException as error:
        if error.status != 409:
            raise
    core, objects = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    results: dict[str, Any] = {}
    sd_files, stops, namespaces = [], [], []
    try:
        for count in (10, args.pipelines):
            namespace = f"bench-rm-{uuid.uuid4().hex[:6]}"
            core.create_namespace({"metadata": {"name": namespace}})
            namespaces.append(namespace)
            say(f"-- {count} pipelines in {namespace}")
            keys = create_pipelines(objects, namespace, count)
            port, stop = serve_synthetic_metrics(keys)
            stops.append(stop)
            sd = stack.prometheus_file_sd_dir / f"bench-rm-{port}.json"
            sd.write_text(json.dumps(build_file_sd([f"127.0.0.1:{port}"], names.CONSUMER_JOB, {})))
            sd_files.append(sd)
            say("   waiting 40 s for Prometheus to scrape enough for rate()")
            time.sleep(40)
            results[str(count)] = measure(kube, stack, namespace, args)
            say(f"   {results[str(count)]}")
    finally:
        for sd in sd_files:
            sd.unlink(missing_ok=True)
        for stop in stops:
            stop.set()
        for namespace in namespaces:
            core.delete_namespace(namespace)
    big = results[str(args.pipelines)]["steady_cycle"]
    base = results["10"]["steady_cycle"]
    ratio = big["seconds"] / base["seconds"] if base["seconds"] else float("nan")
    say(f"== {args.pipelines} pipelines: steady cycle {big['seconds']:.2f} s with "
        f"{big['queries']} queries and {big['status_patches']} status patches "
        f"({ratio:.1f}x the 10-pipeline cycle); first cycle (every status written): "
        f"{results[str(args.pipelines)]['first_cycle']['seconds']:.2f} s; every status aged "
        f"out: {results[str(args.pipelines)]['all_aged_cycle']['seconds']:.2f} s. "
        f"Goal: <= {GOAL_SECONDS} s, <= {GOAL_QUERIES} queries")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"resourcemanager-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps({"when": datetime.now(UTC).isoformat(), **results,
                                "ratio_to_10": ratio}, indent=2))  # fmt: skip
    say(f"== results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
