"""The Fluentd route of a Redis log cache: every record of a tag into one sorted set (pure).

One cache per (namespace, tag) (`metricpipe_contract.cache`), shared by every batch pipeline
of the namespace with `source.store: redis` over that tag: the first such pipeline makes the
route, later ones only add their owner reference to it, so a pipeline over an existing cache
makes no topic and no route. The route keeps every record of the tag (the pipelines' filters
are applied by their jobs), in two steps:

1. a `record_transformer` adds `metricpipe_uid`, a random UUID. The output stores each record
   as a sorted-set member (its JSON), so two identical log lines would otherwise be one member
   and count once. The UUID is set before Fluentd's buffer: a chunk that is retried carries
   the same UUIDs, and ZADD of the same member again changes nothing, so retries never add a
   record twice;
2. fluent-plugin-redis-store (`@type redis_store`, `store_type zset`): ZADD key <event time as
   a float> <record as JSON>, then ZREMRANGEBYSCORE key -inf (now - value_expire), in one
   pipeline per buffer chunk. A refused write (Redis at maxmemory with noeviction answers OOM)
   fails the chunk, which Fluentd retries (retry_forever; overflow_action block): nothing is
   dropped, the tag's input backs up in the buffer instead.

Two renderings of the same blocks: fluent-operator objects whose `customPlugin.config` holds
them, and a `fluent.conf` `<label>` fragment in a ConfigMap. The Redis password comes from the
Fluentd pod's environment (`METRICPIPE_REDIS_PASSWORD`, from a Secret), never from the objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metricpipe_contract.cache import UID_FIELD, build_cache_id, build_cache_key
from metricpipe_contract.version import RELEASE, VERSION_LABEL

from .route import FLUENTD_API, ROUTE_LABEL

CACHE_LABEL = "metricpipe.io/cache"
PASSWORD_ENV = "METRICPIPE_REDIS_PASSWORD"  # noqa: S105  # the variable's name, not a value
OWNER_ANNOTATION = "metricpipe.io/cache-of"


@dataclass(frozen=True)
class CacheRoute:
    """What one cache route needs: whose tag, where Redis is, how long records stay."""

    namespace: str
    tag: str
    host: str
    port: int
    retention_seconds: int

    @property
    def key(self) -> str:
        return build_cache_key(self.namespace, self.tag)

    @property
    def name(self) -> str:
        """Cluster objects and the ConfigMap: a tag may hold characters no name allows."""
        return f"mp-cache-{build_cache_id(self.namespace, self.tag)}"


def build_uid_filter(route: CacheRoute) -> str:
    return "\n".join([
        f"<filter {route.tag}>",
        "  @type record_transformer",
        "  enable_ruby true",
        "  <record>",
        f"    {UID_FIELD} ${{SecureRandom.uuid}}",
        "  </record>",
        "</filter>",
    ])  # fmt: skip


def build_store_match(route: CacheRoute) -> str:
    return "\n".join([
        f"<match {route.tag}>",
        "  @type redis_store",
        f"  host {route.host}",
        f"  port {route.port}",
        f"  password \"#{{ENV['{PASSWORD_ENV}']}}\"",
        "  store_type zset",
        f"  key {route.key}",
        f"  value_expire {route.retention_seconds}",
        "  <buffer>",
        "    @type file",
        f"    path /var/log/fluentd-buffers/{route.name}",
        "    flush_interval 1s",
        "    retry_forever true",
        "    retry_max_interval 30s",
        "    overflow_action block",
        "  </buffer>",
        "</match>",
    ])  # fmt: skip


def build_cache_fluent_conf(route: CacheRoute) -> str:
    label = f"@{route.name.upper().replace('-', '_')}"
    lines = [
        f"# metricpipe log cache of tag {route.tag} in namespace {route.namespace} "
        "(generated; do not edit)",
        f"# Route the source into this label, e.g. inside your <match {route.tag}> copy:",
        f"#   <store>\n#     @type relabel\n#     @label {label}\n#   </store>",
        f"<label {label}>",
    ]
    for block in (build_uid_filter(route), build_store_match(route)):
        lines += [f"  {line}" for line in block.splitlines()]
    lines.append("</label>")
    return "\n".join(lines) + "\n"


def build_cache_metadata(route: CacheRoute, owners: list[dict[str, Any]]) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/part-of": "metricpipe",
        "app.kubernetes.io/component": "cache-route",
        "app.kubernetes.io/managed-by": "metricpipe-operator",
        VERSION_LABEL: RELEASE,
        ROUTE_LABEL: route.name,
        CACHE_LABEL: build_cache_id(route.namespace, route.tag),
    }
    annotations = {OWNER_ANNOTATION: f"{route.namespace}/{route.tag}"}
    meta: dict[str, Any] = {"name": route.name, "labels": labels, "annotations": annotations}
    if owners:
        meta["ownerReferences"] = owners
    return meta


def build_cache_objects(route: CacheRoute, config_label: str) -> list[dict[str, Any]]:
    """fluent-operator's rendering: a ClusterFilter and a ClusterOutput holding the blocks as
    custom plugins, selected by a ClusterFluentdConfig of their own. Cluster-scoped objects
    cannot be owned by namespaced pipelines: the last pipeline's deletion removes them."""
    meta = build_cache_metadata(route, [])
    selector = {"matchLabels": {ROUTE_LABEL: route.name}}
    config_meta = {**meta, "labels": {**meta["labels"], config_label: "true"}}
    return [
        {"apiVersion": FLUENTD_API, "kind": "ClusterFilter", "metadata": meta,
         "spec": {"filters": [{"customPlugin": {"config": build_uid_filter(route)}}]}},
        {"apiVersion": FLUENTD_API, "kind": "ClusterOutput", "metadata": meta,
         "spec": {"outputs": [{"customPlugin": {"config": build_store_match(route)}}]}},
        {"apiVersion": FLUENTD_API, "kind": "ClusterFluentdConfig", "metadata": config_meta,
         "spec": {"clusterFilterSelector": selector, "clusterOutputSelector": selector}},
    ]  # fmt: skip


def build_cache_configmap(route: CacheRoute, owners: list[dict[str, Any]]) -> dict[str, Any]:
    """The `fluent.conf` rendering, in the namespace, owned by every pipeline over the cache
    (none as controller): the garbage collector removes it with the last of them."""
    meta = {**build_cache_metadata(route, owners), "namespace": route.namespace}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {"fluent.conf": build_cache_fluent_conf(route)}}  # fmt: skip
