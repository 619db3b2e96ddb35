"""Batch pipelines' Jobs as the e2e tests drive them: a Job from the operator's CronJob (what
`kubectl create job --from=cronjob/...` does, rather than waiting for the schedule), run by
the real Job controller on the stack's node; the pipeline as its pods see it; its progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from consumers import Pipeline
from helpers import wait_for
from metricpipe_consumers.sink import build_sink
from metricpipe_contract.model import MetricPipelineSpec


def create_job_from_cronjob(
    kube: client.ApiClient, namespace: str, cronjob: Any, name: str
) -> None:
    """A Job from the CronJob's template, as `kubectl create job --from` makes it."""
    template = client.ApiClient().sanitize_for_serialization(cronjob.spec.job_template)
    body = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": template["metadata"].get("labels", {}),
                     "annotations": {"cronjob.kubernetes.io/instantiate": "manual"}},
        "spec": template["spec"],
    }  # fmt: skip
    client.BatchV1Api(kube).create_namespaced_job(namespace, cast(Any, body))


def wait_job_finished(kube: client.ApiClient, namespace: str, name: str) -> Any:
    """The Job's status once the Job controller counts it succeeded, or failed for good."""
    batch = client.BatchV1Api(kube)

    def finished() -> Any:
        job = batch.read_namespaced_job_status(name, namespace)
        conditions = {c.type: c.status for c in job.status.conditions or []} if job.status else {}
        done = conditions.get("Complete") == "True" or conditions.get("Failed") == "True"
        return job.status if done else None

    return wait_for(finished, timeout=300, what=f"job {name} finished", interval=2)


def run_job_from_cronjob(kube: client.ApiClient, namespace: str, cronjob: Any, name: str) -> Any:
    """A Job from the CronJob's template; its status once it completed or failed."""
    create_job_from_cronjob(kube, namespace, cronjob, name)
    return wait_job_finished(kube, namespace, name)


def pipeline_from_configmap(
    kube: client.ApiClient, namespace: str, name: str, tmp_path: Path
) -> Pipeline:
    """The pipeline as its pods see it: pipeline.json from the operator's ConfigMap."""
    configmaps = client.CoreV1Api(kube).list_namespaced_config_map(namespace).items
    found = [c for c in configmaps if c.data and "pipeline.json" in c.data
             and json.loads(c.data["pipeline.json"])["pipeline"]["name"] == name]  # fmt: skip
    assert found, f"no pipeline.json for {name}"
    data = found[0].data
    assert data is not None
    document = json.loads(data["pipeline.json"])
    spec = MetricPipelineSpec.model_validate(document["spec"])
    sink = build_sink(document["sink"]["backend"], document["sink"]["endpoint"],
                      document["sink"]["index"], None, None)  # fmt: skip
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document))
    return Pipeline(name, spec, path, sink, document, applied=document["spec"])


def fetch_progress(pipeline: Pipeline) -> int:
    """The end of the last window the pipeline's runs finalized (0: none yet)."""
    pipeline.sink.ensure_indices()  # before the first run, nobody has created them yet
    pipeline.sink.refresh()
    found = pipeline.sink.search(pipeline.sink.state_index, {"term": {"kind": "pipeline"}}, 1)
    return int(found[0]["finalized_through_ms"]) if found else 0
