"""The demo's dashboard step, pure parts: the check that every panel shows every demo pipeline,
the plot data built from the dashboard's own query results, and the burst's wall-clock span."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from metricpipe_dashboards import cli, live
from metricpipe_demo.dashboard_check import (
    ANNOTATION as ANNOTATION_PREFIX,
)
from metricpipe_demo.dashboard_check import (
    build_event_times,
    check_result,
    decide_step,
    describe_check,
    describe_failures,
)
from metricpipe_demo.dashboard_plot import (
    build_dashboard_plot,
    draw_dashboard_plot,
    find_dashed_targets,
    render_legend,
)
from metricpipe_demo.replay import ReplayStats
from metricpipe_demo.schedule import Emission

DASHBOARD = (Path(__file__).resolve().parents[2] / "manifests" / "components" / "monitoring"
             / "dashboards" / cli.GRAFANA_FILE)  # fmt: skip
RTT, HTTP = "demo/avg-rtt", "demo/http-5xx-rate"
PIPELINES = (RTT, HTTP)
PANEL = "panel 'Time lag' A"
ANNOTATION = "annotation 'Scaling events'"


def result(
    where: str, *series: tuple[dict[str, str], list[tuple[float, float]]]
) -> live.QueryResult:
    return live.QueryResult(where, "expr", [labels for labels, _ in series],
                            sum(len(points) for _, points in series),
                            [points for _, points in series])  # fmt: skip


def of(pipeline: str, *values: float, **labels: str) -> tuple[dict[str, str], list[Any]]:
    return {"pipeline": pipeline, **labels}, [(100.0 + 10 * i, v) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("where", "series", "scaled", "missing", "notes"),
    [
        (PANEL, [of(RTT, 1, 2), of(HTTP, 3)], [], (), ()),
        (PANEL, [of(RTT, 1, 2)], [RTT], (HTTP,), ()),  # a panel must show every pipeline
        (PANEL, [], [], PIPELINES, ()),
        (PANEL, [of(RTT, 0, 0), of(HTTP, 0)], [], (),  # dead letters that never happened
         ("every value is 0: none of this happened during the run",)),
        (ANNOTATION, [of(RTT, 1)], [RTT], (),  # only avg-rtt scaled: nothing to mark for http
         (f"{HTTP}: no scaling Event in this run, so nothing to mark",)),
        (ANNOTATION, [], [RTT], (RTT,),  # an Event the annotation does not mark
         (f"{HTTP}: no scaling Event in this run, so nothing to mark",)),
        (ANNOTATION, [of(RTT, 1), of(HTTP, 1)], [RTT, HTTP], (), ()),
        (ANNOTATION, [of(HTTP, 1)], [], (),  # a change without an Event: shown, not required
         (f"{RTT}: no scaling Event in this run, so nothing to mark",)),
        (PANEL, [of("other/p", 1), of(RTT, 1), of(HTTP, 1)], [], (), ()),  # others ignored
    ],
)  # fmt: skip
def test_every_panel_target_must_show_every_demo_pipeline(
    where: str, series: list[Any], scaled: list[str], missing: tuple[str, ...],
    notes: tuple[str, ...],
) -> None:  # fmt: skip
    check = check_result("Prometheus 3.16.0", result(where, *series), PIPELINES, scaled)
    assert check.missing == missing
    assert check.notes == notes


def test_annotation_results_are_told_apart_by_the_prefix_live_gives_them() -> None:
    assert live.annotation_where({"name": "Scaling events"}) == ANNOTATION
    assert ANNOTATION.startswith(ANNOTATION_PREFIX)
    assert not live.panel_where({"title": "x"}, {"refId": "A"}).startswith(ANNOTATION_PREFIX)


def test_a_missing_series_is_reported_with_panel_pipeline_server_and_query() -> None:
    check = check_result("Prometheus 2.42.0", result(PANEL, of(RTT, 1, 2)), PIPELINES, [])
    assert describe_check(check) == (
        f"Prometheus 2.42.0 {PANEL}: 1 series, 2 samples; NO SERIES for {HTTP}"
    )
    assert describe_failures([check]) == [
        f"the dashboard's {PANEL} returned no series for pipeline {HTTP} on Prometheus 2.42.0 "
        "(query: expr)"
    ]


@pytest.mark.parametrize(
    ("start", "end", "step"), [(0, 700, 3), (0, 900, 3), (0, 901, 4), (0, 60, 1), (5, 5, 1)]
)
def test_the_step_gives_about_300_points(start: float, end: float, step: int) -> None:
    assert decide_step(start, end) == step


def test_each_run_of_annotation_points_is_one_scaling_event() -> None:
    points = [(100.0, 1.0), (105.0, 1.0), (110.0, 1.0), (300.0, 1.0), (305.0, 1.0)]
    found = result(ANNOTATION, ({"pipeline": RTT}, points), ({"pipeline": HTTP}, [(200.0, 2.0)]))
    assert build_event_times(found, step=5) == [(100.0, RTT), (200.0, HTTP), (300.0, RTT)]


def test_legend_format_and_dashed_targets_come_from_the_panel() -> None:
    assert render_legend("{{pipeline}} {{ reason }}", {"pipeline": "a", "reason": "late"}) == (
        "a late"
    )
    assert render_legend("{{pipeline}} target", {"pipeline": "a"}) == "a target"
    model = json.loads(DASHBOARD.read_text())
    dashed = {p["title"]: find_dashed_targets(p) for p in model["panels"]}
    assert dashed["Freshness vs target"] == {"B"}
    assert dashed["Consumer replicas"] == {"B"}
    assert dashed["Time lag"] == set()


def build_results(model: dict[str, Any]) -> list[live.QueryResult]:
    """A result for every query of the committed dashboard: both pipelines, plus one of
    another namespace; 12 dead-letter reasons at 0 and one that moved."""
    results = []
    for panel in model["panels"]:
        for target in panel["targets"]:
            series = [of(RTT, 1, 2), of(HTTP, 3, 4), of("other/p", 5)]
            if panel["title"] == "Dead letters" and target["refId"] == "A":
                series = [of(key, 0, 0, reason=f"r{n}") for key in PIPELINES for n in range(6)]
                series.append(of(HTTP, 0, 0.5, reason="malformed_line"))
            results.append(result(live.panel_where(panel, target), *series))
    (annotation,) = model["annotations"]["list"]
    results.append(result(live.annotation_where(annotation), of(RTT, 1, 1)))
    return results


def test_the_plot_is_the_dashboards_own_panels_drawn_from_the_query_results() -> None:
    model = json.loads(DASHBOARD.read_text())
    plot = build_dashboard_plot(
        model, build_results(model), server="Prometheus 2.42.0", pipelines=PIPELINES,
        namespace="demo", start=50.0, end=750.0, step=10, burst=(150.0, 270.0),
    )  # fmt: skip
    assert [p.title for p in plot.panels] == [p["title"] for p in model["panels"]]
    assert plot.x_range == (0.0, 700.0)
    assert plot.burst == (100.0, 220.0)  # seconds since the demo started
    assert plot.events == ((50.0, RTT),)  # the annotation's run of points, at its start
    assert (plot.event_label, plot.event_color) == ("Scaling events", "orange")
    freshness = {p.title: p for p in plot.panels}["Freshness vs target"]
    assert freshness.y_label == "seconds"
    assert [(line.label, line.pipeline, line.target, line.dashed) for line in freshness.lines] == [
        ("avg-rtt", 0, 0, False), ("http-5xx-rate", 1, 0, False),
        ("avg-rtt target", 0, 1, True), ("http-5xx-rate target", 1, 1, True),
    ]  # fmt: skip
    assert freshness.lines[0].points == ((50.0, 1.0), (60.0, 2.0))
    dead = {p.title: p for p in plot.panels}["Dead letters"]
    legend = [line.label for line in dead.lines if line.label]
    assert legend == ["http-5xx-rate malformed_line", "avg-rtt total", "http-5xx-rate total"]
    assert dead.note == "12 more series at 0 throughout"
    assert len(dead.lines) == 15  # drawn all the same


def test_the_plot_is_drawn_into_a_png(tmp_path: Path) -> None:
    model = json.loads(DASHBOARD.read_text())
    plot = build_dashboard_plot(
        model, build_results(model), server="Prometheus 2.42.0", pipelines=PIPELINES,
        namespace="demo", start=50.0, end=750.0, step=10, burst=None,
    )  # fmt: skip
    path = tmp_path / "demo" / "demo.png"
    draw_dashboard_plot(plot, path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_the_replay_records_when_its_burst_copies_were_sent() -> None:
    stats = ReplayStats()

    def sent(copy: int, now: float) -> None:
        stats.record_sent(("t",), Emission(now, "rtt", b"{}", None, 0.0, copy), now)

    sent(0, 10.0)
    assert stats.burst_sent is None  # real records only: no burst yet
    sent(1, 20.0)
    sent(0, 21.0)
    sent(3, 30.0)
    sent(0, 40.0)
    assert stats.burst_sent == (20.0, 30.0)


def test_query_results_carry_each_series_values(monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = [{"metric": {"pipeline": "it/a"}, "values": [[100, "1.5"], [105, "NaN"]]}]
    monkeypatch.setattr(live, "query_range", lambda *_: matrix)
    model = {"panels": [{"title": "T", "targets": [{"refId": "A", "expr": "x"}]}],
             "annotations": {"list": []}}  # fmt: skip
    (found,) = live.run_grafana_queries("http://p", model, 0, 1, live.Variables(("it/a",), 5))
    assert (found.where, found.series, found.samples) == ("panel 'T' A", [{"pipeline": "it/a"}], 2)
    assert found.values[0][0] == (100.0, 1.5)
    assert str(found.values[0][1][1]) == "nan"
