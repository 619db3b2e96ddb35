"""Session fixtures for the real local stack.

The stack described by `.stack/env` is reused when every server in it is healthy; otherwise the
fixture starts it (building and fetching what is missing) and stops exactly what it started at
the end of the session. Set METRICPIPE_KEEP_STACK=1 to leave a stack it started running.
Tests isolate themselves by unique names (namespace, topic, index), never by restarting servers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import requests
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from consumers import ConsumerProcesses
from helpers import free_port, wait_for
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.module_crds import FLUENT_OPERATOR, PROMETHEUS_OPERATOR, fetch_module_crds
from metricpipe_devstack.settings import StackSettings
from metricpipe_devstack.stack import read_env_file, stack_down, stack_status, stack_up


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[StackEnv]:
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def _progress(line: str) -> None:
        # Progress of a minutes-long start must reach the terminal despite output capture.
        with capture.global_and_fixture_disabled():
            print(line, file=sys.stderr, flush=True)

    settings = StackSettings()
    rows = stack_status(settings)
    healthy = all(row["health"].startswith("healthy") for row in rows)
    # stopped at the end only when this session started it from nothing: servers that ran
    # before (a developer's stack missing one new component) keep running
    started = False
    if not (healthy and settings.env_file.exists()):
        _progress("== metricpipe: starting the local stack for the integration tests")
        stack_up(settings, echo=_progress)
        started = not any(row["health"].startswith("healthy") for row in rows)
    env = StackEnv.from_entries(read_env_file(settings), settings.versions["KUBE_VERSION"])
    yield env
    if started and not os.environ.get("METRICPIPE_KEEP_STACK"):
        _progress("== metricpipe: stopping the local stack this session started")
        stack_down(settings, echo=_progress)


@pytest.fixture(scope="session")
def kube(stack: StackEnv) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(config_file=str(stack.kubeconfig))
    return api


@pytest.fixture
def namespace(kube: client.ApiClient, unique_name: str) -> Iterator[str]:
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=unique_name)))
    yield unique_name
    core.delete_namespace(unique_name)


# -- the MetricPipeline CRD, fluent-operator's CRDs and the operator process -------------------

REPO = Path(__file__).resolve().parents[1]


def _apply_crd(kube: client.ApiClient, body: dict[str, Any]) -> None:
    extensions = client.ApiextensionsV1Api(kube)
    name = body["metadata"]["name"]
    try:
        current = extensions.read_custom_resource_definition(name)
        assert current.metadata is not None
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(name, cast(Any, body))
    except ApiException as error:
        if error.status != 404:
            raise
        extensions.create_custom_resource_definition(cast(Any, body))

    def established() -> bool:
        status = extensions.read_custom_resource_definition(name).status
        assert status is not None
        conditions = status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, what=f"CRD {name} Established")


@pytest.fixture(scope="session")
def metricpipeline_crd(kube: client.ApiClient) -> None:
    _apply_crd(
        kube, yaml.safe_load((REPO / "crds" / "metricpipelines.metricpipe.io.yaml").read_text())
    )


@pytest.fixture(scope="session")
def logarchive_crd(kube: client.ApiClient) -> None:
    _apply_crd(kube, yaml.safe_load((REPO / "crds" / "logarchives.metricpipe.io.yaml").read_text()))


@pytest.fixture(scope="session")
def fluent_operator_crds(kube: client.ApiClient) -> None:
    for path in fetch_module_crds(StackSettings(), FLUENT_OPERATOR):
        _apply_crd(kube, yaml.safe_load(path.read_text()))


@pytest.fixture(scope="session")
def prometheus_operator_crds(kube: client.ApiClient) -> None:
    """PodMonitor, ServiceMonitor and PrometheusRule, as prometheus-operator defines them."""
    for path in fetch_module_crds(StackSettings(), PROMETHEUS_OPERATOR):
        _apply_crd(kube, yaml.safe_load(path.read_text()))


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(timeout=30)


@pytest.fixture
def start_operator(
    stack: StackEnv, metricpipeline_crd: None, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start `python -m metricpipe_operator` for one namespace, as a real process."""
    started: list[OperatorProcess] = []

    def start(namespace: str, **env: str) -> OperatorProcess:
        port = free_port()
        log_path = tmp_path / f"operator-{len(started)}.log"
        process_env = {
            **os.environ,
            "KUBECONFIG": str(stack.kubeconfig),
            "METRICPIPE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "METRICPIPE_ELASTICSEARCH_URL": stack.elasticsearch_url,
            "METRICPIPE_OPENSEARCH_URL": stack.opensearch_url,
            "METRICPIPE_KAFKA_TIMEOUT_SECONDS": "5",
            "METRICPIPE_RETRY_MIN_SECONDS": "2",
            **env,
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "metricpipe_operator", "--namespace", namespace,
                 "--liveness", f"http://127.0.0.1:{port}/healthz"],
                stdout=log, stderr=subprocess.STDOUT, env=process_env,
            )  # fmt: skip
        operator = OperatorProcess(process, log_path)
        started.append(operator)

        def live() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"operator exited:\n{operator.log()}")
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(live, timeout=60, what="operator liveness")
        return operator

    yield start
    for operator in started:
        operator.stop()


@pytest.fixture
def processes(stack: StackEnv, tmp_path: Path) -> Iterator[ConsumerProcesses]:
    """Consumer processes started by a test; all stopped (SIGTERM, then SIGKILL) at its end.
    They map the stack's archive of Spark's classes, as the image's consumers map theirs."""
    procs = ConsumerProcesses(tmp_path, stack.spark_class_archive)
    yield procs
    procs.stop_all()
