"""Apply an owner's Fluentd route (I/O): the fluent.conf ConfigMap always, fluent-operator's
objects when its CRDs exist. Shared by MetricPipelines and LogArchives (route.py builds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metricpipe_contract.refs import PipelineRef

from ..config import OperatorConfig
from ..errors import KubernetesApiError
from .kubeapply import KubeApplier
from .legacy import remove_legacy_route
from .route import (
    FLUENTD_API,
    RoutedSpec,
    build_cluster_filter,
    build_cluster_fluentd_config,
    build_cluster_output,
    build_route_configmap,
)
from .status import Condition

Change = tuple[str, str]


@dataclass
class RouteResult:
    condition: Condition  # RouteReady
    changes: list[Change] = field(default_factory=list)
    transient: str | None = None  # retry later


def fluent_operator_present(kube: KubeApplier, config: OperatorConfig) -> bool:
    if config.route_mode == "configmap":
        return False
    return kube.has_kind(FLUENTD_API, "ClusterOutput")


def build_operator_missing(changes: list[Change]) -> RouteResult:
    message = "route_mode is fluent-operator but its CRDs (fluentd.fluent.io) are absent"
    failed = Condition("RouteReady", False, "FluentOperatorMissing", message)
    return RouteResult(failed, changes, transient=message)


def ensure_bodies(kube: KubeApplier, bodies: list[dict[str, Any]]) -> list[Change]:
    """Apply each object; the changes made (raises KubernetesApiError)."""
    return [change for body in bodies if (change := kube.ensure(body))]


def apply_route(
    kube: KubeApplier, config: OperatorConfig, ref: PipelineRef, spec: RoutedSpec, topic: str,
    *, legacy: bool,
) -> RouteResult:  # fmt: skip
    """Make the route of `spec.source` into `topic` exist. `legacy`: also remove the route
    objects under a former naming scheme (pipelines only)."""
    bootstrap = config.kafka_bootstrap
    changes: list[Change] = []
    try:
        objects = [build_route_configmap(ref, spec, topic, bootstrap)]
        with_operator = fluent_operator_present(kube, config)
        if with_operator:
            objects += [
                build_cluster_output(ref, spec, topic, bootstrap),
                build_cluster_fluentd_config(ref, config.fluentd_config_label),
            ]
            grep = build_cluster_filter(ref, spec)
            if grep is not None:
                objects.append(grep)
            elif kube.delete(FLUENTD_API, "ClusterFilter", ref.cluster_route_name):
                changes.append(("ClusterFilterDeleted", "removed the route's record filter"))
        elif config.route_mode == "fluent-operator":
            return build_operator_missing(changes)
        changes += ensure_bodies(kube, objects)
        if with_operator and legacy:
            changes += remove_legacy_route(kube, ref)
    except KubernetesApiError as error:
        failed = Condition("RouteReady", False, "ApplyFailed", str(error))
        return RouteResult(failed, changes, transient=str(error))
    how = (
        "fluent-operator ClusterOutput and fluent.conf ConfigMap"
        if with_operator
        else ("fluent.conf ConfigMap (fluent-operator not installed)")
    )
    applied = f"tag {spec.source.tag} -> {topic} via {how}"
    return RouteResult(Condition("RouteReady", True, "RouteApplied", applied), changes)
