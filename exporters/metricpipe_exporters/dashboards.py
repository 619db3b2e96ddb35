"""Dashboards generated from code, so they cannot drift from the metric and field names.

python -m metricpipe_exporters.dashboards --out DIR

- Grafana (Prometheus): one dashboard over the recording rules of `rules.py` and the series
  of `names.py`; every expression is built from those constants, never from a literal name.
- OpenSearch Dashboards / Kibana (the sink): saved objects over the metric documents the
  consumers write (`metricpipe_consumers/documents.py`): an index pattern `metricpipe-*`
  with `window_start` as its time field (mapped `date`; the documents also carry
  `window_start_ms`, a `long`, which cannot be a time field), a few visualizations and a
  dashboard. The state indices `<index>-state` match the pattern too, but their documents have
  no `window_start`, so no time-filtered view ever shows them.

Pure builders return plain dicts; only `main` writes files.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from metricpipe_contract import names

from . import rules

Json = dict[str, Any]

GRAFANA_FILE: Final = "metricpipe-grafana.json"
SAVED_OBJECTS_FILE: Final = "metricpipe-opensearch-dashboards.ndjson"

# -- Grafana ------------------------------------------------------------------------------------
GRAFANA_UID: Final = "metricpipe-pipelines"
GRAFANA_SCHEMA_VERSION: Final = 39
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
PIPELINES: Final = '{pipeline=~"$pipeline"}'  # the selector every panel query carries
PIPELINE_VARIABLE_SERIES: Final = rules.INPUT_RATE  # exists as soon as a pipeline's topic does
SCALING_WINDOW: Final = "2m"  # > the annotation step, so no change falls between two steps
SCALING_STEP: Final = "1m"

FRESHNESS_PANEL: Final = "Freshness vs target"
TIME_LAG_PANEL: Final = "Time lag"
LAG_PANEL: Final = "Lag (records)"
REPLICAS_PANEL: Final = "Consumer replicas"
THROUGHPUT_PANEL: Final = "Throughput: input vs processing"
DEAD_LETTER_PANEL: Final = "Dead letters"
SCALING_ANNOTATION: Final = "Scaling events"

# -- OpenSearch Dashboards / Kibana: field names of the metric documents (documents.py) -------
INDEX_PATTERN_ID: Final = "metricpipe-metrics"
INDEX_PATTERN_TITLE: Final = "metricpipe-*"
TIME_FIELD: Final = "window_start"
VALUE_FIELD: Final = "value"
COUNT_FIELD: Final = "count"
GROUP_KEY_FIELD: Final = "group_key"
PIPELINE_FIELD: Final = "pipeline"
FINAL_FIELD: Final = "final"
DELAY_FIELD: Final = "delay_seconds"
SEARCH_REF: Final = "kibanaSavedObjectMeta.searchSourceJSON.index"
FINAL_ONLY: Final = f"{FINAL_FIELD}:true"  # KQL
PANEL_VERSION: Final = "7.10.0"  # panel format of 7.3+: no panel migration touches it
# 7.0.0 moved panel ids into `references`; these panels already use them, so that step is done.
DASHBOARD_MIGRATION: Final = {"dashboard": "7.0.0"}
DASHBOARD_ID: Final = "metricpipe-overview"


# -- Grafana ------------------------------------------------------------------------------------
def _pipelines(metric: str) -> str:
    """`metric` restricted to the pipelines chosen in the `pipeline` variable."""
    return f"{metric}{PIPELINES}"


def build_grafana_target(ref_id: str, expr: str, legend: str) -> Json:
    """One Prometheus query of a panel."""
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "refId": ref_id,
    }


def build_timeseries_panel(
    title: str, description: str, unit: str, targets: Sequence[Json], dashed: Sequence[str] = ()
) -> Json:
    """A timeseries panel (without id and position); series of the `dashed` refIds are drawn
    dashed (targets and desired values against actual ones)."""
    overrides = [
        {
            "matcher": {"id": "byFrameRefID", "options": ref_id},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
        }
        for ref_id in dashed
    ]
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": list(targets),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 0,
                    "showPoints": "never",
                    "spanNulls": False,
                },
            },
            "overrides": overrides,
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def build_grafana_panels() -> list[Json]:
    """The panels, two per row, each one series (or two) per selected pipeline."""
    dead_letters_by_reason = (
        f"sum by (pipeline, reason) "
        f"(rate({_pipelines(names.CONSUMER_DEAD_LETTER)}[$__rate_interval]))"
    )
    panels = [
        build_timeseries_panel(
            FRESHNESS_PANEL,
            "How far behind the sink is (the sink prober's measure, else the consumers'), "
            "against spec.freshness.target (dashed).",
            "s",
            [
                build_grafana_target("A", _pipelines(rules.FRESHNESS), "{{pipeline}}"),
                build_grafana_target(
                    "B", _pipelines(names.PIPELINE_FRESHNESS_TARGET), "{{pipeline}} target"
                ),
            ],
            dashed=["B"],
        ),
        build_timeseries_panel(
            TIME_LAG_PANEL,
            "Age of the oldest record the consumer group has not processed (0 when caught up).",
            "s",
            [build_grafana_target("A", _pipelines(rules.TIME_LAG), "{{pipeline}}")],
        ),
        build_timeseries_panel(
            LAG_PANEL,
            "Records on the topic the consumer group has not processed yet.",
            "short",
            [build_grafana_target("A", _pipelines(rules.LAG_RECORDS), "{{pipeline}}")],
        ),
        build_timeseries_panel(
            REPLICAS_PANEL,
            "Consumer replicas that exist (status.replicas) and that the operator wants "
            "(status.desiredReplicas, dashed); the annotations mark its changes.",
            "short",
            [
                build_grafana_target("A", _pipelines(names.PIPELINE_REPLICAS), "{{pipeline}}"),
                build_grafana_target(
                    "B", _pipelines(names.PIPELINE_DESIRED_REPLICAS), "{{pipeline}} desired"
                ),
            ],
            dashed=["B"],
        ),
        build_timeseries_panel(
            THROUGHPUT_PANEL,
            "Records per second arriving on the topic and processed by the consumers; "
            "freshness falls behind while the second stays below the first.",
            "cps",
            [
                build_grafana_target("A", _pipelines(rules.INPUT_RATE), "{{pipeline}} input"),
                build_grafana_target(
                    "B", _pipelines(rules.PROCESSING_RATE), "{{pipeline}} processing"
                ),
            ],
        ),
        build_timeseries_panel(
            DEAD_LETTER_PANEL,
            "Records per second sent to the dead-letter topic, by reason, and in total.",
            "cps",
            [
                build_grafana_target("A", dead_letters_by_reason, "{{pipeline}} {{reason}}"),
                build_grafana_target("B", _pipelines(rules.DEAD_LETTER_RATE), "{{pipeline}} total"),
            ],
        ),
    ]
    width, height = 12, 8
    for index, panel in enumerate(panels):
        panel["id"] = index + 1
        panel["gridPos"] = {
            "x": (index % 2) * width,
            "y": (index // 2) * height,
            "w": width,
            "h": height,
        }
    return panels


def build_grafana_annotations() -> list[Json]:
    """Grafana's own annotations, and the scaling events: a change of desired replicas."""
    desired = _pipelines(names.PIPELINE_DESIRED_REPLICAS)
    return [
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        },
        {
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": "orange",
            "name": SCALING_ANNOTATION,
            "expr": f"changes({desired}[{SCALING_WINDOW}]) > 0",
            "step": SCALING_STEP,
            "titleFormat": "Scaled {{pipeline}}",
            "textFormat": "desired replicas changed",
            "tagKeys": "pipeline",
            "useValueForTime": False,
        },
    ]


def build_grafana_variables() -> list[Json]:
    """`datasource` (any Prometheus) and `pipeline` (multi-select, All by default)."""
    query = f"label_values({PIPELINE_VARIABLE_SERIES}, pipeline)"
    return [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "options": [],
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
        },
        {
            "name": "pipeline",
            "label": "Pipeline",
            "type": "query",
            "datasource": DATASOURCE,
            "definition": query,
            "query": query,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "hide": 0,
            "includeAll": True,
            "allValue": ".+",
            "multi": True,
            "options": [],
            "refresh": 2,  # on time range change: pipelines come and go
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
        },
    ]


def build_grafana_dashboard() -> Json:
    """The Grafana dashboard (for Grafana's dashboard sidecar or a manual import)."""
    return {
        "uid": GRAFANA_UID,
        "title": "metricpipe pipelines",
        "description": "Freshness, lag, scaling, throughput and dead letters of MetricPipelines.",
        "tags": ["metricpipe"],
        "schemaVersion": GRAFANA_SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "weekStart": "",
        "links": [],
        "annotations": {"list": build_grafana_annotations()},
        "templating": {"list": build_grafana_variables()},
        "panels": build_grafana_panels(),
    }


# -- OpenSearch Dashboards / Kibana -------------------------------------------------------------
def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def build_agg(agg_id: str, kind: str, schema: str, **params: Any) -> Json:
    """One aggregation of a visualization's `visState`."""
    return {"id": agg_id, "enabled": True, "type": kind, "schema": schema, "params": params}


def build_window_axis(agg_id: str) -> Json:
    """X axis: the windows' start time."""
    return build_agg(
        agg_id, "date_histogram", "segment",
        field=TIME_FIELD, interval="auto", min_doc_count=1, extended_bounds={},
    )  # fmt: skip


def build_terms(agg_id: str, field: str, schema: str, size: int, **extra: Any) -> Json:
    """Split by the top `size` values of `field`, ordered by the metric (agg "1")."""
    return build_agg(
        agg_id, "terms", schema, field=field, size=size, order="desc", orderBy="1", **extra
    )


def build_xy_params(chart: str, label: str, mode: str) -> Json:
    """The params of a legacy line/bar ("histogram") chart with one value axis; the series
    is the metric aggregation with id "1"."""
    return {
        "type": chart,
        "grid": {"categoryLines": False},
        "categoryAxes": [
            {
                "id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True,
                "style": {}, "scale": {"type": "linear"},
                "labels": {"show": True, "filter": True, "truncate": 100}, "title": {},
            }
        ],
        "valueAxes": [
            {
                "id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left",
                "show": True, "style": {}, "scale": {"type": "linear", "mode": "normal"},
                "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                "title": {"text": label},
            }
        ],
        "seriesParams": [
            {
                "show": True, "type": "line" if chart == "line" else "histogram", "mode": mode,
                "data": {"label": label, "id": "1"}, "valueAxis": "ValueAxis-1",
                "drawLinesBetweenPoints": True, "lineWidth": 2, "showCircles": True,
                "interpolate": "linear",
            }
        ],
        "addTooltip": True, "addLegend": True, "legendPosition": "right",
        "times": [], "addTimeMarker": False, "labels": {},
    }  # fmt: skip


def build_visualization(
    vis_id: str, title: str, *, description: str, chart: str, label: str,
    aggs: Sequence[Json], query: str = "", mode: str = "normal",
) -> Json:  # fmt: skip
    """A `chart` ("line" or "histogram", i.e. bars) of `aggs` over the index pattern, which
    it references (`indexRefName`) rather than embedding its id; `query` is KQL."""
    vis_state = {
        "title": title,
        "type": chart,
        "params": build_xy_params(chart, label, mode),
        "aggs": list(aggs),
    }
    search_source = {
        "query": {"query": query, "language": "kuery"},
        "filter": [],
        "indexRefName": SEARCH_REF,
    }
    return {
        "type": "visualization",
        "id": vis_id,
        "attributes": {
            "title": title,
            "description": description,
            "version": 1,
            "visState": _compact(vis_state),
            "uiStateJSON": "{}",
            "kibanaSavedObjectMeta": {"searchSourceJSON": _compact(search_source)},
        },
        "references": [{"name": SEARCH_REF, "type": "index-pattern", "id": INDEX_PATTERN_ID}],
    }


def build_index_pattern() -> Json:
    """The index pattern (Kibana: data view) over every pipeline's metric index."""
    return {
        "type": "index-pattern",
        "id": INDEX_PATTERN_ID,
        "attributes": {"title": INDEX_PATTERN_TITLE, "timeFieldName": TIME_FIELD, "fields": "[]"},
        "references": [],
    }


def build_visualizations() -> list[Json]:
    """Final values per group, records per window, partial vs final, finalization delay."""
    return [
        build_visualization(
            "metricpipe-final-value",
            "metricpipe: final value per group",
            description="The final metric value of each window, one chart per pipeline, one "
            "line per group key (top 10).",
            chart="line",
            label="Value",
            aggs=[
                build_agg("1", "avg", "metric", field=VALUE_FIELD),
                build_window_axis("2"),
                build_terms("3", PIPELINE_FIELD, "split", 10, row=True),  # a chart each
                build_terms("4", GROUP_KEY_FIELD, "group", 10),
            ],
            query=FINAL_ONLY,
        ),
        build_visualization(
            "metricpipe-records-per-window",
            "metricpipe: records per window",
            description="Records counted into the final windows, per pipeline.",
            chart="histogram",
            label="Records",
            aggs=[
                build_agg("1", "sum", "metric", field=COUNT_FIELD),
                build_window_axis("2"),
                build_terms("3", PIPELINE_FIELD, "group", 10),
            ],
            query=FINAL_ONLY,
            mode="stacked",
        ),
        build_visualization(
            "metricpipe-partial-vs-final",
            "metricpipe: partial vs final documents",
            description="Documents per window: partial (one per window, group and partition, "
            "updated in place) and final (one per window and group, once every partition "
            "passed it).",
            chart="histogram",
            label="Documents",
            aggs=[
                build_agg("1", "count", "metric"),
                build_window_axis("2"),
                build_terms("3", FINAL_FIELD, "group", 2),
            ],
            mode="stacked",
        ),
        build_visualization(
            "metricpipe-finalization-delay",
            "metricpipe: finalization delay",
            description="Seconds from a window's end to its final document (the slowest "
            "window per interval), per pipeline.",
            chart="line",
            label="Max delay (s)",
            aggs=[
                build_agg("1", "max", "metric", field=DELAY_FIELD),
                build_window_axis("2"),
                build_terms("3", PIPELINE_FIELD, "group", 10),
            ],
            query=FINAL_ONLY,
        ),
    ]


def build_saved_dashboard(visualizations: Sequence[Json]) -> Json:
    """A dashboard with the visualizations, two per row, referenced as `panel_<n>`."""
    panels, references = [], []
    for index, vis in enumerate(visualizations):
        ref = f"panel_{index}"
        panel_index = str(index + 1)
        panels.append({
            "version": PANEL_VERSION,
            "panelIndex": panel_index,
            "gridData": {"x": (index % 2) * 24, "y": (index // 2) * 15, "w": 24, "h": 15,
                         "i": panel_index},
            "embeddableConfig": {},
            "panelRefName": ref,
        })  # fmt: skip
        references.append({"name": ref, "type": "visualization", "id": vis["id"]})
    return {
        "type": "dashboard",
        "id": DASHBOARD_ID,
        "migrationVersion": DASHBOARD_MIGRATION,
        "attributes": {
            "title": "metricpipe: metric documents",
            "description": "The metric documents metricpipe writes to the sink.",
            "version": 1,
            "hits": 0,
            "timeRestore": False,
            "optionsJSON": _compact({"useMargins": True, "hidePanelTitles": False}),
            "panelsJSON": _compact(panels),
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": _compact(
                    {"query": {"query": "", "language": "kuery"}, "filter": []}
                )
            },
        },
        "references": references,
    }


def build_saved_objects() -> list[Json]:
    """Everything to import, referenced objects first."""
    visualizations = build_visualizations()
    return [build_index_pattern(), *visualizations, build_saved_dashboard(visualizations)]


def render_ndjson(objects: Iterable[Json]) -> str:
    """One compact JSON object per line, as the saved-objects import API reads them."""
    return "".join(_compact(obj) + "\n" for obj in objects)


def render_grafana(dashboard: Json) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def build_outputs() -> dict[str, str]:
    """File name -> content."""
    return {
        GRAFANA_FILE: render_grafana(build_grafana_dashboard()),
        SAVED_OBJECTS_FILE: render_ndjson(build_saved_objects()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metricpipe_exporters.dashboards",
        description="Write metricpipe's Grafana dashboard and OpenSearch Dashboards/Kibana "
        "saved objects.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for file_name, text in build_outputs().items():
        path = out / file_name
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
