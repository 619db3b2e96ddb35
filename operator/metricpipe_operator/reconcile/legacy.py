"""Objects under names of earlier metricpipe versions, removed on sight (I/O)."""

from __future__ import annotations

from metricpipe_contract.refs import PipelineRef

from .kubeapply import KubeApplier
from .repair import OWNER_ANNOTATION
from .route import FLUENTD_API

ROUTE_KINDS = ("ClusterFluentdConfig", "ClusterOutput", "ClusterFilter")


def remove_legacy_route(kube: KubeApplier, ref: PipelineRef) -> list[tuple[str, str]]:
    """Cluster route objects named `mp-<namespace>-<name>` (before the `mp-<namespace>.<name>`
    scheme; team/a-x and team-a/x shared it), deleted when their owner annotation names this
    pipeline: left in place they would send the same logs to the topic a second time."""
    changes: list[tuple[str, str]] = []
    if not kube.has_kind(FLUENTD_API, "ClusterOutput"):
        return changes
    legacy = ref.legacy_cluster_route_name
    for kind in ROUTE_KINDS:
        found = kube.fetch(FLUENTD_API, kind, legacy, None)
        if found is None:
            continue
        annotations = (found.to_dict().get("metadata") or {}).get("annotations") or {}
        if annotations.get(OWNER_ANNOTATION) == ref.key and kube.delete(FLUENTD_API, kind, legacy):
            changes.append((f"{kind}Deleted", f"deleted {kind} {legacy} (its former name)"))
    return changes
