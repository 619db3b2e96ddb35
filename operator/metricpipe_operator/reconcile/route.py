"""The Fluentd route that sends exactly the pipeline's logs to its topic (pure builders).

Two renderings of the same route:
- fluent-operator objects: a ClusterFilter (parser, grep, record_transformer) and a
  ClusterOutput (kafka2), selected by a ClusterFluentdConfig of their own, so the filter
  applies only inside this pipeline's route;
- a plain `fluent.conf` fragment (a `<label>` block) in a ConfigMap, for clusters without
  fluent-operator.
Both come from one `RoutePlan`, which expresses `spec.source.filters` on the record Fluentd
really has: for `apache_combined` the raw line sits in `message` (or `log`), so the route first
parses it with the consumer's grammar (route_regex.APACHE_EXPRESSION) into `metricpipe_*`
fields, greps those, and removes them again before Kafka. The route may forward more than the
consumer counts, never less: the consumer applies the filters exactly (RE2) on what arrives.
Cluster-scoped objects cannot be owned by a namespaced pipeline: the delete handler removes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from metricpipe_contract.model import RecordFilter
from metricpipe_contract.refs import PipelineRef

from .repair import OWNER_ANNOTATION
from .route_regex import (
    APACHE_EXPRESSION,
    APACHE_FIELDS,
    APACHE_TYPES,
    FIELD_PREFIX,
    UntranslatableError,
    build_equals_regexp,
    translate_re2,
)

FLUENTD_API = "fluentd.fluent.io/v1alpha1"
ROUTE_LABEL = "metricpipe.io/route"
# Where a Fluentd record carries the raw line. Parsed in this order, so `message` (the
# consumer's first choice) wins when both parse; a key that is absent or does not parse leaves
# the record as it was (reserve_data), and a record with no parsed fields passes the grep.
LINE_KEYS = ("log", "message")
UNPARSED_PATTERN = "/\\A\\z/"  # grep reads an absent key as ""


class RoutedSource(Protocol):
    """What a route reads of its owner's source: a MetricPipeline's, or a LogArchive's (whose
    filters are always empty: every record of the tag is archived)."""

    @property
    def tag(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def filters(self) -> Sequence[RecordFilter]: ...


class RoutedSpec(Protocol):
    @property
    def source(self) -> RoutedSource: ...


@dataclass(frozen=True)
class GrepRule:
    """One filter as one grep step (Fluentd refuses two rules on one key in one grep)."""

    key: str  # record_accessor syntax
    pattern: str  # Fluentd's `/onigmo source/` form
    unparsed_key: str | None = None  # also pass records in which this key is absent or empty


@dataclass(frozen=True)
class LineParser:
    key_name: str
    expression: str  # `/onigmo source/` with named groups metricpipe_<field>
    types: str


@dataclass(frozen=True)
class RoutePlan:
    parsers: tuple[LineParser, ...]
    rules: tuple[GrepRule, ...]
    remove_keys: tuple[str, ...]
    consumer_only: tuple[str, ...]  # filters Fluentd does not apply, each with the reason


def build_record_accessor(field: str) -> str:
    """Fluentd record_accessor syntax for a dotted field path."""
    return f"$.{field}" if "." in field else field


def build_filter_regexp(record_filter: RecordFilter) -> str:
    """Onigmo source selecting what the filter selects (raises UntranslatableError)."""
    if record_filter.exists:
        # Fluentd's grep tests `value.to_s`: an absent field reads "" like a present empty one.
        raise UntranslatableError("Fluentd's grep cannot tell an absent field from an empty one")
    if record_filter.equals is not None:
        return build_equals_regexp(record_filter.equals)
    return translate_re2(record_filter.matches or "")


def build_route_plan(spec: RoutedSpec) -> RoutePlan:
    apache = spec.source.format == "apache_combined"
    rules: list[GrepRule] = []
    consumer_only: list[str] = []
    for record_filter in spec.source.filters:
        field = record_filter.field
        if apache and field not in APACHE_FIELDS:
            consumer_only.append(f"{field}: not a field of an Apache combined line")
            continue
        try:
            source = build_filter_regexp(record_filter)
        except UntranslatableError as error:
            consumer_only.append(f"{field}: {error}")
            continue
        if apache:
            # A line that did not parse has no metricpipe_* fields; host and status are never
            # empty in one that did. Unparsed lines pass, so the consumer dead-letters them as
            # malformed_line instead of their vanishing in Fluentd.
            marker = FIELD_PREFIX + ("status" if field == "host" else "host")
            rules.append(GrepRule(FIELD_PREFIX + field, f"/{source}/", marker))
        else:
            rules.append(GrepRule(build_record_accessor(field), f"/{source}/"))
    if not (apache and rules):
        return RoutePlan((), tuple(rules), (), tuple(consumer_only))
    parsers = tuple(LineParser(key, f"/{APACHE_EXPRESSION}/", APACHE_TYPES) for key in LINE_KEYS)
    removed = tuple(FIELD_PREFIX + name for name in APACHE_FIELDS)
    return RoutePlan(parsers, tuple(rules), removed, tuple(consumer_only))


def build_filter_steps(tag: str, plan: RoutePlan) -> list[dict[str, Any]]:
    """The plan as fluent-operator filter items, in the order Fluentd applies them."""
    if not plan.rules:
        return []
    steps: list[dict[str, Any]] = []
    for parser in plan.parsers:
        parse = {"type": "regexp", "expression": parser.expression, "types": parser.types}
        steps.append({"tag": tag, "parser": {
            "keyName": parser.key_name, "reserveData": True, "reserveTime": True,
            "emitInvalidRecordToError": False, "parse": parse,
        }})  # fmt: skip
    for rule in plan.rules:
        regexp = {"key": rule.key, "pattern": rule.pattern}
        if rule.unparsed_key is None:
            steps.append({"tag": tag, "grep": {"regexp": [regexp]}})
        else:
            unparsed = {"key": rule.unparsed_key, "pattern": UNPARSED_PATTERN}
            ors = [{"regexp": unparsed}, {"regexp": regexp}]
            steps.append({"tag": tag, "grep": {"or": ors}})
    if plan.remove_keys:
        remove = ",".join(plan.remove_keys)
        steps.append({"tag": tag, "recordTransformer": {"removeKeys": remove}})
    return steps


def _meta(ref: PipelineRef, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": ref.cluster_route_name,
        "labels": {**ref.labels("route"), ROUTE_LABEL: ref.cluster_route_name, **(labels or {})},
        "annotations": {OWNER_ANNOTATION: ref.key},
    }


def build_cluster_filter(ref: PipelineRef, spec: RoutedSpec) -> dict[str, Any] | None:
    steps = build_filter_steps(spec.source.tag, build_route_plan(spec))
    if not steps:
        return None
    return {
        "apiVersion": FLUENTD_API,
        "kind": "ClusterFilter",
        "metadata": _meta(ref),
        "spec": {"filters": steps},
    }


def build_cluster_output(
    ref: PipelineRef, spec: RoutedSpec, topic: str, bootstrap: str
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


def build_fluent_conf(ref: PipelineRef, spec: RoutedSpec, topic: str, bootstrap: str) -> str:
    label = f"@{ref.cluster_route_name.upper().replace('-', '_')}"
    lines = [
        f"# metricpipe route of {ref.namespace}/{ref.name} (generated; do not edit)",
        f"# Route the source into this label, e.g. inside your <match {spec.source.tag}> copy:",
        f"#   <store>\n#     @type relabel\n#     @label {label}\n#   </store>",
        f"<label {label}>",
    ]
    lines += build_filter_conf(spec.source.tag, build_route_plan(spec))
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


def build_filter_conf(tag: str, plan: RoutePlan) -> list[str]:
    """The plan's filters as fluent.conf lines (the same directives as build_filter_steps)."""
    lines = [f"  # filter left to the consumer: {reason}" for reason in plan.consumer_only]
    if not plan.rules:
        return lines
    for parser in plan.parsers:
        lines += [f"  <filter {tag}>", "    @type parser", f"    key_name {parser.key_name}"]
        lines += ["    reserve_data true", "    reserve_time true"]
        lines += ["    emit_invalid_record_to_error false", "    <parse>", "      @type regexp"]
        lines += [f"      expression {parser.expression}", f"      types {parser.types}"]
        lines += ["    </parse>", "  </filter>"]
    for rule in plan.rules:
        lines += [f"  <filter {tag}>", "    @type grep"]
        if rule.unparsed_key is None:
            lines += _regexp_section(rule.key, rule.pattern, "    ")
        else:
            for key, pattern in ((rule.unparsed_key, UNPARSED_PATTERN), (rule.key, rule.pattern)):
                lines += ["    <or>", *_regexp_section(key, pattern, "      "), "    </or>"]
        lines.append("  </filter>")
    if plan.remove_keys:
        lines += [f"  <filter {tag}>", "    @type record_transformer"]
        lines += [f"    remove_keys {','.join(plan.remove_keys)}", "  </filter>"]
    return lines


def _regexp_section(key: str, pattern: str, indent: str) -> list[str]:
    return [f"{indent}<regexp>", f"{indent}  key {key}", f"{indent}  pattern {pattern}",
            f"{indent}</regexp>"]  # fmt: skip


def build_route_configmap(
    ref: PipelineRef, spec: RoutedSpec, topic: str, bootstrap: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ref.owned_metadata(ref.route_configmap_name, "route"),
        "data": {"fluent.conf": build_fluent_conf(ref, spec, topic, bootstrap)},
    }
