"""Whether the Grafana dashboard shows the demo's pipelines (pure): each panel target's and the
annotation's query result from one Prometheus, checked for a series of every demo pipeline.

Every panel target must return a series for every pipeline (the dead-letter counters exist at
0 from a consumer's start, so that panel has flat series even when nothing was dead-lettered;
the line says so). The scaling annotation (`changes(desired replicas) > 0`) only has a series
for a pipeline whose desired replicas changed: it must mark the pipelines the operator's
ScaledUp/ScaledDown Events name, and for the others the line says why it has none.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from metricpipe_dashboards.live import QueryResult

ANNOTATION = "annotation "  # the prefix of an annotation's QueryResult.where (live.py)


@dataclass(frozen=True)
class TargetCheck:
    server: str  # e.g. "Prometheus 3.16.0"
    where: str  # "panel 'Time lag' A" or "annotation 'Scaling events'"
    expr: str  # the query as sent
    series: int
    samples: int
    missing: tuple[str, ...]  # demo pipelines that must have a series and have none
    notes: tuple[str, ...] = ()  # why a pipeline has no series, or what a flat line means


def decide_step(start: float, end: float, points: int = 300) -> int:
    """The query step in whole seconds that gives about `points` points over [start, end]."""
    return max(1, math.ceil((end - start) / points))


def check_result(
    server: str, result: QueryResult, pipelines: Collection[str], scaled: Collection[str]
) -> TargetCheck:
    """pipelines: the demo's pipeline keys (`<namespace>/<name>`); scaled: those the operator
    sent a scaling Event for during the run."""
    found = {labels.get("pipeline", "") for labels in result.series}
    notes: list[str] = []
    if result.where.startswith(ANNOTATION):
        expected = set(pipelines) & set(scaled)
        notes += [
            f"{p}: no scaling Event in this run, so nothing to mark"
            for p in sorted(set(pipelines) - expected - found)
        ]
    else:
        expected = set(pipelines)
        values = [v for series in result.values for _, v in series]
        if values and all(v == 0 for v in values):
            notes.append("every value is 0: none of this happened during the run")
    return TargetCheck(
        server, result.where, result.expr, len(result.series), result.samples,
        tuple(sorted(expected - found)), tuple(notes),
    )  # fmt: skip


def check_results(
    server: str, results: Sequence[QueryResult], pipelines: Collection[str],
    scaled: Collection[str],
) -> list[TargetCheck]:  # fmt: skip
    return [check_result(server, r, pipelines, scaled) for r in results]


def describe_check(check: TargetCheck) -> str:
    line = f"{check.server} {check.where}: {check.series} series, {check.samples} samples"
    if check.missing:
        line += f"; NO SERIES for {', '.join(check.missing)}"
    return "; ".join([line, *check.notes])


def describe_failures(checks: Sequence[TargetCheck]) -> list[str]:
    """One message per target and pipeline without a series, naming the panel, the pipeline,
    the server and the query."""
    return [
        f"the dashboard's {check.where} returned no series for pipeline {pipeline} on "
        f"{check.server} (query: {check.expr})"
        for check in checks
        for pipeline in check.missing
    ]


def build_event_times(result: QueryResult, step: int) -> list[tuple[float, str]]:
    """(UNIX time, pipeline) of each scaling event the annotation marks: the query holds while
    a change is within its range, so each run of consecutive points is one event, at the run's
    first point (a gap longer than one step starts a new run)."""
    events = []
    for labels, points in zip(result.series, result.values, strict=True):
        previous: float | None = None
        for at, _ in points:
            if previous is None or at - previous > step:
                events.append((at, labels.get("pipeline", "")))
            previous = at
    return sorted(events)
