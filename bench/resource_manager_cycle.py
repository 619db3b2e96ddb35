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
import random
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import yaml
from consumer_throughput import ensure_stack, say
from kubernetes import client, config
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from metricpipe_contract import names
from metricpipe_contract.model import GROUP, PLURAL, VERSION
from metricpipe_devstack.env import StackEnv
from metricpipe_exporters.rules import build_file_sd
from metricpipe_operator.scaling.loop import LoopSettings, ResourceManager
from metricpipe_operator.scaling.model import PolicyConfig
from metricpipe_operator.scaling.policy import decide

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS, GOAL_QUERIES = 2.0, 10
INTERVAL = LoopSettings.interval_seconds  # between two cycles, as the operator runs them
SETTLE = 15.0  # three scrapes: Prometheus has the new level for every pipeline


class SyntheticMetrics:
    """Every pipeline: steady input, a consumer keeping up at ~60 % busy, small lag, freshness
    moving by up to a second; `set_level` multiplies every pipeline's freshness and lag, a
    change every status must show."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.registry = CollectorRegistry()
        self.offsets = Counter(names.TOPIC_PARTITION_OFFSET, "", ["pipeline", "topic", "partition"],
                               registry=self.registry)  # fmt: skip
        self.consumed = Counter(names.CONSUMER_RECORDS_CONSUMED.removesuffix("_total"), "",
                                ["pipeline"], registry=self.registry)  # fmt: skip
        self.busy = Counter(names.CONSUMER_BUSY_SECONDS.removesuffix("_total"), "", ["pipeline"],
                            registry=self.registry)  # fmt: skip
        self.freshness = Gauge(names.SINK_FRESHNESS, "", ["pipeline"], registry=self.registry)
        self.partitions = Gauge(names.TOPIC_PARTITIONS, "", ["pipeline"], registry=self.registry)
        self.lag = Gauge(names.GROUP_LAG, "", ["pipeline", "partition"], registry=self.registry)
        self.time_lag = Gauge(names.GROUP_TIME_LAG, "", ["pipeline", "partition"],
                              registry=self.registry)  # fmt: skip
        self.noise = random.Random(7)
        self.set_level(1.0)
        self.stop = threading.Event()
        threading.Thread(target=self._advance, daemon=True).start()
        server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = int(server.server_port)

    def set_level(self, factor: float) -> None:
        self.level = factor
        for i, key in enumerate(self.keys):
            self.freshness.labels(key).set((5 + i % 7) * factor)
            self.partitions.labels(key).set(6)
            self.lag.labels(key, "0").set(50 * factor)
            self.time_lag.labels(key, "0").set(1.5 * factor)

    def _advance(self) -> None:
        while not self.stop.is_set():
            for i, key in enumerate(self.keys):
                rate = 100 + 10 * (i % 10)
                self.offsets.labels(key, f"t{i}", "0").inc(rate)
                self.consumed.labels(key).inc(rate)
                self.busy.labels(key).inc(0.6)  # 60 % busy
                # freshness moves within a second or two, as live pipelines' does
                self.freshness.labels(key).set((5 + i % 7) * self.level + self.noise.random())
            self.stop.wait(1)


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


def row(report: Any) -> dict[str, Any]:
    return {"pipelines": report.pipelines, "queries": report.queries,
            "seconds": round(report.seconds, 3), "status_patches": report.status_patches,
            "scaled": report.scaled, "deferred": report.deferred, "conflicts": report.conflicts,
            "metrics_available": report.metrics_available}  # fmt: skip


def measure(
    kube: client.ApiClient, stack: StackEnv, namespace: str, metrics: SyntheticMetrics,
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """The cycles a ResourceManager runs, 15 s apart as in production: the pipelines are all
    new (no status yet), then steady; then an operator restart; then every pipeline's
    freshness jumps (every status must change), with the write budget and without it."""

    def manager(budget: int) -> ResourceManager:
        settings = LoopSettings(
            prometheus_url=stack.prometheus_url, namespace=namespace,
            write_concurrency=args.write_concurrency, max_status_writes_per_cycle=budget,
        )  # fmt: skip
        return ResourceManager(kube, settings, PolicyConfig(), decide)

    def run(rm: ResourceManager, label: str) -> dict[str, Any]:
        result = row(rm.cycle(time.time()))
        say(f"   {label:>14}: {result}")
        return result

    first = manager(args.status_budget)
    new = [run(first, "new pipelines")]
    while new[-1]["deferred"] and len(new) < 10:
        time.sleep(INTERVAL)
        new.append(run(first, "new (deferred)"))
    steady = []
    for _ in range(args.steady_cycles):
        time.sleep(INTERVAL)
        steady.append(run(first, "steady"))
    restart = run(manager(args.status_budget), "restart")
    metrics.set_level(10.0)  # every status must show the jump
    time.sleep(SETTLE)
    jump_unbudgeted = run(manager(len(metrics.keys)), "jump, no budget")
    metrics.set_level(1.0)  # and back: a second jump, now with the budget
    time.sleep(SETTLE)
    jump_budgeted = run(manager(args.status_budget), "jump, budget")
    return {"new_pipelines": new, "steady": steady, "restart": restart,
            "jump_unbudgeted": jump_unbudgeted, "jump_budgeted": jump_budgeted}  # fmt: skip


def summarize(results: dict[str, Any], args: argparse.Namespace) -> float:
    """Prints the figures against the goals; the steady cycle's ratio to 10 pipelines."""
    big, base = results[str(args.pipelines)], results["10"]
    worst_steady = max(c["seconds"] for c in big["steady"])
    worst_new = max(c["seconds"] for c in big["new_pipelines"])
    base_steady = max(c["seconds"] for c in base["steady"])
    ratio = worst_steady / base_steady if base_steady else float("nan")
    say(
        f"== {args.pipelines} pipelines, {big['steady'][0]['queries']} PromQL queries a cycle "
        f"(goal <= {GOAL_QUERIES}); cycle seconds (goal <= {GOAL_SECONDS}):"
    )
    say(
        f"   steady: max {worst_steady:.2f} s with "
        f"{max(c['status_patches'] for c in big['steady'])} status patches at most "
        f"({ratio:.1f}x the 10-pipeline steady cycle, {base_steady:.2f} s)"
    )
    say(
        f"   all new: max {worst_new:.2f} s; every status written after "
        f"{len(big['new_pipelines'])} cycles (budget {args.status_budget} writes a cycle)"
    )
    say(
        f"   restart: {big['restart']['seconds']:.2f} s, "
        f"{big['restart']['status_patches']} status patches"
    )
    say(
        f"   every status changed: {big['jump_budgeted']['seconds']:.2f} s with the budget "
        f"({big['jump_budgeted']['deferred']} deferred to the next cycle); without it "
        f"{big['jump_unbudgeted']['seconds']:.2f} s for "
        f"{big['jump_unbudgeted']['status_patches']} patches"
    )
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--write-concurrency", type=int, default=LoopSettings.write_concurrency)
    parser.add_argument("--status-budget", type=int,
                        default=LoopSettings.max_status_writes_per_cycle)  # fmt: skip
    parser.add_argument("--steady-cycles", type=int, default=4)
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
            core.create_namespace(cast(Any, {"metadata": {"name": namespace}}))
            namespaces.append(namespace)
            say(f"-- {count} pipelines in {namespace}")
            keys = create_pipelines(objects, namespace, count)
            metrics = SyntheticMetrics(keys)
            port = metrics.port
            stops.append(metrics.stop)
            sd = stack.prometheus_file_sd_dir / f"bench-rm-{port}.json"
            sd.write_text(json.dumps(build_file_sd([f"127.0.0.1:{port}"], names.CONSUMER_JOB, {})))
            sd_files.append(sd)
            say("   waiting 40 s for Prometheus to scrape enough for rate()")
            time.sleep(40)
            results[str(count)] = measure(kube, stack, namespace, metrics, args)
    finally:
        for sd in sd_files:
            sd.unlink(missing_ok=True)
        for stop in stops:
            stop.set()
        for namespace in namespaces:
            core.delete_namespace(namespace)
    ratio = summarize(results, args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"resourcemanager-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps({"when": datetime.now(UTC).isoformat(), **results,
                                "ratio_to_10": ratio}, indent=2))  # fmt: skip
    say(f"== results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
