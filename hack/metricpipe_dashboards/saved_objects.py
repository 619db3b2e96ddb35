"""metricpipe's OpenSearch Dashboards / Kibana saved objects, over the metric documents the
consumers write (`metricpipe_consumers/documents.py`).

An index pattern `metricpipe-*` with `window_start` as its time field (mapped `date`; the
documents also carry `window_start_ms`, a `long`, which cannot be a time field), four
visualizations and a dashboard. The state indices `<index>-state` match the pattern too, but
their documents have no `window_start`, so no time-filtered view ever shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

from .saved_objects_model import (
    Agg,
    DashboardAttributes,
    DashboardOptions,
    DashboardPanel,
    DateHistogramAgg,
    DateHistogramParams,
    GridData,
    IndexPattern,
    IndexPatternAttributes,
    MetricAgg,
    MetricParams,
    Query,
    Reference,
    SavedDashboard,
    SavedObjects,
    SavedSearchMeta,
    SearchSource,
    TermsAgg,
    TermsParams,
    VisState,
    Visualization,
    VisualizationAttributes,
)

INDEX_PATTERN_ID: Final = "metricpipe-metrics"
INDEX_PATTERN_TITLE: Final = "metricpipe-*"
DASHBOARD_ID: Final = "metricpipe-overview"
# field names of the metric documents (documents.py)
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


def build_window_axis(agg_id: str) -> DateHistogramAgg:
    """X axis: the windows' start time."""
    return DateHistogramAgg(id=agg_id, params=DateHistogramParams(field=TIME_FIELD))


def build_terms(
    agg_id: str, field: str, schema: Literal["group", "split"], size: int, row: bool | None = None
) -> TermsAgg:
    """Split by the top `size` values of `field`, ordered by the metric (agg "1")."""
    params = TermsParams(field=field, size=size, orderBy="1", row=row)
    return TermsAgg(id=agg_id, schema=schema, params=params)


def build_xy_params(chart: str, label: str, mode: str) -> dict[str, Any]:
    """The layout of a legacy line/bar ("histogram") chart with one value axis; the series
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
    vis_id: str, title: str, *, description: str, chart: Literal["line", "histogram"],
    label: str, aggs: Sequence[Agg], query: str = "", mode: str = "normal",
) -> Visualization:  # fmt: skip
    """A `chart` (line, or "histogram": bars) of `aggs` over the index pattern, which it
    references (`indexRefName`) rather than embedding its id; `query` is KQL."""
    state = VisState(
        title=title, type=chart, params=build_xy_params(chart, label, mode), aggs=list(aggs)
    )
    source = SearchSource(query=Query(query=query), indexRefName=SEARCH_REF)
    return Visualization(
        id=vis_id,
        attributes=VisualizationAttributes(
            title=title,
            description=description,
            visState=state,
            kibanaSavedObjectMeta=SavedSearchMeta(searchSourceJSON=source),
        ),
        references=[Reference(name=SEARCH_REF, type="index-pattern", id=INDEX_PATTERN_ID)],
    )


def build_index_pattern() -> IndexPattern:
    """The index pattern (Kibana: data view) over every pipeline's metric index."""
    attributes = IndexPatternAttributes(title=INDEX_PATTERN_TITLE, timeFieldName=TIME_FIELD)
    return IndexPattern(id=INDEX_PATTERN_ID, attributes=attributes)


def build_visualizations() -> list[Visualization]:
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
                MetricAgg(id="1", type="avg", params=MetricParams(field=VALUE_FIELD)),
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
                MetricAgg(id="1", type="sum", params=MetricParams(field=COUNT_FIELD)),
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
                MetricAgg(id="1", type="count"),
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
                MetricAgg(id="1", type="max", params=MetricParams(field=DELAY_FIELD)),
                build_window_axis("2"),
                build_terms("3", PIPELINE_FIELD, "group", 10),
            ],
            query=FINAL_ONLY,
        ),
    ]


def build_saved_dashboard(visualizations: Sequence[Visualization]) -> SavedDashboard:
    """A dashboard with the visualizations, two per row, referenced as `panel_<n>`."""
    panels, references = [], []
    for index, vis in enumerate(visualizations):
        ref, panel_index = f"panel_{index}", str(index + 1)
        grid = GridData(x=(index % 2) * 24, y=(index // 2) * 15, w=24, h=15, i=panel_index)
        panels.append(
            DashboardPanel(
                version=PANEL_VERSION, panelIndex=panel_index, gridData=grid, panelRefName=ref
            )
        )
        references.append(Reference(name=ref, type="visualization", id=vis.id))
    return SavedDashboard(
        id=DASHBOARD_ID,
        migrationVersion=DASHBOARD_MIGRATION,
        attributes=DashboardAttributes(
            title="metricpipe: metric documents",
            description="The metric documents metricpipe writes to the sink.",
            optionsJSON=DashboardOptions(),
            panelsJSON=panels,
            kibanaSavedObjectMeta=SavedSearchMeta(searchSourceJSON=SearchSource()),
        ),
        references=references,
    )


def build_saved_objects() -> SavedObjects:
    """Everything to import, referenced objects first."""
    visualizations = build_visualizations()
    return SavedObjects(
        objects=[build_index_pattern(), *visualizations, build_saved_dashboard(visualizations)]
    )
