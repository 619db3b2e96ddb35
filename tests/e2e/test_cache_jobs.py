"""Batch over the Redis log cache end to end on the real stack: the operator reconciles two
identical `source.store: redis` pipelines over one tag → the route ConfigMap it renders is
what the Fluentd stand-in writes the retimed Apache log with → Jobs from the operator's
CronJobs (as `kubectl create job --from=cronjob/...`) → the real Job controller, scheduler and
kubelet (a container of the consumer image per pod) → `python -m metricpipe_consumers batch`
reading Redis over the pod network as the user of the namespace's Secret → Elasticsearch.

`steady` runs undisturbed: every hour's final documents equal the oracle's. `killed`: its
first Job's container gets SIGKILL as soon as the pod's log shows its first `window computed`
line; the Job controller's retry resumes where the killed run's progress stopped, and every
final document equals steady's (but for when and by which pipeline it was computed), one per
window and group.

The CronJobs are suspended (as `kubectl patch cronjob --suspend` would): no scheduled run
starts in the middle of the test; Jobs made from a suspended CronJob run as any other.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from batch_jobs import (
    create_job_from_cronjob,
    fetch_progress,
    pipeline_from_configmap,
    run_job_from_cronjob,
    wait_job_finished,
)
from cache_data import CHANGING, HOUR_MS, cached_records, comparable, delete_cache_keys, hours_of
from cache_data import retime as retime_lines
from consumers import Pipeline, assert_matches_reference, sink_results
from helpers import wait_for
from metricpipe_contract.cache import build_cache_key
from metricpipe_demo.cache_writer import CacheWriter
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.redis import ROLE_USERS, RedisAccess
from node_harness import Node
from pipelines import condition_is, create_pipeline
from shared_data import access_log_lines

TAG = "edge.access"
RETENTION_SECONDS = 200 * 3600  # the replay spans 84 hours: the writer trims none of it
WINDOWS_PER_RUN = 24  # METRICPIPE_BATCH_MAX_WINDOWS's default
SPEC = {
    "mode": "batch",
    "source": {"tag": TAG, "format": "apache_combined", "store": "redis"},
    "metric": {"aggregation": "count", "eventTime": {"field": "time", "format": "clf"},
               "window": "1h", "allowedLateness": "10m", "groupBy": ["status"]},
    "replicas": 1,
}  # fmt: skip
# when it was computed, and for which pipeline (the documents' id names it)
IDENTITY = (*CHANGING, "pipeline", "_id")
SECRET = "metricpipe-redis"  # the operator's METRICPIPE_REDIS_SECRET default


@pytest.fixture
def redis_access(stack: StackEnv, namespace: str) -> Iterator[RedisAccess]:
    """The stack's Redis; the namespace's cache and dead letters deleted at the end."""
    if stack.redis is None:
        pytest.skip("the stack has no Redis (make stack-up)")
    yield stack.redis
    delete_cache_keys(stack, namespace)


def test_cache_jobs_compute_every_hour_and_a_killed_run_changes_nothing(
    stack: StackEnv, kube: client.ApiClient, namespace: str, redis_access: RedisAccess,
    start_operator: Any, node: Node, tmp_path: Path,
) -> None:  # fmt: skip
    began = time.monotonic()
    # the batch user's name and password, as an admin puts them into each namespace
    client.CoreV1Api(kube).create_namespaced_secret(namespace, client.V1Secret(
        metadata=client.V1ObjectMeta(name=SECRET),
        string_data={"username": ROLE_USERS["batch"], "password": redis_access.password("batch")},
    ))  # fmt: skip
    start_operator(
        namespace,
        METRICPIPE_REDIS_HOST=redis_access.pod_host,  # the pods' address of the stack's Redis
        METRICPIPE_REDIS_PORT=str(redis_access.port),
        METRICPIPE_CACHE_RETENTION_SECONDS=str(RETENTION_SECONDS),
    )
    for name in ("steady", "killed"):  # one after the other: see route_fluent_conf
        create_pipeline(kube, namespace, name, SPEC)
        suspend_cronjob(kube, namespace, name)
    assert_pods_get_the_secrets_user(kube, namespace)
    ready = time.monotonic()

    # the stand-in runs the route exactly as the operator rendered it into the namespace
    conf = route_fluent_conf(kube, namespace)
    assert f"host {redis_access.pod_host}\n" in conf
    assert redis_access.host == redis_access.pod_host  # so the host reaches it there too
    now_ms = int(time.time() * 1000)
    events = retime_lines(access_log_lines(stack.data_dir), now_ms // HOUR_MS * HOUR_MS - HOUR_MS)
    with CacheWriter(conf, redis_access.password_files["writer"]) as writer:
        writer.send_many((TAG, score, {"message": line}) for score, line in events)
        assert writer.close().records == len(events)
    records = cached_records(stack, build_cache_key(namespace, TAG))
    assert len(records) == len(events)
    written = time.monotonic()

    steady = pipeline_from_configmap(kube, namespace, "steady", tmp_path)
    reference = steady.expected(records, now_ms)
    windows = sorted({start for start, _ in reference.windows})
    assert set(windows) == hours_of(events), "the reference misses an hour"
    durations = run_until_finalized(kube, namespace, steady, windows[-1] + HOUR_MS, node)
    checked = assert_matches_reference(steady, reference, fetch_progress(steady))
    assert checked == len(reference.windows)
    computed = time.monotonic()
    print(f"steady: {len(events)} records in {len(windows)} hours, {checked} final documents "
          f"equal the oracle's, by {len(durations)} Jobs of "
          f"{', '.join(f'{s:.0f}' for s in durations)} s")  # fmt: skip

    killed = pipeline_from_configmap(kube, namespace, "killed", tmp_path)
    kill = kill_first_run_mid_way(kube, namespace, killed, node, redis_access)
    retried = time.monotonic()
    assert fetch_progress(killed) == kill.first_window + (kill.saved + WINDOWS_PER_RUN) * HOUR_MS
    later = run_until_finalized(kube, namespace, killed, fetch_progress(steady), node, first=1)
    finals, _ = sink_results(killed)  # asserts one final document per window and group
    steady_finals, _ = sink_results(steady)
    assert len(finals) == len(steady_finals) == checked
    assert comparable(finals, IDENTITY) == comparable(steady_finals, IDENTITY)
    print(f"killed: SIGKILL {kill.latency * 1000:.0f} ms after the first `window computed` "
          f"line: exit code {kill.exit_code}, {kill.reported} of {WINDOWS_PER_RUN} windows "
          f"reported, {kill.saved} saved; the retry computed the next {WINDOWS_PER_RUN}, done "
          f"{kill.retry_seconds:.0f} s after the kill; {len(later)} more Jobs; all "
          f"{len(finals)} final documents equal steady's")  # fmt: skip
    print(f"timings: operator and CronJobs {ready - began:.0f} s, write {written - ready:.1f} s, "
          f"steady's Jobs {computed - written:.0f} s, killed Job and its retry "
          f"{retried - computed:.0f} s, killed's other Jobs {sum(later):.0f} s, "
          f"total {time.monotonic() - began:.0f} s")  # fmt: skip


def suspend_cronjob(kube: client.ApiClient, namespace: str, name: str) -> None:
    """Once the operator made the pipeline's CronJob: suspended (the operator applies only
    the fields it owns, so it stays suspended)."""
    wait_for(lambda: condition_is(kube, namespace, name, "ConsumerReady", "True",
                                  reason="Scheduled"),
             timeout=60, what=f"{name}'s CronJob")  # fmt: skip
    client.BatchV1Api(kube).patch_namespaced_cron_job(
        f"{name}-consumer", namespace, {"spec": {"suspend": True}}
    )


def assert_pods_get_the_secrets_user(kube: client.ApiClient, namespace: str) -> None:
    """The runs' Redis user and password come from the Secret (references, never values)."""
    cronjob = client.BatchV1Api(kube).read_namespaced_cron_job("steady-consumer", namespace)
    spec = client.ApiClient().sanitize_for_serialization(cronjob.spec)
    (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for key in ("username", "password"):
        variable = env[f"METRICPIPE_REDIS_{key.upper()}"]
        reference = {"secretKeyRef": {"name": SECRET, "key": key}}
        assert variable == {"name": variable["name"], "valueFrom": reference}


def route_fluent_conf(kube: client.ApiClient, namespace: str) -> str:
    """fluent.conf of the cache route's ConfigMap (`mp-cache-<id>`), shared by both pipelines.

    Both are its owners when the second was created after the first's reconcile: created at
    once, each reconcile read the ConfigMap before the other applied its owner list, and the
    second apply (same field manager) left one owner only (seen here; the periodic repair
    re-adds the other)."""
    listed: Any = client.CoreV1Api(kube).list_namespaced_config_map(namespace)
    found = [c for c in listed.items if c.metadata.name.startswith("mp-cache-")]
    assert len(found) == 1, [c.metadata.name for c in found]
    assert {o.name for o in found[0].metadata.owner_references} == {"steady", "killed"}
    return str(found[0].data["fluent.conf"])


def run_until_finalized(
    kube: client.ApiClient, namespace: str, pipeline: Pipeline, through: int, node: Node,
    first: int = 0,
) -> list[float]:  # fmt: skip
    """Jobs from the pipeline's CronJob (named from `<name>-manual-<first>` on), one after
    another, until its progress reaches `through`; each one's seconds."""
    durations: list[float] = []
    while fetch_progress(pipeline) < through:
        assert len(durations) < 6, "more runs than the windows need"
        cronjob = client.BatchV1Api(kube).read_namespaced_cron_job(
            f"{pipeline.name}-consumer", namespace
        )
        started = time.monotonic()
        name = f"{pipeline.name}-manual-{first + len(durations)}"
        status = run_job_from_cronjob(kube, namespace, cronjob, name)
        assert status.succeeded == 1, f"{name} failed: {status}\n{node.log()[-3000:]}"
        durations.append(time.monotonic() - started)
    return durations


@dataclass(frozen=True)
class Kill:
    """What the kill hit and what followed."""

    first_window: int  # start of the run's first window
    reported: int  # `window computed` lines the killed run logged
    saved: int  # windows whose progress the killed run had saved
    exit_code: int
    latency: float  # seconds from seeing the first line to the SIGKILL
    retry_seconds: float  # from the kill to the Job's completion


def reported_windows(log: str) -> list[int]:
    """window_start_ms of each `window computed` line of a run's log (JSON lines)."""
    starts = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "window computed":
            starts.append(int(entry["window_start_ms"]))
    return starts


def kill_first_run_mid_way(
    kube: client.ApiClient, namespace: str, pipeline: Pipeline, node: Node, access: RedisAccess
) -> Kill:
    core = client.CoreV1Api(kube)
    cronjob = client.BatchV1Api(kube).read_namespaced_cron_job(
        f"{pipeline.name}-consumer", namespace
    )
    job = f"{pipeline.name}-manual-0"
    create_job_from_cronjob(kube, namespace, cronjob, job)
    selector = f"job-name={job}"

    def running_pod() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        return next((p for p in pods if p.status and p.status.phase == "Running"), None)

    pod = wait_for(running_pod, timeout=120, what=f"{job}'s pod running", interval=0.2)
    admin = access.connect("admin")
    name = pod.metadata.name

    def first_line() -> list[int]:
        return reported_windows(node.container_log(namespace, name, "job"))

    reported = wait_for(first_line, timeout=180, what="the first `window computed`", interval=0.1)
    seen = time.monotonic()
    # mid-run, the run's connection is open: over the pod network, as the Secret's user
    clients: list[dict[str, str]] = admin.client_list()  # type: ignore[assignment]
    os.kill(node.container_pid(namespace, name, "job"), signal.SIGKILL)  # the fault
    latency = time.monotonic() - seen
    assert any(c["user"] == ROLE_USERS["batch"] and c["addr"].startswith(f"{pod.status.pod_ip}:")
               for c in clients), clients  # fmt: skip

    def terminated() -> Any:
        found: Any = core.read_namespaced_pod(name, namespace)
        (container,) = found.status.container_statuses or [None]
        return container.state.terminated if container else None

    ended = wait_for(terminated, timeout=60, what=f"{name} terminated", interval=0.2)
    assert ended.exit_code == 137, ended  # 128 + SIGKILL: no shutdown, no last report
    log = node.container_log(namespace, name, "job")
    reported = reported_windows(log)
    assert 1 <= len(reported) < WINDOWS_PER_RUN, "the kill did not land mid-run"
    assert '"run finished"' not in log
    at_kill = fetch_progress(pipeline)
    assert reported[-1] + HOUR_MS <= at_kill < reported[0] + WINDOWS_PER_RUN * HOUR_MS

    retry_began = time.monotonic()
    status = wait_job_finished(kube, namespace, job)
    assert (status.succeeded, status.failed) == (1, 1), status  # the kill, then the retry
    listed: Any = core.list_namespaced_pod(namespace, label_selector=selector)
    (retry,) = [p.metadata.name for p in listed.items if p.metadata.name != name]  # one retry
    again = reported_windows(node.container_log(namespace, retry, "job"))
    assert again == list(range(at_kill, at_kill + WINDOWS_PER_RUN * HOUR_MS, HOUR_MS))
    return Kill(reported[0], len(reported), (at_kill - reported[0]) // HOUR_MS,
                ended.exit_code, latency, time.monotonic() - retry_began)  # fmt: skip
