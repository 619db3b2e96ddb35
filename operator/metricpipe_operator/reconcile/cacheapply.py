"""Apply the Redis log cache's route for a pipeline with `source.store: redis` (I/O shell).

The route belongs to the cache (namespace, tag), not to one pipeline (cache_route.py): the
first pipeline over the tag makes it, later ones add their owner reference to its ConfigMap and
change nothing else. Each pipeline applies the ConfigMap as a field manager of its own, which
owns its owner-reference entry only: pipelines created at the same moment keep both entries.
The ConfigMap is owned by every pipeline over the cache (none as controller), so the garbage
collector removes it with the last one; the cluster-scoped fluent-operator objects cannot have
namespaced owners, so the finalizer of the last pipeline over the cache deletes them.
"""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from metricpipe_contract.model import GROUP, PLURAL, VERSION, MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef

from ..config import OperatorConfig
from ..errors import KubernetesApiError
from .cache_route import CacheRoute, build_cache_configmap, build_cache_objects
from .kubeapply import FIELD_MANAGER, KubeApplier
from .route import FLUENTD_API
from .routeapply import (
    RouteResult,
    build_operator_missing,
    ensure_bodies,
    fluent_operator_present,
)
from .status import Condition

Change = tuple[str, str]


def build_cache_route(config: OperatorConfig, namespace: str, tag: str) -> CacheRoute:
    return CacheRoute(namespace, tag, config.redis_host, config.redis_port,
                      config.cache_retention_seconds)  # fmt: skip


def build_cache_manager(ref: PipelineRef) -> str:
    """The field manager a pipeline applies the shared ConfigMap as: each pipeline owns its own
    owner-reference entry (a list keyed by uid), so two pipelines applying at the same moment
    cannot drop each other's (one manager for all would keep only the last list applied)."""
    return f"{FIELD_MANAGER}/cache-{ref.uid}"


def apply_cache_route(
    kube: KubeApplier, config: OperatorConfig, ref: PipelineRef, spec: MetricPipelineSpec
) -> RouteResult:
    route = build_cache_route(config, ref.namespace, spec.source.tag)
    changes: list[Change] = []
    try:
        mine = {**ref.owner_reference(), "controller": False}
        change = kube.ensure(build_cache_configmap(route, [mine]), build_cache_manager(ref))
        changes += [change] if change else []
        with_operator = fluent_operator_present(kube, config)
        if with_operator:
            changes += ensure_bodies(kube, build_cache_objects(route, config.fluentd_config_label))
        elif config.route_mode == "fluent-operator":
            return build_operator_missing(changes)
    except KubernetesApiError as error:
        return RouteResult(Condition("RouteReady", False, "ApplyFailed", str(error)), changes,
                           transient=str(error))  # fmt: skip
    how = "fluent-operator objects and " if with_operator else ""
    applied = (f"tag {spec.source.tag} -> Redis log cache {route.key} (kept "
               f"{route.retention_seconds} s) via {how}ConfigMap {route.name}, shared by the "
               "namespace's redis-store pipelines over the tag")  # fmt: skip
    return RouteResult(Condition("RouteReady", True, "CacheRouteApplied", applied), changes)


def fetch_cache_users(kube: KubeApplier, namespace: str, tag: str) -> list[str]:
    """Names of the namespace's pipelines reading the cache of `tag`, not being deleted."""
    api = client.CustomObjectsApi(kube.dynamic.client)
    try:
        listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    except (ApiException, HTTPError) as error:
        what = f"HTTP {getattr(error, 'status', '')} {getattr(error, 'reason', '')}".strip()
        raise KubernetesApiError(f"listing MetricPipelines in {namespace}: {what}") from error
    return [
        item["metadata"]["name"]
        for item in (listed.get("items") or [] if isinstance(listed, dict) else [])
        if not item["metadata"].get("deletionTimestamp")
        and ((item.get("spec") or {}).get("source") or {}).get("store") == "redis"
        and item["spec"]["source"].get("tag") == tag
    ]


def remove_cache_route(
    kube: KubeApplier, config: OperatorConfig, ref: PipelineRef, spec: MetricPipelineSpec
) -> list[Change]:
    """On a pipeline's deletion: the cache's cluster objects go with the last pipeline over it
    (the ConfigMap goes by garbage collection)."""
    others = [n for n in fetch_cache_users(kube, ref.namespace, spec.source.tag) if n != ref.name]
    route = build_cache_route(config, ref.namespace, spec.source.tag)
    if others:
        return [("CacheRouteKept", f"the log cache of {spec.source.tag} stays: "
                                   f"{', '.join(sorted(others))} read it")]  # fmt: skip
    changes: list[Change] = []
    for kind in ("ClusterFluentdConfig", "ClusterOutput", "ClusterFilter"):
        if kube.delete(FLUENTD_API, kind, route.name):
            changes.append((f"{kind}Deleted", f"deleted {kind} {route.name}"))
    return changes
