"""The Fluentd route that sends exactly the pipeline's logs to its topic (pure builders).

Two renderings of the same route:
- fluent-operator objects: a ClusterFilter (grep) and a ClusterOutput (kafka2), selected by a
  ClusterFluentdConfig of their own, so the filter applies only inside this pipeline's route;
- a plain `fluent.conf` fragment (a `<label>` block) in a ConfigMap, for clusters without
  fluent-operator.
Cluster-scoped objects cannot be owned by a namespaced pipeline: the delete handler removes them.
"""

from __future__ import annotations

import re
from typing import Any

from ..api.model import MetricPipelineSpec, RecordFilter
from .names import PipelineRef

FLUENTD_API = "fluentd.fluent.io/v1alpha1"
ROUTE_LABEL = "metricpipe.io/route"


def build_record_accessor(field: str) -> str:
    """Fluentd record_accessor syntax for a dotted field path."""
    return f"$.{field}" if "." in field else field


def build_grep_pattern(record_filter: RecordFilter) -> str:
    """A Ruby/RE2-compatible regex literal that selects what the filter selects."""
    if record_filter.exists:
        return "/.*/"  # fluentd's grep drops records in which the key is absent
    if record_filter.equals is not None:
        return f"/^{re.escape(record_filter.equals)}$/"
    return f"/{(record_filter.matches or '').replace('/', chr(92) + '/')}/"


def build_grep_rules(spec: MetricPipelineSpec) -> list[dict[str, str]]:
    return [
        {"key": build_record_accessor(f.field), "pattern": build_grep_pattern(f)}
        for f in spec.source.filters
    ]


def _meta(ref: PipelineRef, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": ref.cluster_route_name,
        "labels": {**ref.labels("route"), ROUTE_LABEL: ref.cluster_route_name, **(labels or {})},
        "annotations": {"metricpipe.io/owner": f"{ref.namespace}/{ref.name}"},
    }


def build_cluster_filter(ref: PipelineRef, spec: MetricPipelineSpec) -> dict[str, Any] | None:
    rules = build_grep_rules(spec)
    if not rules:
        return None
    return {
        "apiVersion": FLUENTD_API,
        "kind": "ClusterFilter",
        "metadata": _meta(ref),
        "spec": {"filters": [{"tag": spec.source.tag, "grep": {"regexp": rules}}]},
    }


def build_cluster_output(
    ref: PipelineRef, spec: MetricPipelineSpec, topic: str, bootstrap: str
) -> dict[str, Any]:
    return {
        "apiVersion": FLUENTD_API,
        "kind": "ClusterOutput",
        "metadata": _meta(ref),
        "spec": {
            "outputs": [
                {
                    "tag": spec.source.tag,
                    "kafka": {
                        "brokers": bootstrap,
                        "defaultTopic": topic,
                        "useEventTime": True,
                        "requiredAcks": -1,
                    },
                    "format": {"type": "json"},
                    "buffer": {"type": "file", "flushInterval": "1s"},
                }
            ]
        },
    }


def build_cluster_fluentd_config(ref: PipelineRef, config_label: str) -> dict[str, Any]:
    selector = {"matchLabels": {ROUTE_LABEL: ref.cluster_route_name}}
    return {
        "apiVersion": FLUENTD_API,
        "kind": "ClusterFluentdConfig",
        "metadata": _meta(ref, {config_label: "true"}),
        "spec": {"clusterFilterSelector": selector, "clusterOutputSelector": selector},
    }


def build_fluent_conf(
    ref: PipelineRef, spec: MetricPipelineSpec, topic: str, bootstrap: str
) -> str:
    label = f"@{ref.cluster_route_name.upper().replace('-', '_')}"
    lines = [
        f"# metricpipe route of {ref.namespace}/{ref.name} (generated; do not edit)",
        f"# Route the source into this label, e.g. inside your <match {spec.source.tag}> copy:",
        f"#   <store>\n#     @type relabel\n#     @label {label}\n#   </store>",
        f"<label {label}>",
    ]
    rules = build_grep_rules(spec)
    if rules:
        lines += [f"  <filter {spec.source.tag}>", "    @type grep"]
        for rule in rules:
            lines += ["    <regexp>", f"      key {rule['key']}"]
            lines += [f"      pattern {rule['pattern']}", "    </regexp>"]
        lines.append("  </filter>")
    lines += [
        f"  <match {spec.source.tag}>",
        "    @type kafka2",
        f"    brokers {bootstrap}",
        f"    default_topic {topic}",
        "    use_event_time true",
        "    required_acks -1",
        "    <format>",
        "      @type json",
        "    </format>",
        "    <buffer topic>",
        "      @type file",
        f"      path /var/log/fluentd-buffers/{ref.cluster_route_name}",
        "      flush_interval 1s",
        "    </buffer>",
        "  </match>",
        "</label>",
    ]
    return "\n".join(lines) + "\n"


def build_route_configmap(
    ref: PipelineRef, spec: MetricPipelineSpec, topic: str, bootstrap: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ref.owned_metadata(ref.route_configmap_name, "route"),
        "data": {"fluent.conf": build_fluent_conf(ref, spec, topic, bootstrap)},
    }
