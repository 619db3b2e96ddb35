"""Every query of the generated Grafana dashboard is valid PromQL to the real Prometheus (with
the dashboard's variables filled in as Grafana would), and its pipeline variable's series is
one the local Prometheus computes (the project's recording rules are loaded there)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from metricpipe_devstack.env import StackEnv
from metricpipe_exporters import dashboards

VARIABLES = {"${datasource}": "prometheus", "$pipeline": ".*", "$__rate_interval": "1m",
             "$__interval": "15s", "$__range": "1h"}  # fmt: skip


def walk_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") == "datasource":  # a variable choosing the data source, no query
            return
        for key, value in node.items():
            if key in {"expr", "query"} and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and "query" in value:
                yield str(value["query"])
            else:
                yield from walk_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_exprs(item)


def filled(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


EXPRS = sorted(set(walk_exprs(dashboards.build_grafana_dashboard())))


def test_the_dashboard_has_queries() -> None:
    assert len(EXPRS) >= 8


@pytest.mark.parametrize("expr", [e for e in EXPRS if not e.startswith("label_values(")])
def test_prometheus_accepts_the_query(stack: StackEnv, expr: str) -> None:
    params: dict[str, str | int] = {"query": filled(expr), "start": 0, "end": 60, "step": 15}
    answer = requests.get(f"{stack.prometheus_url}/api/v1/query_range", timeout=10, params=params)
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["status"] == "success", body


def test_the_pipeline_variable_reads_a_recording_rule_prometheus_runs(stack: StackEnv) -> None:
    (variable,) = [e for e in EXPRS if e.startswith("label_values(")]
    series = variable.removeprefix("label_values(").split(",")[0].strip()
    rules = requests.get(f"{stack.prometheus_url}/api/v1/rules", timeout=10).json()
    recorded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]
                if r["type"] == "recording"}  # fmt: skip
    assert series in recorded
