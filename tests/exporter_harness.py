"""Runs the lag exporter as a real process, registered with the stack's Prometheus (file_sd)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from helpers import free_port, wait_for
from metricpipe_contract import names
from metricpipe_devstack.env import StackEnv
from metricpipe_exporters.rules import build_file_sd

CYCLE_SECONDS = 1.0  # the exporter's collection interval in tests


@dataclass
class Exporter:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def families(self) -> dict[str, Any]:
        text = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return {f.name: f for f in text_string_to_metric_families(text)}


def register(stack: StackEnv, port: int, job: str, name: str) -> Path:
    path = stack.prometheus_file_sd_dir / f"{name}.json"
    path.write_text(json.dumps(build_file_sd([f"127.0.0.1:{port}"], job, {})))
    return path


def cache_env(stack: StackEnv) -> dict[str, str]:
    """The stack's Redis log cache as the exporter's own user (INFO only), so Prometheus
    scrapes the cache series (metricpipe_cache_*) from every exporter a test starts."""
    if stack.redis is None:
        return {}
    return {
        "METRICPIPE_REDIS_HOST": stack.redis.host,
        "METRICPIPE_REDIS_PORT": str(stack.redis.port),
        "METRICPIPE_REDIS_PASSWORD": stack.redis.password("exporter"),
    }


@pytest.fixture
def start_exporter(stack: StackEnv, tmp_path: Path) -> Iterator[Any]:
    """start(pipelines=[...]) watches those objects; start(namespace=NS) the cluster's."""
    started: list[tuple[Exporter, Path]] = []

    def start(
        pipelines: list[dict[str, Any]] | None = None, namespace: str | None = None
    ) -> Exporter:
        port, log = free_port(), tmp_path / f"exporter-{len(started)}.log"
        env = {
            **os.environ, "METRICPIPE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "METRICPIPE_ELASTICSEARCH_URL": stack.elasticsearch_url,
            "METRICPIPE_OPENSEARCH_URL": stack.opensearch_url,
            "METRICPIPE_EXPORTER_PORT": str(port),
            "METRICPIPE_EXPORTER_INTERVAL_SECONDS": str(CYCLE_SECONDS),
            "KUBECONFIG": str(stack.kubeconfig),
            **cache_env(stack),
        }  # fmt: skip
        if pipelines is not None:
            pipelines_file = tmp_path / f"pipelines-{len(started)}.yaml"
            pipelines_file.write_text(yaml.safe_dump(pipelines))
            env["METRICPIPE_EXPORTER_PIPELINES_FILE"] = str(pipelines_file)
        if namespace is not None:
            env["METRICPIPE_EXPORTER_NAMESPACE"] = namespace
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "metricpipe_exporters"], stdout=out,
                stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        exporter = Exporter(process, port, log)
        sd_file = register(stack, port, names.EXPORTER_JOB, f"exporter-{port}")
        started.append((exporter, sd_file))
        wait_for(lambda: _answers(exporter), 30, "the exporter's /metrics")
        return exporter

    yield start
    for exporter, sd_file in started:
        sd_file.unlink(missing_ok=True)
        exporter.process.terminate()
        exporter.process.wait(timeout=30)


def _answers(exporter: Exporter) -> bool:
    if exporter.process.poll() is not None:
        pytest.fail(f"the exporter exited:\n{exporter.log.read_text()[-3000:]}")
    try:
        return names.SCRAPE_SECONDS in exporter.families()
    except requests.RequestException:
        return False
