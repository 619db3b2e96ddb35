"""Runs the development node agent as a real process against the stack's API server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import wait_for
from metricpipe_devstack.env import StackEnv

NODE = "metricpipe-dev-node"


@dataclass
class NodeAgentProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    work_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        (directory,) = self.work_dir.glob(f"{namespace}_{pod}_*")
        return (directory / "logs" / f"{container}.log").read_text(errors="replace")


def node_ready(kube: client.ApiClient) -> bool:
    try:
        node = client.CoreV1Api(kube).read_node(NODE)
    except ApiException:
        return False
    conditions = {c.type: c.status for c in node.status.conditions or []}
    return conditions.get("Ready") == "True"


@pytest.fixture
def node_agent(
    stack: StackEnv, kube: client.ApiClient, tmp_path: Path
) -> Iterator[NodeAgentProcess]:
    """The agent, its Node Ready; at the end: SIGTERM (it stops its pods' processes) and the Node
    deleted, so the scheduler never binds a later test's pod to a node nobody runs."""
    work_dir = tmp_path / "nodeagent"
    log_path = tmp_path / "nodeagent.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(stack.kubeconfig),
        "METRICPIPE_NODEAGENT_WORK_DIR": str(work_dir),
        "PROMETHEUS_FILE_SD_DIR": str(stack.prometheus_file_sd_dir),
    }
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "metricpipe_nodeagent"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    agent = NodeAgentProcess(process, log_path, work_dir)
    try:
        wait_for(lambda: process.poll() is None and node_ready(kube), 60, "the node Ready")
        yield agent
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
        try:
            client.CoreV1Api(kube).delete_node(NODE)
        except ApiException as error:
            if error.status != 404:
                raise
