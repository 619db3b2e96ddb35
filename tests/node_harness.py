"""The stack's real node (kubelet + containerd + runc) as the tests see it: the Node Ready, the
kubelet's log, containers' logs through the API server (`kubectl logs`), and what the host sees
of a container's process (/proc/<pid>/status)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import wait_for
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.settings import StackSettings

TOLERATION = {"key": "metricpipe.io/dev-node", "operator": "Exists", "effect": "NoSchedule"}


@dataclass
class Node:
    name: str
    kube: client.ApiClient
    settings: StackSettings

    def log(self) -> str:
        """The tail of the kubelet's log."""
        path = self.settings.log_dir / "kubelet.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no kubelet log)"

    def container_log(
        self, namespace: str, pod: str, container: str, *, previous: bool = False
    ) -> str:
        """What `kubectl logs` gives: the API server asks the kubelet."""
        try:
            return str(
                client.CoreV1Api(self.kube).read_namespaced_pod_log(
                    pod, namespace, container=container, previous=previous, timestamps=False
                )
            )
        except ApiException as error:
            return f"(no log: {error.status} {error.reason})"

    def ctr(self, *args: str) -> str:
        """containerd's own CLI on the stack's socket, in the kubelet's namespace."""
        socket = os.environ.get("CONTAINERD_ADDRESS") or str(
            self.settings.node_run_dir / "containerd.sock"
        )
        result = subprocess.run(
            ["ctr", "--address", socket, "-n", "k8s.io", *args],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return result.stdout

    def container_pid(self, namespace: str, pod: str, container: str) -> int:
        """The host pid of a running container's main process, from containerd's task list
        (the container id is the one the kubelet reports in the pod's status)."""
        status = client.CoreV1Api(self.kube).read_namespaced_pod(pod, namespace).status
        assert status is not None
        (found,) = [c for c in status.container_statuses or [] if c.name == container]
        container_id = str(found.container_id).split("://", 1)[1]
        for line in self.ctr("tasks", "ls").splitlines()[1:]:  # TASK PID STATUS
            fields = line.split()
            if fields and fields[0] == container_id:
                return int(fields[1])
        raise LookupError(f"no running task for {namespace}/{pod}/{container} ({container_id})")


def node_ready(kube: client.ApiClient, name: str) -> bool:
    try:
        node = client.CoreV1Api(kube).read_node(name)
    except ApiException:
        return False
    assert node.status is not None
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


@pytest.fixture
def node(stack: StackEnv, kube: client.ApiClient) -> Node:
    """The stack's node, Ready (the stack starts it with the servers)."""
    settings = StackSettings()
    name = os.environ.get("METRICPIPE_NODE_NAME", settings.node_name)
    wait_for(lambda: node_ready(kube, name), 120, f"Node {name} Ready")
    return Node(name, kube, settings)


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict (Uid, Gid, CapEff, CapPrm, NoNewPrivs, Seccomp, ...)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def set_unschedulable(kube: client.ApiClient, name: str, unschedulable: bool) -> None:
    """`kubectl cordon` / `uncordon`."""
    client.CoreV1Api(kube).patch_node(name, {"spec": {"unschedulable": unschedulable}})


@pytest.fixture
def cordoned_node(node: Node) -> Iterator[Node]:
    """The node cordoned (no new pod is scheduled) until the test uncordons it; uncordoned at
    the end whatever happens, so that later tests get a node."""
    set_unschedulable(node.kube, node.name, True)
    try:
        yield node
    finally:
        set_unschedulable(node.kube, node.name, False)
