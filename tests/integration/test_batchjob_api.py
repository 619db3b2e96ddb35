"""The batch-mode CronJob, as built, is accepted by the real API server (server-side dry run:
the batch/v1 schema, the schedule and time zone, the pod spec)."""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.batchjob import build_cronjob


def test_the_api_server_accepts_the_cronjob(kube: client.ApiClient, namespace: str) -> None:
    spec = MetricPipelineSpec.model_validate({
        "mode": "batch", "source": {"tag": "web.**"},
        "metric": {"aggregation": "count", "window": "15m", "allowedLateness": "2m"},
    })  # fmt: skip
    body = build_cronjob(PipelineRef(namespace, "web", "uid-1", 1), spec, OperatorConfig(), "h", 2)
    made = client.BatchV1Api(kube).create_namespaced_cron_job(
        namespace, cast(Any, body), dry_run="All"
    )
    assert made.spec.schedule == "2,17,32,47 * * * *"
    assert made.spec.concurrency_policy == "Forbid"
    job = made.spec.job_template.spec
    assert job is not None
    assert job.template.spec is not None
    assert job.template.spec.containers[0].args == ["batch"]
