"""`make demo`: the whole loop on the local stack, on real data; `make demo-down` undoes it.

The stack must be up (`make stack-up`, which `make demo` runs first; its kubelet is the Node
that runs every pod as a container). This waits for that Node, installs metricpipe as a user
would (`kubectl apply -k manifests/overlays/local`: the operator with its ResourceManager and the
lag exporter run as pods, with their own ServiceAccounts), applies the two example pipelines and
the example LogArchive of the Apache log scaled to the demo's clock, replays the shared data
re-timed onto now with a burst (the Apache lines into the pipeline's and the archive's topics, as
Fluentd's two routes of their tag would), and shows what a user would see; at the end it counts
the archive's records on HDFS and asks it one question with `kubectl metricpipe peek` through
the stack's edge (archive_step.py). Last, it runs the committed Grafana dashboard's panel and
annotation queries on both of the stack's Prometheus servers, fails if a panel has no series for
a demo pipeline, and draws the panels from those answers into demo.png (dashboard_step.py).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import requests
from kubernetes import config

from metricpipe_contract.durations import parse_duration
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.node import Kubelet
from metricpipe_devstack.settings import StackSettings
from metricpipe_devstack.stack import read_env_file

from .archive import LineTally, build_question_start, status_pattern, tally_lines
from .archive_step import DemoArchive
from .burst import BurstSizer, BurstSizing
from .cluster import Cluster, run_kubectl
from .dashboard_step import run_dashboard_step
from .generator import SyntheticSettings, describe_synthetic
from .pipelines import (
    CREDENTIALS_SECRET,
    EXAMPLES,
    build_demo_pipeline,
    describe_scaling,
    load_example,
)
from .replay import ReplayStats, Topics, replay
from .report import Sample, build_sample, build_summary, describe_final
from .schedule import HTTP, RTT, BurstDial, Emission, PlanSettings, iter_demo_plan
from .settings import DemoSettings
from .sources import load_demo_sources

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests" / "overlays" / "local"
EXAMPLES_DIR = REPO / "manifests" / "examples"
SYSTEM_NAMESPACE = "metricpipe-system"
SYSTEM_DEPLOYMENTS = ("metricpipe-operator", "metricpipe-exporter")
CRD_NAME = "metricpipelines.metricpipe.io"
REDIS_EXPORTER_SECRET = "metricpipe-redis-exporter"  # noqa: S105 - a name; overlays/local reads it


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say(f"\n== {text}")


class Demo:
    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self.stack_settings = StackSettings()
        entries = read_env_file(self.stack_settings)
        self.env = StackEnv.from_entries(entries, self.stack_settings.versions["KUBE_VERSION"])
        self.dir = self.stack_settings.stack_dir / "demo"
        self.run_dir, self.logs = self.dir / "run", self.dir / "logs"
        self.cluster = Cluster(config.new_client_from_config(str(self.env.kubeconfig)),
                               settings.namespace)  # fmt: skip
        self.started = time.time()
        self.samples: list[Sample] = []
        self.archive = DemoArchive(self.cluster, self.env, settings, examples=EXAMPLES_DIR,
                                   run_dir=self.run_dir, say=say)  # fmt: skip

    # -- set-up ----------------------------------------------------------------------------
    def wait_node(self) -> None:
        """The stack's kubelet registers its Node at stack-up; pods need it Ready (the stack's
        own health check, which names the kubelet's log when it fails)."""
        kubelet = Kubelet(self.stack_settings)
        probe = kubelet.wait_healthy()
        say(f"   {probe.detail} (kubelet + containerd + runc; log {kubelet.log_path})")

    def install(self, timeout: float = 300) -> None:
        """What a user does on a cluster: `kubectl apply -k` of the local overlay, then wait
        for the operator and the exporter to be available."""
        if self.env.redis is not None:  # the exporter pod's log-cache user (the overlay's ref)
            password = self.env.redis.password("exporter")
            self.cluster.put_secret(SYSTEM_NAMESPACE, REDIS_EXPORTER_SECRET, {"password": password})
            say(f"   Secret {SYSTEM_NAMESPACE}/{REDIS_EXPORTER_SECRET}: the exporter's Redis user")
        say(f"   $ kubectl apply --server-side -k {MANIFESTS.relative_to(REPO)}")
        for line in run_kubectl(self.env.kubectl, self.env.kubeconfig, "apply", "--server-side",
                                "--force-conflicts", "-k", str(MANIFESTS)):  # fmt: skip
            say(f"   {line}")
        self.cluster.wait_crd_established(CRD_NAME)
        deadline = time.monotonic() + timeout
        while True:
            available = {name: self.cluster.available_replicas(SYSTEM_NAMESPACE, name)
                         for name in SYSTEM_DEPLOYMENTS}  # fmt: skip
            if all(available.values()):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{SYSTEM_DEPLOYMENTS} not available after {timeout:.0f} s: see "
                    f"'kubectl -n {SYSTEM_NAMESPACE} describe pods' and 'kubectl logs'"
                )
            say(f"   waiting for {SYSTEM_NAMESPACE}: available {available}")
            time.sleep(5)
        say(
            f"   operator and exporter available in {SYSTEM_NAMESPACE} (containers on the "
            f"stack's kubelet; their logs: kubectl -n {SYSTEM_NAMESPACE} logs deploy/<name>)"
        )

    def show_pods(self) -> None:
        """What runs where: every pod with its pod IP, and a consumer's log through the API
        server (the kubelet serves it)."""
        heading("the pods, as containers on the node")
        kubectl = (self.env.kubectl, self.env.kubeconfig)
        for line in run_kubectl(*kubectl, "get", "pods", "-A", "-o", "wide"):
            say(f"   {line}")
        consumer = f"deploy/{EXAMPLES[0]}-consumer"
        say(f"   $ kubectl -n {self.settings.namespace} logs {consumer} --tail=3")
        for line in run_kubectl(*kubectl, "-n", self.settings.namespace, "logs", consumer,
                                "--tail=3"):  # fmt: skip
            say(f"   {line[:160]}")

    def apply_pipelines(self) -> dict[str, float]:
        examples = EXAMPLES_DIR
        targets = {}
        self.cluster.ensure_namespace()
        self.cluster.ensure_secret(CREDENTIALS_SECRET, {"username": "demo", "password": "demo"})
        for name in EXAMPLES:
            body = build_demo_pipeline(load_example(examples, name), self.settings)
            spec = MetricPipelineSpec.model_validate(body["spec"])
            self.remove_earlier_results(spec, name)
            self.cluster.apply_pipeline(body)
            targets[name] = parse_duration(spec.freshness.target)
            what = spec.metric.value_field or "records"
            say(f"   applied {name}: {spec.metric.aggregation} of {what} per "
                f"{spec.metric.window} by {spec.metric.group_by} → {spec.sink.backend} "
                f"index {spec.index_name(self.settings.namespace, name)}")  # fmt: skip
        self.archive.apply()
        return targets

    def remove_earlier_results(self, spec: MetricPipelineSpec, name: str) -> None:
        """An earlier demo's windows would make the new run look stale from its first second
        (freshness = age of the newest final window); its indices go before the pipeline
        is applied (the stack keeps its data between runs)."""
        url = (self.env.elasticsearch_url if spec.sink.backend == "elasticsearch"
               else self.env.opensearch_url)  # fmt: skip
        index = spec.index_name(self.settings.namespace, name)
        for each in (index, f"{index}-state"):
            answer = requests.delete(f"{url}/{each}", timeout=30)
            if answer.status_code == 200:
                say(f"   removed index {each} of an earlier demo run")
            elif answer.status_code != 404:
                raise RuntimeError(
                    f"deleting {url}/{each}: HTTP {answer.status_code} {answer.text}"
                )

    def wait_ready(self, timeout: float = 600) -> dict[str, str]:
        """The pipelines' topics (and the archive's, under "archive") once their consumers and
        the archivers are ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pipelines = self.cluster.list_pipelines()
            topics = {p["metadata"]["name"]: (p.get("status") or {}).get("topic", {}).get("name")
                      for p in pipelines}  # fmt: skip
            ready = {name: self.cluster.ready_consumers(name) for name in topics}
            archive = self.archive.ready_topic()
            if len(topics) == len(EXAMPLES) and all(topics.values()) and all(ready.values()) \
                    and archive:  # fmt: skip
                return {**{k: str(v) for k, v in topics.items()}, "archive": archive}
            say(f"   waiting: topics {topics}, ready consumer pods {ready}, archive "
                f"{'ready' if archive else 'not ready'}")  # fmt: skip
            time.sleep(5)
        raise TimeoutError(
            f"pipelines not ready: see 'kubectl -n {self.settings.namespace} describe pods' and "
            f"'kubectl -n {self.settings.namespace} logs <pod>', and the logs in {self.logs}"
        )

    # -- the run -----------------------------------------------------------------------------
    def sample(self) -> list[Sample]:
        now = time.time() - self.started
        current = [build_sample(now, p) for p in self.cluster.list_pipelines()]
        self.samples.extend(current)
        return current

    def run(self) -> int:
        s = self.settings
        heading("metricpipe demo (development stack on this machine)")
        for line in describe_scaling(s):
            say(f"   {line}")
        heading("the node: the stack's kubelet runs the pods in containers (containerd + runc)")
        self.wait_node()
        heading("installing metricpipe: the operator (with its ResourceManager) and the exporter")
        self.install()
        heading(f"applying the pipelines and the log archive in namespace {s.namespace}")
        targets = self.apply_pipelines()
        topics = self.wait_ready()
        self.show_pods()
        heading("replaying the data")
        dials = {RTT: BurstDial(s.burst_factor)}  # the access log keeps the fixed factor
        demo_start = datetime.now(UTC)
        plan = self.build_plan(dials, demo_start)
        stats = ReplayStats()
        # the Apache lines into both topics of their tag: the pipeline's and the archive's
        routes: Topics = {RTT: topics["avg-rtt"],
                          HTTP: (topics["http-5xx-rate"], topics["archive"])}  # fmt: skip
        tally = LineTally(HTTP, status_pattern(s.peek_status),
                          build_question_start(demo_start.timestamp(), s))  # fmt: skip
        say(
            "   avg-rtt's burst is sized while it runs: about "
            f"{BurstSizing().overload:g}x what one replica is measured to carry (the "
            "ResourceManager's capacityPerReplica), so that it needs more than one on any machine"
        )
        producer = {"bootstrap.servers": self.env.kafka_bootstrap, "linger.ms": 20}
        replay_started = time.time()
        sizer = BurstSizer(s, replay_started, {"avg-rtt": dials[RTT]},
                           {"avg-rtt": topics["avg-rtt"]})  # fmt: skip
        thread = threading.Thread(
            target=replay, args=(producer, tally_lines(plan, tally)),
            kwargs={"topics": routes, "stats": stats}, daemon=True,
        )  # fmt: skip
        thread.start()
        seen_events: set[str] = set()
        drain_deadline: float | None = None
        while True:
            current = self.sample()
            source = {k: datetime.fromtimestamp(v, UTC).strftime("%m-%d %H:%M")
                      for k, v in stats.source_times.items()}  # fmt: skip
            say(
                f"\n[{time.time() - self.started:5.0f} s] replayed {stats.sent:,} records "
                f"(source time {source})"
            )
            say(f"   $ kubectl get metricpipelines -n {s.namespace} -o wide")
            table = ("get", "metricpipelines", "-n", s.namespace, "-o", "wide")
            for line in run_kubectl(self.env.kubectl, self.env.kubeconfig, *table):
                say(f"   {line}")
            say(f"   {self.archive.status_line()}")
            for line in sizer.update(current, stats, time.time()):
                say(f"   {line}")
            for _, _, event in self.cluster.scaling_events():
                if event not in seen_events:
                    seen_events.add(event)
                    say(f"   EVENT {event}")
            if not thread.is_alive():
                drain_deadline = drain_deadline or time.monotonic() + s.drain_timeout_seconds
                if all((c.lag or 0) == 0 for c in current) or time.monotonic() > drain_deadline:
                    break
            time.sleep(s.sample_seconds)
        replay_seconds = time.time() - replay_started
        archive_lines = self.show_archive(topics["archive"], stats, tally, replay_started)
        scaling = self.cluster.scaling_events()
        self.show_results(targets, stats, replay_seconds, [e for *_, e in scaling], archive_lines)
        # an Event of an earlier run (the namespace kept) is not this run's scaling
        return self.show_dashboard(stats, sorted({n for at, n, _ in scaling if at >= self.started}))

    def build_plan(self, dials: dict[str, BurstDial], demo_start: datetime) -> Iterator[Emission]:
        s = self.settings
        data_dir = self.env.data_dir
        rtt_start = datetime.fromisoformat(s.rtt_start).replace(tzinfo=UTC).timestamp()
        rtt, http = load_demo_sources(data_dir, s.hours, SyntheticSettings(), rtt_start)
        if rtt.synthetic or http.synthetic:
            say(f"   NOTE: {describe_synthetic(data_dir)}")
        say(f"   {rtt.origin}\n   {http.origin}")
        plan_settings = PlanSettings(s.speed, s.hours, s.burst_start_hours, s.burst_hours,
                                     s.burst_factor)  # fmt: skip
        return iter_demo_plan(rtt, http, demo_start=demo_start, settings=plan_settings,
                              dials=dials)  # fmt: skip

    def show_archive(self, topic: str, stats: ReplayStats, tally: LineTally,
                     replay_started: float) -> list[str]:  # fmt: skip
        """The archive against the lines the replay produced to its topic, and the peek."""
        heading(f"the archive: {self.archive.directory} on HDFS, and a developer's question")
        started = time.monotonic()
        sent = sum(stats.sent_per_second.get(topic, {}).values())
        lines = self.archive.show(topic, sent, tally, datetime.fromtimestamp(replay_started, UTC))
        return [*lines, f"archive check and peek: {time.monotonic() - started:.0f} s"]

    def show_results(self, targets: dict[str, float], stats: ReplayStats, seconds: float,
                     events: list[str], archive_lines: list[str]) -> None:  # fmt: skip
        heading("where the metrics are")
        for name in EXAMPLES:
            pipeline = next(
                p for p in self.cluster.list_pipelines() if p["metadata"]["name"] == name
            )
            spec = MetricPipelineSpec.model_validate(pipeline["spec"])
            url = (self.env.elasticsearch_url if spec.sink.backend == "elasticsearch"
                   else self.env.opensearch_url)  # fmt: skip
            index = spec.index_name(self.settings.namespace, name)
            query = {"size": 3, "query": {"term": {"final": True}},
                     "sort": [{"window_start": "desc"}]}  # fmt: skip
            say(
                f"   curl -s {url}/{index}/_search -H 'Content-Type: application/json' "
                f"-d '{json.dumps(query)}'"
            )
            try:
                answer = requests.post(f"{url}/{index}/_search", json=query, timeout=10).json()
                hits = answer.get("hits", {}).get("hits", [])
                total = answer.get("hits", {}).get("total", {}).get("value")
                say(f"   → {total} final windows" + ("; newest:" if hits else ""))
                for hit in hits:
                    say(f"     {describe_final(hit['_source'])}")
            except (requests.RequestException, ValueError) as error:
                say(f"   (query failed: {error})")
        heading("summary")
        lines = build_summary(self.samples, targets, events, stats.sent, seconds)
        lines += archive_lines
        (self.dir / "summary.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            say(f"   {line}")
        say(f"\n   summary: {self.dir / 'summary.txt'}")

    def show_dashboard(self, stats: ReplayStats, scaled: list[str]) -> int:
        """The Grafana dashboard's queries on both Prometheus servers and the plot drawn from
        them (dashboard_step.py); 1 if a panel shows nothing for a demo pipeline."""
        heading("the Grafana dashboard's panels on live data (Prometheus 2 and 3)")
        plot = self.dir / "demo.png"
        failures = run_dashboard_step(
            self.env, namespace=self.settings.namespace, names=EXAMPLES, started=self.started,
            burst=stats.burst_sent, scaled=scaled, plot=plot, say=say,
        )  # fmt: skip
        say(
            f"\n   plot of the dashboard's panels: {plot}\n"
            f"   the pipelines and the archive keep running; `make demo-down` stops everything"
        )
        if not failures:
            return 0
        say("\nFAILED: the dashboard does not show every demo pipeline:")
        for failure in failures:
            say(f"   {failure}")
        say(
            "   a panel's series come from the consumers' and the exporter's metrics as "
            "Prometheus scrapes them and from its recording rules: see "
            "`curl -s $PROMETHEUS_URL/api/v1/targets` and `.../api/v1/rules` (and PROMETHEUS3_URL)"
        )
        return 1

    # -- clean-up ----------------------------------------------------------------------------
    def down(self, timeout: float = 120) -> int:
        """Pipelines first (their finalizers need the operator), then metricpipe itself; the
        kubelet stops the pods' containers as their objects go."""
        deleted = self.cluster.delete_namespace()
        say(f"namespace {self.settings.namespace}: {'deleting' if deleted else 'absent'}")
        deadline = time.monotonic() + timeout
        while deleted and self.cluster.namespace_exists(self.settings.namespace):
            if time.monotonic() > deadline:
                say(f"   {self.settings.namespace} still terminating after {timeout:.0f} s")
                break
            time.sleep(2)
        self.archive.down()
        try:
            for line in run_kubectl(self.env.kubectl, self.env.kubeconfig, "delete", "-k",
                                    str(MANIFESTS), "--ignore-not-found", "--wait=true",
                                    "--timeout=120s"):  # fmt: skip
                say(f"   {line}")
        except RuntimeError as error:
            say(f"   {error}")
        return 0


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    command = args[0] if args else "up"
    if command not in ("up", "down"):
        print("usage: python -m metricpipe_demo [up|down]", file=sys.stderr)
        return 2
    demo = Demo(DemoSettings())
    return demo.run() if command == "up" else demo.down()
