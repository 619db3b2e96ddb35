"""Batch mode end to end on the real stack: the operator's CronJob → Jobs (triggered by the
test, as `kubectl create job --from=cronjob/...` does, rather than waiting for the hour) → the
real Job controller and scheduler → the stack's kubelet (a container per pod, containerd and
runc) → `python -m metricpipe_consumers batch` → Spark's Kafka batch source → Elasticsearch.

The topic holds the real Apache log with its original timestamps; the runs make up every
window since the topic's oldest record, at most 24 per run, and the final documents equal the
reference implementation."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from batch_jobs import fetch_progress, pipeline_from_configmap, run_job_from_cronjob
from consumers import (
    assert_matches_reference,
    create_topics,
    produce,
    read_topic,
    with_kafka_times,
)
from helpers import wait_for
from metricpipe_devstack.env import StackEnv
from node_harness import Node
from pipelines import condition, condition_is, create_pipeline, get_pipeline, patch_spec
from shared_data import access_log_lines

WINDOWS_PER_RUN = 24  # METRICPIPE_BATCH_MAX_WINDOWS's default
LATENESS_MS = 10 * 60_000  # the spec's allowedLateness
SKEW_MS = 5 * 60_000  # METRICPIPE_MAX_FUTURE_SKEW_MS's default: runs read that far back
HOUR_MS = 3_600_000


def test_jobs_from_the_cronjob_compute_every_window(
    stack: StackEnv, kube: client.ApiClient, namespace: str, unique_name: str,
    start_operator: Any, node: Node, tmp_path: Path,
) -> None:  # fmt: skip
    stamped = with_kafka_times(access_log_lines(stack.data_dir))
    topic = f"e2e-{unique_name}"
    create_topics(stack, topic, 3, keep_forever=True)
    produce(stack, topic, stamped)
    # the runs read Kafka with the Spark connector the consumer image carries; the
    # ResourceManager records the runs and sizes the next ones
    start_operator(
        namespace,
        METRICPIPE_PROMETHEUS_URL=stack.prometheus_url,
        METRICPIPE_SCALING_NAMESPACE=namespace,
        METRICPIPE_SCALING_INTERVAL_SECONDS="2",
        METRICPIPE_ADOPT_TOPICS=re.escape(topic) + r"(\.dlq)?",
    )  # created above
    spec = {
        "mode": "batch",
        "source": {"tag": "web", "format": "apache_combined"},
        # records of 2015 with their own timestamps: a retention long enough to keep them
        "topic": {"name": topic, "partitions": 3, "retention": "200000h"},
        "metric": {"aggregation": "count", "eventTime": {"field": "time", "format": "clf"},
                   "window": "1h", "allowedLateness": "10m", "groupBy": ["status"]},
        "replicas": 1,
    }  # fmt: skip
    create_pipeline(kube, namespace, "hourly", spec)
    wait_for(lambda: condition_is(kube, namespace, "hourly", "ConsumerReady", "True",
                                  reason="Scheduled"), timeout=60, what="the CronJob")  # fmt: skip
    pipeline = pipeline_from_configmap(kube, namespace, "hourly", tmp_path)
    reference = pipeline.expected(read_topic(stack, topic))
    windows = sorted({start for start, _ in reference.windows})
    runs, started = 0, time.monotonic()

    def progress() -> int:
        return fetch_progress(pipeline)

    parallelism: dict[str, int] = {}  # Job -> the CronJob's parallelism when it was created
    while progress() <= windows[-1] and runs < 5:
        # the current template, as the CronJob controller would use (the sizing may change it)
        cronjob = client.BatchV1Api(kube).read_namespaced_cron_job("hourly-consumer", namespace)
        job = cronjob.spec.job_template.spec if cronjob.spec else None
        assert job is not None
        assert job.template.spec is not None
        (container,) = job.template.spec.containers
        master = next(e.value for e in container.env or [] if e.name == "METRICPIPE_SPARK_MASTER")
        assert master is not None
        parallelism[f"hourly-manual-{runs}"] = int(master.removeprefix("local[").rstrip("]"))
        status = run_job_from_cronjob(kube, namespace, cronjob, f"hourly-manual-{runs}")
        assert status.succeeded == 1, f"run {runs} failed: {status}\n{node.log()[-3000:]}"
        runs += 1
    print(f"{len(windows)} windows with data computed by {runs} Jobs in "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    # each run computes 24 closed windows (empty ones too: real time is years later), the
    # first from the window of the oldest Kafka time less the lateness (docs/batch.md)
    first = (min(t for _, _, t in stamped) - LATENESS_MS) // HOUR_MS * HOUR_MS
    assert progress() == first + runs * WINDOWS_PER_RUN * HOUR_MS > windows[-1]
    assert runs == -(-(len(range(first, windows[-1] + 1, HOUR_MS))) // WINDOWS_PER_RUN)
    assert assert_matches_reference(pipeline, reference, windows[-1] + HOUR_MS) == len(
        reference.windows
    )

    assert_runs_recorded_and_sized(kube, namespace, stamped, parallelism)


def assert_runs_recorded_and_sized(
    kube: client.ApiClient, namespace: str, stamped: list[tuple[None, bytes, int]],
    parallelism: dict[str, int],
) -> None:  # fmt: skip
    """The ResourceManager recorded every run from its Job and its report (records: exactly
    those with Kafka time in each window's [start - future skew, end + lateness)), planned the
    next one and,
    once the budget cannot hold a run, says so in a condition and a Warning Event."""

    def recorded() -> list[dict[str, Any]]:
        runs = (get_pipeline(kube, namespace, "hourly").get("status") or {}).get("batch") or {}
        found = runs.get("runs") or []
        return found if len(found) == len(parallelism) else []

    records = wait_for(recorded, timeout=60, what="every run recorded in status.batch.runs")
    times = [kafka_ms for _, _, kafka_ms in stamped]
    for record in records:
        first, windows = int(record["windowStartMs"]), int(record["windows"])
        expected = sum(
            sum(start - SKEW_MS <= t < start + HOUR_MS + LATENESS_MS for t in times)
            for start in range(first, first + windows * HOUR_MS, HOUR_MS)
        )
        assert record["records"] == expected, record
        assert windows == WINDOWS_PER_RUN or record is records[-1], record
        assert 0 < record["workSeconds"] <= record["seconds"], record
        assert record["parallelism"] == parallelism[record["job"]], record
    assert sorted(r["job"] for r in records) == sorted(parallelism)

    def planned_and_applied() -> dict[str, Any] | None:
        """The pipeline once the plan's parallelism is its spec and the reconciler applied it
        (status.desiredReplicas is the reconciler's, written after the /scale)."""
        found = get_pipeline(kube, namespace, "hourly")
        status = found.get("status") or {}
        parallelism = (status.get("batch") or {}).get("plan", {}).get("parallelism")
        wanted = (parallelism, parallelism)
        return (
            found if (status.get("desiredReplicas"), found["spec"]["replicas"]) == wanted else None
        )

    pipeline = wait_for(planned_and_applied, 30, "the plan's parallelism applied")
    plan = pipeline["status"]["batch"]["plan"]
    assert plan["fits"] is True, plan  # a few thousand records an hour, a 1 h target
    assert condition(pipeline, "BatchBudgetMet")["status"] == "True"

    # A target just above the lateness leaves no time for a run's measured start-up.
    patch_spec(kube, namespace, "hourly", {"freshness": {"target": "10m1s"}})
    found = wait_for(
        lambda: condition_is(
            kube, namespace, "hourly", "BatchBudgetMet", "False", reason="NoBudget"
        ),
        timeout=60,
        what="the condition saying the runs cannot fit",
    )
    assert "start-up" in condition(found, "BatchBudgetMet")["message"]
    events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
    warnings = [e for e in events if e.reason == "BatchBudgetExceeded"]
    assert len(warnings) == 1, [(e.reason, e.message) for e in events]
    assert warnings[0].type == "Warning"
    assert warnings[0].involved_object.name == "hourly"
    # ... and the runs get the most the pipeline allows meanwhile
    assert wait_for(lambda: get_pipeline(kube, namespace, "hourly")["spec"]["replicas"] == 6,
                    timeout=60, what="replicas raised to maxReplicas")  # fmt: skip
