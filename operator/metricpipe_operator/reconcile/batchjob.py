"""The CronJob of a `mode: batch` pipeline (pure builder; `reconcile_consumer` applies it).

One run per window end, offset by the allowed lateness (`scaling.batch.build_batch_schedule`).
The job's container is the consumer's (same image, configuration file, credentials and secure
context) with `batch` as its mode, no probes (a run ends by itself), and the parallelism the
ResourceManager planned as Spark's local threads and CPU request. Runs never overlap
(`Forbid`), a run that could not start within a window is counted as missed by the controller,
and the job itself catches up on every closed window not yet final in the sink, so a missed or
failed run is never a skipped window.
"""

from __future__ import annotations

from typing import Any

from metricpipe_contract.durations import parse_duration
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef

from ..config import OperatorConfig
from ..scaling.batch import build_batch_schedule
from .consumer import (
    DEV_NODE_TOLERATION,
    build_container,
    build_pod_security_context,
    build_pod_volumes,
)

HISTORY_LIMIT = 3  # finished Jobs kept of each kind, for `kubectl get jobs` and the sizing
BACKOFF_LIMIT = 2  # retries of a failed run before the Job fails (the next run catches up)


def build_batch_container(
    ref: PipelineRef, spec: MetricPipelineSpec, config: OperatorConfig, config_hash: str,
    parallelism: int,
) -> dict[str, Any]:  # fmt: skip
    container = build_container(ref, spec, config, config_hash)
    container["name"] = "job"
    container["args"] = ["batch"]
    for field in ("startupProbe", "readinessProbe", "livenessProbe", "ports"):  # serves nothing
        container.pop(field)
    env = [e for e in container["env"] if e["name"] != "METRICPIPE_SPARK_MASTER"]
    env.append({"name": "METRICPIPE_SPARK_MASTER", "value": f"local[{parallelism}]"})
    container["terminationMessagePolicy"] = "File"  # the run's report, read by the sizing
    if config.batch_spark_jars:
        env.append({"name": "METRICPIPE_SPARK_JARS", "value": config.batch_spark_jars})
    container["env"] = env
    container["resources"] = {
        **container["resources"],
        "requests": {**container["resources"]["requests"], "cpu": str(parallelism)},
    }
    return container


def build_cronjob(
    ref: PipelineRef, spec: MetricPipelineSpec, config: OperatorConfig, config_hash: str,
    parallelism: int,
) -> dict[str, Any]:  # fmt: skip
    window = spec.window_seconds()
    lateness = parse_duration(spec.metric.allowed_lateness)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": ref.owned_metadata(ref.consumer_name, "batch"),
        "spec": {
            "schedule": build_batch_schedule(window, lateness),
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": int(window),
            "successfulJobsHistoryLimit": HISTORY_LIMIT,
            "failedJobsHistoryLimit": HISTORY_LIMIT,
            "jobTemplate": {
                "metadata": {"labels": ref.labels("batch")},
                "spec": {
                    "backoffLimit": BACKOFF_LIMIT,
                    "activeDeadlineSeconds": int(window),  # a run never outlives its window
                    "template": {
                        "metadata": {
                            "labels": ref.labels("batch"),
                            "annotations": {"metricpipe.io/config-hash": config_hash},
                        },
                        "spec": {
                            "restartPolicy": "Never",
                            # SIGTERM does not interrupt a run: this is the time it gets to
                            # write what it computes; a window cut off later is an idempotent
                            # upsert the next run redoes
                            "terminationGracePeriodSeconds": (
                                config.consumer_termination_grace_seconds
                            ),
                            "automountServiceAccountToken": False,
                            "enableServiceLinks": False,
                            "securityContext": build_pod_security_context(),
                            "containers": [
                                build_batch_container(ref, spec, config, config_hash, parallelism)
                            ],
                            "tolerations": [DEV_NODE_TOLERATION],
                            "volumes": build_pod_volumes(ref, spec, config),
                        },
                    },
                },
            },
        },
    }
