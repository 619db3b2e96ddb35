"""Prometheus is real, in both versions the stack runs (Debian's 2.x and 3.x built from its Go
module, the same targets and rules): `up` through prometheus-api-client, file_sd targets without
restart, and the project's rules loaded and healthy."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from helpers import wait_for
from metricpipe_devstack.env import StackEnv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["2", "3"], ids=["prometheus2", "prometheus3"])
def prometheus_url(request: pytest.FixtureRequest, stack: StackEnv) -> str:
    """The base URL of the stack's Prometheus of that major version (checked by its build info)."""
    url = stack.prometheus_url if request.param == "2" else stack.prometheus3_url
    if url is None:
        pytest.fail(".stack/env names no PROMETHEUS3_URL: run `make stack-up` again")
    info = requests.get(f"{url}/api/v1/status/buildinfo", timeout=10).json()
    assert info["data"]["version"].startswith(f"{request.param}."), info
    return url


def test_up_is_queryable(prometheus_url: str) -> None:
    prom = PrometheusConnect(url=prometheus_url, disable_ssl=True)
    result = prom.custom_query('up{job="prometheus"}')
    assert [sample["value"][1] for sample in result] == ["1"]


def test_file_sd_target_is_scraped(stack: StackEnv, prometheus_url: str, unique_name: str) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("metricpipe_smoke_value", "A smoke-test value.", ["run"], registry=registry)
    gauge.labels(run=unique_name).set(42.5)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    target_file = stack.prometheus_file_sd_dir / f"{unique_name}.json"
    target_file.write_text(
        json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"smoke": unique_name}}])
    )
    prom = PrometheusConnect(url=prometheus_url, disable_ssl=True)
    try:
        deadline = time.monotonic() + 45
        values: list[str] = []
        while time.monotonic() < deadline and not values:
            found = prom.custom_query(f'metricpipe_smoke_value{{run="{unique_name}"}}')
            values = [sample["value"][1] for sample in found]
            time.sleep(1)
        assert values == ["42.5"]
    finally:
        target_file.unlink()
        server.shutdown()
        thread.join(timeout=5)


def test_project_rules_are_loaded_and_healthy(prometheus_url: str) -> None:
    """The stack's Prometheus loads the rules the project renders; every rule evaluates."""

    def evaluated() -> list[dict[str, Any]]:
        groups = requests.get(f"{prometheus_url}/api/v1/rules", timeout=10).json()
        ours = [g for g in groups["data"]["groups"] if g["name"].startswith("metricpipe")]
        rules = [rule for group in ours for rule in group["rules"]]
        done = len(ours) == 2 and all(r["lastEvaluation"].startswith("2") for r in rules)
        return rules if done else []

    rules = wait_for(evaluated, 60, "the project's rule groups to be evaluated")
    assert {r["name"] for r in rules} >= {"metricpipe:freshness:seconds", "ExporterDown"}
    assert [r["name"] for r in rules if r["health"] != "ok"] == []
