"""The demo's dashboard step (I/O shell): the committed Grafana dashboard's panel queries and
its annotation run against both of the stack's Prometheus servers over the whole demo, for the
demo's pipelines, checked (dashboard_check.py) and drawn from Prometheus 2's answers
(dashboard_plot.py) into `.stack/demo/demo.png`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import requests

from metricpipe_contract.durations import parse_duration
from metricpipe_dashboards import cli, live
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.prometheus import SCRAPE_INTERVAL

from .dashboard_check import check_results, decide_step, describe_check, describe_failures
from .dashboard_plot import build_dashboard_plot, draw_dashboard_plot

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "manifests" / "components" / "monitoring" / "dashboards" / cli.GRAFANA_FILE


def fetch_server_name(url: str) -> str:
    """`Prometheus <version>` from the server's build information."""
    answer = requests.get(f"{url}/api/v1/status/buildinfo", timeout=live.TIMEOUT)
    answer.raise_for_status()
    return f"Prometheus {answer.json()['data']['version']}"


def run_dashboard_step(
    env: StackEnv, *, namespace: str, names: Sequence[str], started: float,
    burst: tuple[float, float] | None, scaled: Sequence[str], plot: Path,
    say: Callable[[str], None],
) -> list[str]:  # fmt: skip
    """Query, print one line per panel target (and the annotation) per server, draw the PNG;
    the failures (a target without a series for a demo pipeline), empty when there is none.

    started: the demo's start (UNIX seconds), the queries' start; burst: when the burst ran
    (UNIX seconds); scaled: the names of the pipelines the operator sent a scaling Event for."""
    model = json.loads(DASHBOARD.read_text())
    keys = [f"{namespace}/{name}" for name in names]
    end = time.time()
    step = decide_step(started, end)
    variables = live.Variables(tuple(keys), step, int(parse_duration(SCRAPE_INTERVAL)))
    say(
        f"   {DASHBOARD.relative_to(REPO)}: {len(model['panels'])} panels and the annotation, "
        f"over the demo's {end - started:.0f} s at a {step} s step, for {', '.join(keys)}"
    )
    if not env.prometheus3_url:
        return ["`.stack/env` names no PROMETHEUS3_URL: run `make stack-up` again"]
    failures: list[str] = []
    answers: list[tuple[str, list[live.QueryResult]]] = []
    scaled_keys = [f"{namespace}/{name}" for name in scaled]
    for url in (env.prometheus_url, env.prometheus3_url):
        server = fetch_server_name(url)
        answers.append((server, live.run_grafana_queries(url, model, started, end, variables)))
        checks = check_results(server, answers[-1][1], keys, scaled_keys)
        for check in checks:
            say(f"   {describe_check(check)}")
        failures += describe_failures(checks)
    server, drawn = answers[0]  # Prometheus 2's
    figure = build_dashboard_plot(model, drawn, server=server, pipelines=keys,
                                  namespace=namespace, start=started, end=end, step=step,
                                  burst=burst)  # fmt: skip
    draw_dashboard_plot(figure, plot)
    return failures
