"""The Grafana dashboard, built with grafana-foundation-sdk's typed builders.

One timeseries panel per question (freshness, time lag, lag, replicas, throughput, dead
letters), two per row, every query restricted to the pipelines of the `pipeline` variable;
the scaling events are an annotation on changes of the desired replicas. Every expression is
built from the constants of `names.py` and `rules.py`, never from a literal metric name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DashboardCursorSync,
    DataSourceRef,
    DynamicConfigValue,
    GridPos,
    VariableModel,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from metricpipe_contract import names
from metricpipe_exporters import rules

UID: Final = "metricpipe-pipelines"
DATASOURCE: Final = DataSourceRef(type_val="prometheus", uid="${datasource}")
PIPELINES: Final = '{pipeline=~"$pipeline"}'  # the selector every panel query carries
PIPELINE_VARIABLE_SERIES: Final = rules.INPUT_RATE  # exists as soon as a pipeline's topic does
SCALING_WINDOW: Final = "2m"  # > Grafana's default annotation step (60 s): no change is missed
PANEL_WIDTH: Final = 12
PANEL_HEIGHT: Final = 8

FRESHNESS_PANEL: Final = "Freshness vs target"
TIME_LAG_PANEL: Final = "Time lag"
LAG_PANEL: Final = "Lag (records)"
REPLICAS_PANEL: Final = "Consumer replicas"
THROUGHPUT_PANEL: Final = "Throughput: input vs processing"
DEAD_LETTER_PANEL: Final = "Dead letters"
SCALING_ANNOTATION: Final = "Scaling events"


@dataclass(frozen=True)
class Query:
    """One Prometheus query of a panel; `dashed` draws its series dashed (targets and desired
    values against the actual ones)."""

    ref_id: str
    expr: str
    legend: str
    dashed: bool = False


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]


def selected(metric: str) -> str:
    """`metric` restricted to the pipelines chosen in the `pipeline` variable."""
    return f"{metric}{PIPELINES}"


def build_panel_specs() -> list[PanelSpec]:
    """What each panel shows, in dashboard order."""
    dead_letters = selected(names.CONSUMER_DEAD_LETTER)
    by_reason = f"sum by (pipeline, reason) (rate({dead_letters}[$__rate_interval]))"
    return [
        PanelSpec(
            FRESHNESS_PANEL,
            "How far behind the sink is (the sink prober's measure, else the consumers'), "
            "against spec.freshness.target (dashed).",
            "s",
            (
                Query("A", selected(rules.FRESHNESS), "{{pipeline}}"),
                Query("B", selected(names.PIPELINE_FRESHNESS_TARGET), "{{pipeline}} target", True),
            ),
        ),
        PanelSpec(
            TIME_LAG_PANEL,
            "Age of the oldest record the consumer group has not processed (0 when caught up).",
            "s",
            (Query("A", selected(rules.TIME_LAG), "{{pipeline}}"),),
        ),
        PanelSpec(
            LAG_PANEL,
            "Records on the topic the consumer group has not processed yet.",
            "short",
            (Query("A", selected(rules.LAG_RECORDS), "{{pipeline}}"),),
        ),
        PanelSpec(
            REPLICAS_PANEL,
            "Consumer replicas that exist (status.replicas) and that the operator wants "
            "(status.desiredReplicas, dashed); the annotations mark its changes.",
            "short",
            (
                Query("A", selected(names.PIPELINE_REPLICAS), "{{pipeline}}"),
                Query("B", selected(names.PIPELINE_DESIRED_REPLICAS), "{{pipeline}} desired", True),
            ),
        ),
        PanelSpec(
            THROUGHPUT_PANEL,
            "Records per second arriving on the topic and processed by the consumers; "
            "freshness falls behind while the second stays below the first.",
            "cps",
            (
                Query("A", selected(rules.INPUT_RATE), "{{pipeline}} input"),
                Query("B", selected(rules.PROCESSING_RATE), "{{pipeline}} processing"),
            ),
        ),
        PanelSpec(
            DEAD_LETTER_PANEL,
            "Records per second sent to the dead-letter topic, by reason, and in total.",
            "cps",
            (
                Query("A", by_reason, "{{pipeline}} {{reason}}"),
                Query("B", selected(rules.DEAD_LETTER_RATE), "{{pipeline}} total"),
            ),
        ),
    ]


def build_scaling_expr() -> str:
    """The scaling-events annotation: a change of the desired replicas."""
    return f"changes({selected(names.PIPELINE_DESIRED_REPLICAS)}[{SCALING_WINDOW}]) > 0"


def build_panel(spec: PanelSpec, index: int) -> timeseries.Panel:
    """A timeseries panel at grid cell `index` (two per row)."""
    panel = (
        timeseries.Panel()
        .id(index + 1)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .grid_pos(
            GridPos(
                x=(index % 2) * PANEL_WIDTH,
                y=(index // 2) * PANEL_HEIGHT,
                w=PANEL_WIDTH,
                h=PANEL_HEIGHT,
            )
        )
        .unit(spec.unit)
        .min(0)
        .draw_style(common.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(0)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    for query in spec.queries:
        panel = panel.with_target(
            prometheus.Dataquery()
            .datasource(DATASOURCE)
            .expr(query.expr)
            .legend_format(query.legend)
            .range()
            .ref_id(query.ref_id)
        )
        if query.dashed:
            dash = common.LineStyle(fill="dash", dash=[10, 10])
            panel = panel.override_by_query(
                query.ref_id, [DynamicConfigValue(id_val="custom.lineStyle", value=dash)]
            )
    return panel


def build_variables() -> list[cogbuilder.Builder[VariableModel]]:
    """`datasource` (any Prometheus) and `pipeline` (multi-select, All by default)."""
    return [
        dashboard_builders.DatasourceVariable("datasource").label("Prometheus").type("prometheus"),
        dashboard_builders.QueryVariable("pipeline")
        .label("Pipeline")
        .datasource(DATASOURCE)
        .query(f"label_values({PIPELINE_VARIABLE_SERIES}, pipeline)")
        .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)  # pipelines come and go
        .sort(VariableSort.ALPHABETICAL_ASC),
    ]


def build_dashboard() -> Dashboard:
    """The Grafana dashboard (for Grafana's dashboard sidecar or a manual import)."""
    builder = (
        dashboard_builders.Dashboard("metricpipe pipelines")
        .uid(UID)
        .description("Freshness, lag, scaling, throughput and dead letters of MetricPipelines.")
        .tags(["metricpipe"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .variables(build_variables())
        .annotation(
            dashboard_builders.AnnotationQuery()
            .name(SCALING_ANNOTATION)
            .datasource(DATASOURCE)
            .enable(True)
            .hide(False)
            .icon_color("orange")
            .expr(build_scaling_expr())
        )
    )
    for index, spec in enumerate(build_panel_specs()):
        builder = builder.with_panel(build_panel(spec, index))
    return builder.build()


def to_json(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (plain dicts)."""
    encoded: dict[str, Any] = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    return encoded


def render(dashboard: Dashboard) -> str:
    return json.dumps(to_json(dashboard), indent=2, sort_keys=True) + "\n"


def panel_queries(model: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL) of every panel target of a dashboard's JSON model."""
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in model["panels"]
        for target in panel["targets"]
    ]


def annotation_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, PromQL) of every annotation with a Prometheus expression."""
    return [(a["name"], a["expr"]) for a in model["annotations"]["list"] if "expr" in a]


def pipeline_variable_series(model: dict[str, Any]) -> str:
    """The series the `pipeline` variable reads its values from."""
    (variable,) = [v for v in model["templating"]["list"] if v["name"] == "pipeline"]
    query: str = variable["query"]
    return query.removeprefix("label_values(").rsplit(",", 1)[0].strip()


def dashed_ref_ids(panel: dict[str, Any]) -> list[str]:
    """refIds whose series a panel draws dashed."""
    return [
        override["matcher"]["options"]
        for override in panel["fieldConfig"]["overrides"]
        if any(p["id"] == "custom.lineStyle" for p in override["properties"])
    ]


def titles(specs: Sequence[PanelSpec]) -> list[str]:
    return [spec.title for spec in specs]
