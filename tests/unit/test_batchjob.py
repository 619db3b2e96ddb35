"""The batch-mode CronJob builder (pure). tests/integration/test_batchjob_api.py has the real
API server accept it."""

from __future__ import annotations

from typing import Any

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.batchjob import build_cronjob
from metricpipe_operator.reconcile.consumer import build_deployment

REF = PipelineRef("team-a", "http-5xx", "uid-1", 3)
CONFIG = OperatorConfig(kafka_bootstrap="kafka:9092")


def batch_spec(**metric: Any) -> MetricPipelineSpec:
    return MetricPipelineSpec.model_validate({
        "mode": "batch", "source": {"tag": "web.**"},
        "metric": {"aggregation": "count", "window": "1h", "allowedLateness": "5m", **metric},
        "sink": {"credentialsSecretRef": {"name": "es-creds"}},
    })  # fmt: skip


def test_one_run_per_window_end_after_the_lateness_never_overlapping() -> None:
    cronjob = build_cronjob(REF, batch_spec(), CONFIG, "h", parallelism=3)
    spec = cronjob["spec"]
    assert spec["schedule"] == "5 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == spec["failedJobsHistoryLimit"] == 3
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 3600
    assert cronjob["metadata"]["ownerReferences"][0]["kind"] == "MetricPipeline"


def test_the_job_runs_the_consumer_image_in_batch_mode_at_the_planned_parallelism() -> None:
    cronjob = build_cronjob(REF, batch_spec(), CONFIG, "h", parallelism=3)
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["batch"]
    assert container["image"] == CONFIG.consumer_image
    env = {e["name"]: e for e in container["env"]}
    assert env["METRICPIPE_SPARK_MASTER"]["value"] == "local[3]"
    assert [e["name"] for e in container["env"]].count("METRICPIPE_SPARK_MASTER") == 1
    assert container["resources"]["requests"]["cpu"] == "3"
    assert env["METRICPIPE_SINK_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "es-creds"
    assert "readinessProbe" not in container
    assert "livenessProbe" not in container
    assert "ports" not in container  # a run serves no metrics: nothing for Prometheus to find
    assert pod["restartPolicy"] == "Never"


def test_the_job_pod_is_as_locked_down_as_the_consumers() -> None:
    cronjob = build_cronjob(REF, batch_spec(), CONFIG, "h", parallelism=1)
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    stream_pod = build_deployment(REF, batch_spec(), CONFIG, "h", 1)["spec"]["template"]["spec"]
    assert pod["securityContext"] == stream_pod["securityContext"]
    assert pod["volumes"] == stream_pod["volumes"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_run_reports_through_its_termination_message() -> None:
    cronjob = build_cronjob(REF, batch_spec(), CONFIG, "h", parallelism=2)
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert env["METRICPIPE_TERMINATION_MESSAGE_PATH"] == container["terminationMessagePath"]
    assert container["terminationMessagePolicy"] == "File"  # never the log's tail instead
