"""What to watch: MetricPipeline and LogArchive objects (from the cluster or a file) → targets.

A LogArchive's target is its archiver group on its archive topic: the same lag reads, exported
under the archive series (names.ARCHIVE_*), with no sink to probe (the archiver commits its
Kafka offset after each batch is on HDFS, so the group's position is what HDFS holds)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from metricpipe_contract.archive_model import KIND as ARCHIVE_KIND
from metricpipe_contract.archive_model import PLURAL as ARCHIVE_PLURAL
from metricpipe_contract.archive_model import LogArchiveSpec
from metricpipe_contract.archive_refs import ArchiveRef
from metricpipe_contract.durations import parse_duration
from metricpipe_contract.model import GROUP, PLURAL, VERSION, MetricPipelineSpec
from metricpipe_contract.naming import build_archive_topic
from metricpipe_contract.refs import PipelineRef

from .config import ExporterConfig

HTTP_NOT_FOUND = 404


@dataclass(frozen=True)
class PipelineTarget:
    pipeline: str  # <namespace>/<name>, the label every series carries
    consumer_group: str
    topic: str
    backend: str
    endpoint: str
    index: str
    freshness_target_seconds: float
    replicas: int | None = None  # status.replicas: consumer replicas that exist
    desired_replicas: int | None = None  # status.desiredReplicas: what the operator wants
    kind: Literal["pipeline", "archive"] = "pipeline"

    @property
    def key(self) -> str:
        """Unique among all targets (a pipeline and an archive may share a name)."""
        return self.pipeline if self.kind == "pipeline" else f"archive:{self.pipeline}"


def build_archive_target(obj: dict[str, Any]) -> PipelineTarget:
    """A LogArchive's archiver group (`pipeline` holds the archive's <namespace>/<name>)."""
    meta = obj["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    spec = LogArchiveSpec.model_validate(obj.get("spec") or {})
    ref = ArchiveRef(namespace=namespace, name=name, uid=meta.get("uid", ""))
    status = obj.get("status") or {}
    return PipelineTarget(
        pipeline=f"{namespace}/{name}", consumer_group=ref.consumer_group,
        topic=build_archive_topic(namespace, name), backend="",
        endpoint="", index="", freshness_target_seconds=parse_duration(spec.freshness.target),
        replicas=_status_int(status, "replicas"),
        desired_replicas=_status_int(status, "desiredReplicas"), kind="archive",
    )  # fmt: skip


def build_target(obj: dict[str, Any], config: ExporterConfig) -> PipelineTarget:
    meta = obj["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    spec = MetricPipelineSpec.model_validate(obj.get("spec") or {})
    status = obj.get("status") or {}
    default = (
        config.elasticsearch_url if spec.sink.backend == "elasticsearch" else config.opensearch_url
    )
    return PipelineTarget(
        pipeline=f"{namespace}/{name}",
        consumer_group=PipelineRef(namespace, name, meta.get("uid", "")).consumer_group,
        topic=spec.topic_name(namespace, name),
        backend=spec.sink.backend,
        endpoint=spec.sink.endpoint or default,
        index=spec.index_name(namespace, name),
        freshness_target_seconds=parse_duration(spec.freshness.target),
        replicas=_status_int(status, "replicas"),
        desired_replicas=_status_int(status, "desiredReplicas"),
    )


def _status_int(status: dict[str, Any], key: str) -> int | None:
    """An integer status field, or None when the operator has not written it (yet)."""
    value = status.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def build_targets(
    objects: Iterable[dict[str, Any]], config: ExporterConfig
) -> list[PipelineTarget]:
    built = (build_archive_target(o) if o.get("kind") == ARCHIVE_KIND else build_target(o, config)
             for o in objects)  # fmt: skip
    return sorted(built, key=lambda t: t.key)


def fetch_pipeline_objects(config: ExporterConfig, api: Any | None) -> list[dict[str, Any]]:
    """From the pipelines file when configured (MetricPipelines and LogArchives by their
    kind), else the cluster (a CustomObjectsApi): both kinds."""
    if config.exporter_pipelines_file is not None:
        return read_pipelines_file(config.exporter_pipelines_file)
    if api is None:
        raise ValueError(
            "no pipelines file and no Kubernetes API: set METRICPIPE_EXPORTER_PIPELINES_FILE"
        )
    objects: list[dict[str, Any]] = []
    for plural, kind in ((PLURAL, "MetricPipeline"), (ARCHIVE_PLURAL, ARCHIVE_KIND)):
        try:
            if config.exporter_namespace:
                listed = api.list_namespaced_custom_object(
                    GROUP, VERSION, config.exporter_namespace, plural
                )
            else:
                listed = api.list_cluster_custom_object(GROUP, VERSION, plural)
        except Exception as error:  # a cluster without the LogArchive CRD: no archives
            if kind != ARCHIVE_KIND or getattr(error, "status", None) != HTTP_NOT_FOUND:
                raise
            continue
        objects += [{**item, "kind": kind} for item in listed.get("items", [])]
    return objects


def read_pipelines_file(path: Path) -> list[dict[str, Any]]:
    loaded = yaml.safe_load(path.read_text()) or []
    items = loaded.get("items", []) if isinstance(loaded, dict) else loaded
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of MetricPipeline objects")
    return items
