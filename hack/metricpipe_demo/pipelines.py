"""The two demo pipelines: the examples in manifests/examples, scaled to the demo's clock (pure)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .settings import DemoSettings

EXAMPLES = ("avg-rtt", "http-5xx-rate")
CREDENTIALS_SECRET = "opensearch-credentials"  # noqa: S105 - a name; the example refers to it


def load_example(examples_dir: Path, name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((examples_dir / f"{name}.yaml").read_text())
    return document


def build_demo_pipeline(example: dict[str, Any], settings: DemoSettings) -> dict[str, Any]:
    """The example with its windows, lateness, freshness target and batching scaled to the
    demo's clock, and deleted with its topic when the demo is cleaned up."""
    pipeline = copy.deepcopy(example)
    spec = pipeline["spec"]
    spec["metric"].update(window=settings.window, allowedLateness=settings.allowed_lateness)
    spec["freshness"] = {"target": settings.freshness_target}
    spec.setdefault("topic", {})["deletionPolicy"] = "Delete"
    spec["scaling"] = {
        **spec.get("scaling", {}), "minReplicas": 1, "maxReplicas": settings.max_replicas,
        "scaleDownStabilization": "60s",
    }  # fmt: skip
    spec["consumer"] = {
        **spec.get("consumer", {}), "maxBatchRecords": settings.max_batch_records,
        "maxBatchWait": "1s",
    }  # fmt: skip
    pipeline["metadata"] = {"name": example["metadata"]["name"], "namespace": settings.namespace}
    return pipeline


def describe_scaling(settings: DemoSettings) -> list[str]:
    hour = 3600 / settings.speed
    return [
        f"data re-timed onto now at {settings.speed:g}x: one source hour = {hour:g} s here",
        f"windows {settings.window} (= 1 source hour), allowed lateness "
        f"{settings.allowed_lateness}, freshness target {settings.freshness_target}",
        f"consumers batch at most {settings.max_batch_records} records, so that one replica "
        "carries only ~100 records/s on this machine and a burst of real size needs more",
        f"burst: source hours {settings.burst_start_hours:g}..."
        f"{settings.burst_start_hours + settings.burst_hours:g}, each record sent at least "
        f"{settings.burst_factor}x (copies of real records); avg-rtt's factor is raised to "
        "1.6x what one replica is measured to carry",
    ]
