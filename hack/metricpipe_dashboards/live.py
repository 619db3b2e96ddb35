"""Run the dashboards' queries against real servers, as Grafana and Kibana would send them.

- Grafana: every panel target and annotation as a Prometheus range query
  (`/api/v1/query_range`) with the dashboard variables filled in the way Grafana fills them
  (`$pipeline` a regex alternation of the chosen pipelines, `$__rate_interval` from the step
  and the scrape interval), and the `pipeline` variable as `/api/v1/label/pipeline/values`.
  The Prometheus base URL is a parameter: the same check runs against any Prometheus.
- Saved objects: every visualization's aggregations as the `_search` Kibana / OpenSearch
  Dashboards build from its `visState` (bucket aggregations nested in their listed order, the
  metric aggregations under each bucket level, terms ordered by the metric), over the index
  pattern, restricted to the time range on the pattern's time field and to the visualization's
  KQL query (only the `field:value` form these objects use is translated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from .saved_objects_model import (
    BucketAgg,
    DateHistogramAgg,
    MetricAgg,
    SavedObjects,
    VisState,
    Visualization,
)

TIMEOUT = 30.0


# -- Grafana over Prometheus -----------------------------------------------------------------
@dataclass(frozen=True)
class Variables:
    """What Grafana substitutes into a query."""

    pipelines: tuple[str, ...]  # the `pipeline` variable's chosen values
    step_seconds: int  # Grafana's $__interval (the query step)
    scrape_seconds: int = 15  # the data source's scrape interval (Grafana's default: 15 s)

    @property
    def rate_interval_seconds(self) -> int:
        """Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval)."""
        return max(self.step_seconds + self.scrape_seconds, 4 * self.scrape_seconds)

    def fill(self, expr: str) -> str:
        """A multi-value variable becomes (a|b), each value escaped as Grafana's Prometheus
        data source escapes it for a regex inside a PromQL string (`.` -> `\\\\.`)."""
        chosen = "(" + "|".join(grafana_regex_escape(p) for p in self.pipelines) + ")"
        return (
            expr.replace("$__rate_interval", f"{self.rate_interval_seconds}s")
            .replace("$__interval", f"{self.step_seconds}s")
            .replace("$pipeline", chosen)
        )


def grafana_regex_escape(value: str) -> str:
    """Grafana's prometheusRegularEscape: backslashes doubled twice, regex metacharacters
    preceded by an escaped backslash (the string literal's escape, then the regex's)."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", value)


@dataclass(frozen=True)
class QueryResult:
    where: str  # "panel <title> <refId>" or "annotation <name>"
    expr: str  # as sent
    series: list[dict[str, str]]  # the labels of each series returned
    samples: int  # points over all series
    values: list[list[tuple[float, float]]] = field(default_factory=list)  # per series: (t, v)


def panel_where(panel: Mapping[str, Any], target: Mapping[str, Any]) -> str:
    return f"panel {panel['title']!r} {target['refId']}"


def annotation_where(annotation: Mapping[str, Any]) -> str:
    return f"annotation {annotation['name']!r}"


def query_range(
    prometheus_url: str, expr: str, start: float, end: float, step: int
) -> list[dict[str, Any]]:
    """A range query's result (matrix); raises on anything but success."""
    params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
    answer = requests.get(
        f"{prometheus_url}/api/v1/query_range",
        params=params,
        timeout=TIMEOUT,
    )
    body = answer.json()
    if answer.status_code != 200 or body.get("status") != "success":
        raise ValueError(f"Prometheus refused {expr!r}: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def run_grafana_queries(
    prometheus_url: str, model: dict[str, Any], start: float, end: float, variables: Variables
) -> list[QueryResult]:
    """Every panel target and annotation query of a dashboard's JSON model, over [start, end]."""
    queries = [
        (panel_where(panel, target), target["expr"])
        for panel in model["panels"]
        for target in panel["targets"]
    ]
    queries += [
        (annotation_where(a), a["expr"]) for a in model["annotations"]["list"] if "expr" in a
    ]
    results = []
    for where, expr in queries:
        filled = variables.fill(expr)
        matrix = query_range(prometheus_url, filled, start, end, variables.step_seconds)
        results.append(
            QueryResult(
                where,
                filled,
                [dict(series["metric"]) for series in matrix],
                sum(len(series["values"]) for series in matrix),
                [[(float(t), float(v)) for t, v in series["values"]] for series in matrix],
            )
        )
    return results


def fetch_variable_values(
    prometheus_url: str, model: dict[str, Any], name: str, start: float, end: float
) -> list[str]:
    """A `label_values(<series>, <label>)` query variable's values over [start, end], as
    Grafana's Prometheus data source asks for them."""
    (variable,) = [v for v in model["templating"]["list"] if v["name"] == name]
    match = re.fullmatch(r"label_values\((?P<series>.+),\s*(?P<label>\w+)\)", variable["query"])
    if match is None:
        raise ValueError(f"variable {name}: not a label_values query: {variable['query']}")
    answer = requests.get(
        f"{prometheus_url}/api/v1/label/{match['label']}/values",
        params={"match[]": match["series"], "start": start, "end": end},
        timeout=TIMEOUT,
    )
    answer.raise_for_status()
    values: list[str] = answer.json()["data"]
    return values


# -- saved visualizations over Elasticsearch / OpenSearch ------------------------------------
def translate_kql(query: str) -> list[dict[str, Any]]:
    """The filters of a KQL query of the form `field:value` (or empty)."""
    if not query.strip():
        return []
    match = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*:\s*([\w.-]+)\s*", query)
    if match is None:
        raise ValueError(f"KQL beyond `field:value` is not translated here: {query!r}")
    field, raw = match.groups()
    value: Any = {"true": True, "false": False}.get(raw, raw)
    return [{"term": {field: value}}]


def _metric_dsl(metrics: list[MetricAgg]) -> dict[str, Any]:
    return {m.id: {m.type: {"field": m.params.field}} for m in metrics if m.type != "count"}


def _bucket_dsl(agg: BucketAgg, metrics: list[MetricAgg], interval: str) -> dict[str, Any]:
    if isinstance(agg, DateHistogramAgg):
        return {
            "date_histogram": {
                "field": agg.params.field,
                "fixed_interval": interval,  # Kibana's "auto" picks one from the time range
                "min_doc_count": agg.params.min_doc_count,
                "time_zone": "UTC",
            }
        }
    by = {m.id: m for m in metrics}[agg.params.orderBy]
    key = "_count" if by.type == "count" else by.id
    terms = {"field": agg.params.field, "size": agg.params.size, "order": {key: agg.params.order}}
    return {"terms": terms}


def build_search_body(
    state: VisState, query: str, time_field: str, *, start_ms: int, end_ms: int, interval: str,
    extra_filters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The `_search` body of a visualization over [start_ms, end_ms]."""
    metrics = state.metrics()
    nested: dict[str, Any] = {}
    for bucket in reversed(state.buckets()):
        level = {**_metric_dsl(metrics), **nested}
        nested = {bucket.id: {**_bucket_dsl(bucket, metrics, interval), "aggs": level}}
    window = {"range": {time_field: {"gte": start_ms, "lte": end_ms, "format": "epoch_millis"}}}
    filters = [window, *translate_kql(query), *(extra_filters or [])]
    return {"size": 0, "query": {"bool": {"filter": filters}}, "aggs": nested}


@dataclass(frozen=True)
class SearchResult:
    visualization: str
    body: dict[str, Any]
    rows: list[tuple[tuple[Any, ...], dict[str, Any]]]  # (bucket keys, metric values) per leaf

    def keys_at(self, depth: int) -> set[Any]:
        return {keys[depth] for keys, _ in self.rows}


def leaf_rows(
    aggregations: dict[str, Any], bucket_ids: list[str], metric_ids: list[str]
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(bucket keys outermost first, {metric id: value}) of every innermost bucket."""
    if not bucket_ids:
        return []
    rows = []
    for bucket in aggregations[bucket_ids[0]]["buckets"]:
        key = bucket.get("key_as_string", bucket["key"])
        if len(bucket_ids) == 1:
            values = {
                m: (bucket[m]["value"] if m in bucket else bucket["doc_count"]) for m in metric_ids
            }
            rows.append(((key,), values))
        else:
            rows += [((key, *keys), values)
                     for keys, values in leaf_rows(bucket, bucket_ids[1:], metric_ids)]  # fmt: skip
    return rows


def run_visualization(
    search_url: str, vis: Visualization, pattern: str, time_field: str, *,
    start_ms: int, end_ms: int, interval: str, extra_filters: list[dict[str, Any]] | None = None,
) -> SearchResult:  # fmt: skip
    state = vis.vis_state
    body = build_search_body(
        state, vis.search_source.query.query, time_field, start_ms=start_ms, end_ms=end_ms,
        interval=interval, extra_filters=extra_filters,
    )  # fmt: skip
    answer = requests.post(f"{search_url}/{pattern}/_search", json=body, timeout=TIMEOUT)
    if answer.status_code != 200:
        raise ValueError(f"{vis.id}: the search failed: {answer.status_code} {answer.text}")
    rows = leaf_rows(
        answer.json().get("aggregations", {}),
        [b.id for b in state.buckets()],
        [m.id for m in state.metrics()],
    )
    return SearchResult(vis.id, body, rows)


def run_saved_objects(
    search_url: str, objects: SavedObjects, *, start_ms: int, end_ms: int, interval: str,
    extra_filters: list[dict[str, Any]] | None = None,
) -> list[SearchResult]:  # fmt: skip
    """Every visualization of an import file over its index pattern."""
    patterns = {p.id: p.attributes for p in objects.index_patterns()}
    results = []
    for vis in objects.visualizations():
        (ref,) = [r for r in vis.references if r.name == vis.search_source.indexRefName]
        pattern = patterns[ref.id]
        found = run_visualization(
            search_url, vis, pattern.title, pattern.timeFieldName, start_ms=start_ms,
            end_ms=end_ms, interval=interval, extra_filters=extra_filters,
        )  # fmt: skip
        results.append(found)
    return results
