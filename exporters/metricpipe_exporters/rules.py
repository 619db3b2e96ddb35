"""Prometheus recording and alerting rules, and the objects that make Prometheus scrape us.

Pure builders: every function returns plain dicts (or text) and does no I/O. Metric names come
from `names.py` only, so the rules cannot drift from what the exporter and consumers serve.

Recording rules are named `metricpipe:<what>:<unit>` and carry two labels: `pipeline`
(`<namespace>/<name>`, as the series) and `namespace`, taken from it by `label_replace` (so a
target's own `namespace` label, e.g. the exporter's from a ServiceMonitor, never stands in for the
pipeline's). They read only `metricpipe_*` series (names.py): in a Prometheus shared with
kafka_exporter, foreign consumer groups' series never enter a sum. Alerts carry `namespace`
and `pipeline`, a `severity` of `critical` or `warning` (kube-prometheus-stack's routing) and a
`runbook_url` into docs/runbook.md.
The freshness SLO is measured with a 0/1 series (1 = freshness above the pipeline's target);
its mean over a window is the error ratio, and the alerts use multi-window burn rates
(Google SRE workbook, chapter 5) against a 30-day error budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from metricpipe_contract import names
from metricpipe_contract.version import RELEASE, VERSION_LABEL

Rule = dict[str, Any]

GROUP_INTERVAL: Final = "30s"  # independent of the server's global evaluation_interval
SCRAPE_INTERVAL: Final = "15s"  # monitors; the 1m rate windows need >= 4 samples
RECORDING_GROUP: Final = "metricpipe.recording"
ALERTING_GROUP: Final = "metricpipe.alerts"
BUDGET_DAYS: Final = 30  # the SLO period the burn-rate factors are tuned for
CACHE_FULL_RATIO: Final = 0.9  # LogCacheNearlyFull: used / maxmemory above this
CRITICAL: Final = "critical"  # someone acts now (kube-prometheus-stack's severities)
WARNING: Final = "warning"  # someone acts within the working day
RUNBOOK_BASE: Final = "https://github.com/metricpipe/metricpipe/blob/main/docs/runbook.md"

# -- recording rules: one series per pipeline (label `pipeline`)
INPUT_RATE: Final = "metricpipe:input_rate:records_per_second"
PROCESSING_RATE: Final = "metricpipe:processing_rate:records_per_second"
TIME_LAG: Final = "metricpipe:time_lag:seconds"
LAG_RECORDS: Final = "metricpipe:lag:records"
CONSUMER_FRESHNESS: Final = "metricpipe:consumer_freshness:seconds"
SINK_FRESHNESS: Final = "metricpipe:sink_freshness:seconds"
FRESHNESS: Final = "metricpipe:freshness:seconds"  # the sink prober's, else the consumers'
DEAD_LETTER_RATE: Final = "metricpipe:dead_letter_rate:records_per_second"
FRESHNESS_SLO_BAD: Final = "metricpipe:freshness_slo_bad:bool"

# -- what Prometheus is told to scrape
NAME_LABEL: Final = "app.kubernetes.io/name"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
METRICS_PORT: Final = "metrics"
MONITORING_API: Final = "monitoring.coreos.com/v1"

# Go-template snippets: the `pipeline` label is `<namespace>/<name>`; runbook hints need both.
_PIPELINE: Final = "{{ $labels.pipeline }}"
_SPLIT: Final = (
    '{{ $ns := reReplaceAll "/.*" "" $labels.pipeline }}'
    '{{ $name := reReplaceAll ".*/" "" $labels.pipeline }}'
)


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window burn-rate alert: fires when both windows burn faster than `factor`."""

    speed: str  # alert name suffix
    pace: str  # for the summary
    long: str
    short: str
    factor: float
    severity: str
    hold: str  # `for:`


BURN_WINDOWS: Final = (
    BurnWindow("Fast", "fast", long="1h", short="5m", factor=14.4, severity=CRITICAL, hold="2m"),
    BurnWindow(
        "Slow", "steadily", long="6h", short="30m", factor=6.0, severity=WARNING, hold="15m"
    ),
)


def _num(value: float) -> str:
    """A PromQL number literal without float noise (1 - 0.99 -> 0.01)."""
    return format(value, ".10g")


def _by_pipeline(aggregation: str, inner: str) -> str:
    """`aggregation` of `inner` per pipeline, with the pipeline's namespace as a label."""
    named = f'label_replace({inner}, "namespace", "$1", "pipeline", "([^/]*)/.*")'
    return f"{aggregation} by (namespace, pipeline) ({named})"


def _record(name: str, expr: str) -> Rule:
    return {"record": name, "expr": expr}


def build_recording_rules() -> dict[str, Any]:
    """The per-pipeline series the alerts, dashboards and the ResourceManager read.

    Order matters: rules of one group run in sequence, so later rules read earlier ones
    from the same evaluation.
    """
    rules = [
        _record(INPUT_RATE, _by_pipeline("sum", f"rate({names.TOPIC_PARTITION_OFFSET}[1m])")),
        _record(
            PROCESSING_RATE, _by_pipeline("sum", f"rate({names.CONSUMER_RECORDS_CONSUMED}[1m])")
        ),
        _record(TIME_LAG, _by_pipeline("max", names.GROUP_TIME_LAG)),
        _record(LAG_RECORDS, _by_pipeline("sum", names.GROUP_LAG)),
        _record(CONSUMER_FRESHNESS, f"time() - {_by_pipeline('min', names.CONSUMER_WATERMARK)}"),
        _record(SINK_FRESHNESS, _by_pipeline("max", names.SINK_FRESHNESS)),
        _record(FRESHNESS, f"{SINK_FRESHNESS} or {CONSUMER_FRESHNESS}"),
        _record(DEAD_LETTER_RATE, _by_pipeline("sum", f"rate({names.CONSUMER_DEAD_LETTER}[5m])")),
        _record(
            FRESHNESS_SLO_BAD,
            f"{FRESHNESS} > bool on (pipeline) group_left () {names.PIPELINE_FRESHNESS_TARGET}",
        ),
    ]
    return {"name": RECORDING_GROUP, "interval": GROUP_INTERVAL, "rules": rules}


def _alert(name: str, expr: str, hold: str, severity: str, annotations: Mapping[str, str]) -> Rule:
    return {
        "alert": name,
        "expr": expr,
        "for": hold,
        "labels": {"severity": severity},
        "annotations": dict(annotations),
    }


def _pipeline_runbook(first_step: str) -> str:
    """A runbook hint: `first_step`, then the pipeline's conditions and its consumers' logs."""
    consumers = f"{NAME_LABEL}={names.CONSUMER_JOB},{INSTANCE_LABEL}={{{{ $name }}}}"
    return (
        f"{_SPLIT}{first_step}; then `kubectl -n {{{{ $ns }}}} describe metricpipeline "
        f"{{{{ $name }}}}` and `kubectl -n {{{{ $ns }}}} logs -l {consumers}`."
    )


def _burn(span: str, budget: str, factor: str) -> str:
    """Burn rate over `span` (error ratio / error budget) above `factor`."""
    return f"avg_over_time({FRESHNESS_SLO_BAD}[{span}]) / {budget} > {factor}"


def build_freshness_burn_alerts(objective: float) -> list[Rule]:
    """The page (fast) and ticket (slow) alerts on the freshness SLO's error budget."""
    budget = _num(1 - objective)
    percent = format(objective * 100, ".6g")
    alerts = []
    for window in BURN_WINDOWS:
        factor = _num(window.factor)
        days = format(BUDGET_DAYS / window.factor, ".1f")
        annotations = {
            "summary": f"Pipeline {_PIPELINE} is burning its freshness error budget {window.pace}",
            "description": (
                f"Pipeline {_PIPELINE} has been staler than its freshness target so often that "
                f"its error budget burns {{{{ $value | humanize }}}}x faster than a {percent}% "
                f"objective allows (over {window.long}, still over {window.short}); at this "
                f"rate a {BUDGET_DAYS}-day budget is gone in {days} days."
            ),
            "runbook": _pipeline_runbook(
                f"Compare `{TIME_LAG}` and `{INPUT_RATE}` with `{PROCESSING_RATE}` "
                f'for pipeline="{_PIPELINE}"'
            ),
        }
        alerts.append(
            _alert(
                f"FreshnessBudgetBurn{window.speed}",
                f"({_burn(window.long, budget, factor)}) and "
                f"({_burn(window.short, budget, factor)})",
                window.hold,
                window.severity,
                annotations,
            )
        )
    return alerts


def build_consumer_stalled_alert() -> Rule:
    """Records arrive (or lag grows) while the consumers process none; also catches consumers
    that are gone entirely, whose processing-rate series is absent rather than zero."""
    receiving = f"{INPUT_RATE} > 0 and on (namespace, pipeline) {PROCESSING_RATE} == 0"
    lag_growing = (
        f"delta({LAG_RECORDS}[5m]) > 0 unless on (namespace, pipeline) {PROCESSING_RATE} > 0"
    )
    return _alert(
        "ConsumerStalled",
        f"({receiving}) or ({lag_growing})",
        "5m",
        WARNING,
        {
            "summary": f"Consumers of pipeline {_PIPELINE} process no records",
            "description": (
                f"Pipeline {_PIPELINE} receives records or its lag grows, but its consumers "
                "have processed nothing for 5m; its freshness falls behind."
            ),
            "runbook": _pipeline_runbook(
                f"`kubectl -n {{{{ $ns }}}} get pods -l {NAME_LABEL}={names.CONSUMER_JOB},"
                f"{INSTANCE_LABEL}={{{{ $name }}}}` (crash loops, Pending, not Ready)"
            ),
        },
    )


def build_dead_letter_alert(ratio: float) -> Rule:
    """Too many of the consumed records go to the dead-letter topic.

    The ratio is against records consumed, not produced: dead letters are a subset of what
    the consumers read, and while a backlog drains the consumed rate exceeds the input rate.
    """
    threshold = format(ratio * 100, ".6g")
    return _alert(
        "DeadLetterRateHigh",
        f"{DEAD_LETTER_RATE} / on (namespace, pipeline) {PROCESSING_RATE} > {_num(ratio)}",
        "10m",
        WARNING,
        {
            "summary": f"Pipeline {_PIPELINE} dead-letters more than {threshold}% of its records",
            "description": (
                f"{{{{ $value | humanizePercentage }}}} of the records consumed by pipeline "
                f"{_PIPELINE} went to its dead-letter topic (threshold {threshold}%)."
            ),
            "runbook": _pipeline_runbook(
                f"See the reasons with `sum by (reason) (rate({names.CONSUMER_DEAD_LETTER}"
                f'{{pipeline="{_PIPELINE}"}}[5m]))` and read a few records of `<topic>.dlq`'
            ),
        },
    )


def build_exporter_down_alert() -> Rule:
    """The exporter is unreachable or has no target at all (then `absent` answers)."""
    up = f'up{{job="{names.EXPORTER_JOB}"}}'
    return _alert(
        "ExporterDown",
        f"{up} == 0 or absent({up})",
        "2m",
        WARNING,
        {
            "summary": "The metricpipe exporter is down",
            "description": (
                f"Prometheus cannot scrape job {names.EXPORTER_JOB}"
                "{{ if $labels.instance }} at {{ $labels.instance }}{{ end }}: lag, time lag and "
                "sink freshness of every pipeline are unknown, so the freshness alerts are blind "
                "and the ResourceManager holds replicas."
            ),
            "runbook": (
                "Check the exporter pods and their logs (`kubectl get pods -A -l "
                f"{NAME_LABEL}={names.EXPORTER_JOB}`) and the target on Prometheus' /targets page."
            ),
        },
    )


def _cache_runbook(first_step: str) -> str:
    """What frees the log cache, after `first_step`."""
    return (
        f"{first_step}; then raise maxmemory (`CONFIG SET maxmemory <bytes>` as the admin user, "
        "and in Redis' config) or keep fewer hours: a shorter cache retention (the operator's "
        "METRICPIPE_CACHE_RETENTION_SECONDS) or `ZREMRANGEBYSCORE <cache key> -inf <Unix s>` "
        "(batch windows that needed those records are then reported trimmed)."
    )


def build_cache_alerts() -> list[Rule]:
    """The Redis log cache is full (maxmemory, noeviction): Fluentd's writes are refused and
    retried, so its buffers fill; and the warning before, when it is nearly full."""
    used, limit = names.CACHE_MEMORY_USED, names.CACHE_MEMORY_LIMIT
    usage = f"`{used} / {limit}`"
    refusing = _alert(
        "LogCacheRefusingWrites",
        f"increase({names.CACHE_REFUSED_WRITES}[5m]) > 0",
        "0m",
        CRITICAL,
        {
            "summary": "The Redis log cache {{ $labels.redis }} refuses writes: it is full",
            "description": (
                "Redis {{ $labels.redis }} refused writes for lack of memory in the last 5m "
                "(about {{ $value | humanize }}; maxmemory, noeviction). Fluentd keeps the "
                "refused chunks in its buffer and retries them, so nothing is dropped yet; but "
                "new records reach the batch pipelines over the cache only once Redis takes "
                "them again, and when a buffer is full Fluentd blocks its input."
            ),
            "runbook": _cache_runbook(
                f"See {usage} and, as the admin user, which caches hold it (`redis-cli --memkeys`)"
            ),
        },
    )
    nearly_full = _alert(
        "LogCacheNearlyFull",
        f"{used} / ({limit} > 0) > {_num(CACHE_FULL_RATIO)}",
        "10m",
        WARNING,
        {
            "summary": "The Redis log cache {{ $labels.redis }} is nearly full",
            "description": (
                "Redis {{ $labels.redis }} uses {{ $value | humanizePercentage }} of its "
                "maxmemory; when it is full it refuses Fluentd's writes (LogCacheRefusingWrites)."
            ),
            "runbook": _cache_runbook(f"Follow {usage} over the last day"),
        },
    )
    return [refusing, nearly_full]


def _with_runbook(alert: Rule, runbook_base: str) -> Rule:
    """The alert with its first steps (`runbook`, with the pipeline's names filled in) at the end
    of its description and `runbook_url` at its section of docs/runbook.md (anchor: the alert's
    name in lower case, as GitHub and MkDocs make it from a `### <AlertName>` heading)."""
    annotations = dict(alert["annotations"])
    first_steps = annotations.pop("runbook")
    annotations["description"] = f"{annotations['description']} First: {first_steps}"
    annotations["runbook_url"] = f"{runbook_base}#{alert['alert'].lower()}"
    return {**alert, "annotations": annotations}


def build_alerting_rules(
    objective: float = 0.99, dead_letter_ratio: float = 0.01, runbook_base: str = RUNBOOK_BASE
) -> dict[str, Any]:
    """The alert group; `objective` is the share of time freshness must stay under target;
    `runbook_base` is where docs/runbook.md is served (a fork's or an internal mirror's)."""
    if not 0 < objective < 1:
        raise ValueError(f"objective must lie strictly between 0 and 1, got {objective}")
    if not 0 < dead_letter_ratio < 1:
        raise ValueError(
            f"dead_letter_ratio must lie strictly between 0 and 1, got {dead_letter_ratio}"
        )
    rules = [
        *build_freshness_burn_alerts(objective),
        build_consumer_stalled_alert(),
        build_dead_letter_alert(dead_letter_ratio),
        build_exporter_down_alert(),
        *build_cache_alerts(),
    ]
    return {
        "name": ALERTING_GROUP,
        "interval": GROUP_INTERVAL,
        "rules": [_with_runbook(rule, runbook_base) for rule in rules],
    }


def build_rule_file(objective: float = 0.99, runbook_base: str = RUNBOOK_BASE) -> dict[str, Any]:
    """A Prometheus rule file: `rule_files:` loads it; `promtool check rules` checks it."""
    alerting = build_alerting_rules(objective, runbook_base=runbook_base)
    return {"groups": [build_recording_rules(), alerting]}


def render_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, width=4096, allow_unicode=True)


def _metadata(
    name: str, namespace: str, component: str, labels: Mapping[str, str] | None
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            NAME_LABEL: name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "metricpipe",
            VERSION_LABEL: RELEASE,
            **(labels or {}),
        },
    }


def build_prometheus_rule_manifest(
    namespace: str, objective: float = 0.99, labels: Mapping[str, str] | None = None,
    runbook_base: str = RUNBOOK_BASE,
) -> dict[str, Any]:  # fmt: skip
    """The same groups as a prometheus-operator PrometheusRule; `labels` lets it match the
    Prometheus object's `ruleSelector`."""
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": _metadata("metricpipe-rules", namespace, "rules", labels),
        "spec": build_rule_file(objective, runbook_base),
    }


def _endpoint() -> dict[str, Any]:
    return {"port": METRICS_PORT, "path": "/metrics", "interval": SCRAPE_INTERVAL}


def build_pod_monitor(namespace: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Scrape every consumer pod, in any namespace (pipelines live in their users' namespaces).

    `jobLabel` takes the job from the pods' `app.kubernetes.io/name`, so the job is
    `metricpipe-consumer` rather than prometheus-operator's default `<namespace>/<monitor>`.
    """
    return {
        "apiVersion": MONITORING_API,
        "kind": "PodMonitor",
        "metadata": _metadata(names.CONSUMER_JOB, namespace, "monitoring", labels),
        "spec": {
            "jobLabel": NAME_LABEL,
            "namespaceSelector": {"any": True},
            "selector": {"matchLabels": {NAME_LABEL: names.CONSUMER_JOB}},
            "podMetricsEndpoints": [_endpoint()],
        },
    }


def build_service_monitor(
    namespace: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Scrape the exporter's Service in `namespace` (the operator's); job `metricpipe-exporter`
    via `jobLabel`, which ExporterDown relies on."""
    return {
        "apiVersion": MONITORING_API,
        "kind": "ServiceMonitor",
        "metadata": _metadata(names.EXPORTER_JOB, namespace, "monitoring", labels),
        "spec": {
            "jobLabel": NAME_LABEL,
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": {NAME_LABEL: names.EXPORTER_JOB}},
            "endpoints": [_endpoint()],
        },
    }


def build_file_sd(
    targets: Sequence[str], job: str, labels: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """A Prometheus file_sd document; the `job` label set here wins over the scrape job's name."""
    return [{"targets": list(targets), "labels": {**(labels or {}), "job": job}}]
