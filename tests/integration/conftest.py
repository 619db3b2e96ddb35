"""Session fixtures for the real local stack.

The stack described by `.stack/env` is reused when every server in it is healthy; otherwise the
fixture starts it (building and fetching what is missing) and stops exactly what it started at
the end of the session. Set METRICPIPE_KEEP_STACK=1 to leave a stack it started running.
Tests isolate themselves by unique names (namespace, topic, index), never by restarting servers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from metricpipe_devstack.env import StackEnv
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
    healthy = all(row["health"].startswith("healthy") for row in stack_status(settings))
    started = False
    if not (healthy and settings.env_file.exists()):
        _progress("== metricpipe: starting the local stack for the integration tests")
        stack_up(settings, echo=_progress)
        started = True
    env = StackEnv.from_entries(read_env_file(settings), settings.versions["KUBE_VERSION"])
    yield env
    if started and not os.environ.get("METRICPIPE_KEEP_STACK"):
        _progress("== metricpipe: stopping the local stack this session started")
        stack_down(settings, echo=_progress)


@pytest.fixture(scope="session")
def kube(stack: StackEnv) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(stack.kubeconfig))


@pytest.fixture
def namespace(kube: client.ApiClient, unique_name: str) -> Iterator[str]:
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=unique_name)))
    yield unique_name
    core.delete_namespace(unique_name)
