"""Prometheus is real: `up` through prometheus-api-client, and file_sd targets without restart."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from helpers import wait_for
from metricpipe_devstack.env import StackEnv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_up_is_queryable(stack: StackEnv) -> None:
    prom = PrometheusConnect(url=stack.prometheus_url, disable_ssl=True)
    result = prom.custom_query('up{job="prometheus"}')
    assert [sample["value"][1] for sample in result] == ["1"]


def test_file_sd_target_is_scraped(stack: StackEnv, unique_name: str) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("metricpipe_smoke_value", "A smoke-test value.", ["run"], registry=registry)
    gauge.labels(run=unique_name).set(42.5)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    target_file = stack.prometheus_file_sd_dir / f"{unique_name}.json"
    target_file.write_text(
        json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"smoke": unique_name}}])
    )
    prom = PrometheusConnect(url=stack.prometheus_url, disable_ssl=True)
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


def test_project_rules_are_loaded_and_healthy(stack: StackEnv) -> None:
    """The stack's Prometheus loads the rules the project renders; every rule evaluates."""

    def evaluated() -> list[dict[str, Any]]:
        groups = requests.get(f"{stack.prometheus_url}/api/v1/rules", timeout=10).json()
        ours = [g for g in groups["data"]["groups"] if g["name"].startswith("metricpipe")]
        rules = [rule for group in ours for rule in group["rules"]]
        done = len(ours) == 2 and all(r["lastEvaluation"].startswith("2") for r in rules)
        return rules if done else []

    rules = wait_for(evaluated, 60, "the project's rule groups to be evaluated")
    assert {r["name"] for r in rules} >= {"metricpipe:freshness:seconds", "ExporterDown"}
    assert [r["name"] for r in rules if r["health"] != "ok"] == []
