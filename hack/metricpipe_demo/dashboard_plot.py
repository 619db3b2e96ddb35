"""The demo's PNG: the Grafana dashboard's own panels drawn from its queries' results.

The builders are pure: `build_dashboard_plot` turns the dashboard's JSON model and the
QueryResults of its panel targets and annotation into plain data (one panel per dashboard
panel, with its title and unit; one line per series, labelled by the target's legendFormat;
the scaling events the annotation marks; the burst as a span), in seconds since the demo
started. `draw_dashboard_plot` draws that into a file and does nothing else.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metricpipe_dashboards.live import QueryResult, annotation_where, panel_where

from .dashboard_check import build_event_times

UNIT_LABELS = {"s": "seconds", "cps": "records/s", "short": ""}  # Grafana unit -> axis label
LEGEND_LINES = 8  # above this many lines in a panel, those at 0 throughout leave the legend
DASHED = "dash"  # Grafana's custom.lineStyle.fill of a dashed line


@dataclass(frozen=True)
class Line:
    label: str  # "": not in the legend
    pipeline: int  # index into DashboardPlot.pipelines (the line's colour)
    target: int  # index of the target in its panel (the colour's shade)
    dashed: bool  # the panel's override for the target says dashed
    points: tuple[tuple[float, float], ...]  # (seconds since the demo started, value)


@dataclass(frozen=True)
class Panel:
    title: str
    y_label: str
    lines: tuple[Line, ...]
    note: str = ""  # what the legend leaves out


@dataclass(frozen=True)
class DashboardPlot:
    title: str
    pipelines: tuple[str, ...]  # the pipeline keys, in colour order
    x_range: tuple[float, float]  # the demo: 0 to its end, seconds
    panels: tuple[Panel, ...]
    events: tuple[tuple[float, str], ...]  # (seconds since the demo started, pipeline key)
    event_label: str  # the annotation's name
    event_color: str  # the annotation's iconColor
    burst: tuple[float, float] | None  # seconds since the demo started


def render_legend(legend_format: str, labels: Mapping[str, str]) -> str:
    """Grafana's legendFormat: each `{{label}}` replaced by the series' value of it."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), legend_format).strip()


def find_dashed_targets(panel: Mapping[str, Any]) -> set[str]:
    """The refIds the panel's field overrides draw dashed (matcher byFrameRefID)."""
    dashed = set()
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        for prop in override.get("properties", []):
            style = prop.get("value")
            if (matcher.get("id") == "byFrameRefID" and prop.get("id") == "custom.lineStyle"
                    and isinstance(style, dict) and style.get("fill") == DASHED):  # fmt: skip
                dashed.add(matcher["options"])
    return dashed


def decide_y_label(panel: Mapping[str, Any]) -> str:
    unit: str = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    return UNIT_LABELS.get(unit, unit)


def build_lines(
    panel: Mapping[str, Any], results: Mapping[str, QueryResult], pipelines: Sequence[str],
    origin: float, namespace: str,
) -> tuple[Line, ...]:  # fmt: skip
    """One line per series of each of the panel's targets, labelled by the target's
    legendFormat (the namespace left off the pipeline; the refId when there is none and the
    panel has several targets)."""
    dashed = find_dashed_targets(panel)
    several = len(panel["targets"]) > 1
    lines = []
    for index, target in enumerate(panel["targets"]):
        result = results[panel_where(panel, target)]
        for labels, points in zip(result.series, result.values, strict=True):
            key = labels.get("pipeline", "")
            if key not in pipelines:
                continue
            short = {**labels, "pipeline": key.removeprefix(f"{namespace}/")}
            fallback = "{{pipeline}}" + (f" {target['refId']}" if several else "")
            label = render_legend(target.get("legendFormat") or fallback, short)
            shifted = tuple((at - origin, value) for at, value in points)
            lines.append(
                Line(label, pipelines.index(key), index, target["refId"] in dashed, shifted)
            )
    return tuple(lines)


def build_panel(
    panel: Mapping[str, Any], results: Mapping[str, QueryResult], pipelines: Sequence[str],
    origin: float, namespace: str,
) -> Panel:  # fmt: skip
    """The panel's lines; in a crowded panel the lines at 0 throughout (e.g. a dead-letter
    reason that never occurred) are drawn but left out of the legend, and the note counts them."""
    lines = build_lines(panel, results, pipelines, origin, namespace)
    if len(lines) <= LEGEND_LINES:
        return Panel(panel["title"], decide_y_label(panel), lines)
    flat = [line for line in lines if all(v == 0 for _, v in line.points)]
    shown = tuple(dataclasses.replace(line, label="") if line in flat else line for line in lines)
    note = f"{len(flat)} more series at 0 throughout" if flat else ""
    return Panel(panel["title"], decide_y_label(panel), shown, note)


def build_dashboard_plot(
    model: Mapping[str, Any], results: Sequence[QueryResult], *, server: str,
    pipelines: Sequence[str], namespace: str, start: float, end: float, step: int,
    burst: tuple[float, float] | None,
) -> DashboardPlot:  # fmt: skip
    """The plot of a dashboard's panels from `results` (run_grafana_queries on `server` over
    [start, end], the demo's run, UNIX seconds) for `pipelines` (keys `<namespace>/<name>`);
    burst: when the burst ran, UNIX seconds (None: no burst)."""
    by_where = {r.where: r for r in results}
    panels = tuple(build_panel(p, by_where, pipelines, start, namespace) for p in model["panels"])
    events: list[tuple[float, str]] = []
    label, color = "scaling events", "orange"
    for annotation in model["annotations"]["list"]:
        if "expr" not in annotation:
            continue  # Grafana's built-in annotations (none here)
        label, color = annotation["name"], annotation.get("iconColor", color)
        found = build_event_times(by_where[annotation_where(annotation)], step)
        events += [(at - start, key) for at, key in found if key in pipelines]
    span = None if burst is None else (burst[0] - start, burst[1] - start)
    title = (f"Grafana dashboard \"{model['title']}\": its panels' own queries on {server}, "
             f"namespace {namespace}")  # fmt: skip
    return DashboardPlot(title, tuple(pipelines), (0.0, end - start), panels,
                         tuple(sorted(events)), label, color, span)  # fmt: skip


def draw_dashboard_plot(plot: DashboardPlot, path: Path) -> None:
    """The panels two by two, as on the dashboard's grid; the burst shaded and the scaling
    events as vertical lines on every panel."""
    import matplotlib  # noqa: PLC0415 - only the end of the demo needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    palette = plt.get_cmap("tab20")  # pairs of a dark and a light shade of one colour
    rows = (len(plot.panels) + 1) // 2
    figure, axes = plt.subplots(rows, 2, figsize=(15, 3.8 * rows), sharex=True, squeeze=False)
    for axis, panel in zip(axes.flat, plot.panels, strict=False):
        for line in panel.lines:
            axis.plot([t for t, _ in line.points], [v for _, v in line.points],
                      color=palette((2 * line.pipeline + line.target % 2) % 20),
                      linestyle="--" if line.dashed else "-", linewidth=1,
                      label=line.label or None)  # fmt: skip
        if plot.burst is not None:
            axis.axvspan(*plot.burst, color="grey", alpha=0.15, label="burst")
        for number, (at, _) in enumerate(plot.events):
            axis.axvline(at, color=plot.event_color, linestyle=":", linewidth=1.2,
                         label=plot.event_label if number == 0 else None)  # fmt: skip
        axis.set_title(panel.title, fontsize="medium")
        axis.set_ylabel(panel.y_label)
        axis.set_xlim(*plot.x_range)
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize="x-small", ncol=2)
        if panel.note:
            axis.text(0.99, 0.02, panel.note, transform=axis.transAxes, ha="right",
                      fontsize="x-small", color="grey")  # fmt: skip
    for axis in axes.flat[len(plot.panels) :]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("seconds since the demo started")
    figure.suptitle(f"{plot.title}\n(shaded: the burst; dotted: {plot.event_label})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
