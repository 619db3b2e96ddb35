"""The real node: a kubelet on containerd + runc with the CNI bridge, registered with the stack.

Evidence comes from the machine, not from the API alone: the container's process as the
kernel shows it (/proc: network namespace, limits, cgroup), `ip netns`, containerd's own
listing (`ctr`), and the namespace's addresses as `ip` reports them inside it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import wait_for
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.settings import StackSettings
from metricpipe_devstack.stack import read_env_file

PAUSE = "localhost/metricpipe/pause:3.10"
TAINT_KEY = "metricpipe.io/dev-node"
MEMORY_LIMIT = 32 * 1024 * 1024


@pytest.fixture(scope="module")
def settings() -> StackSettings:
    return StackSettings()


@pytest.fixture(scope="module")
def ctr(stack: StackEnv, settings: StackSettings) -> list[str]:
    address = read_env_file(settings).get("CONTAINERD_ADDRESS")
    assert address, ".stack/env has no CONTAINERD_ADDRESS: the stack runs without the real node"
    return ["ctr", "--address", address, "--namespace", "k8s.io"]


def _ctr_ids(ctr: list[str], kind: str) -> set[str]:
    out = subprocess.run([*ctr, kind, "list", "-q"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _named_netns() -> dict[int, str]:
    """inode of each `ip netns` namespace -> its name."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    inodes = {}
    for name in names:
        for directory in ("/run/netns", "/var/run/netns"):
            path = Path(directory) / name
            if path.exists():
                inodes[path.stat().st_ino] = name
                break
    return inodes


def test_node_is_ready_with_its_address_and_taint(
    kube: client.ApiClient, stack: StackEnv, settings: StackSettings
) -> None:
    node = client.CoreV1Api(kube).read_node(settings.node_name)
    status = node.status
    assert status is not None
    assert status.conditions is not None
    ready = {c.type: c.status for c in status.conditions}
    assert ready["Ready"] == "True"
    assert status.addresses is not None
    addresses = {a.type: a.address for a in status.addresses}
    assert addresses["InternalIP"] == settings.host_address == "10.77.0.1"
    assert node.spec is not None
    assert any(
        t.key == TAINT_KEY and t.value == "local" and t.effect == "NoSchedule"
        for t in node.spec.taints or []
    )
    info = status.node_info
    assert info is not None
    assert info.kubelet_version == stack.kube_version_expected
    assert info.container_runtime_version.startswith("containerd://1.6")
    assert status.allocatable is not None
    assert int(status.allocatable["pods"]) == 40


@pytest.fixture
def pause_pod(kube: client.ApiClient, namespace: str, unique_name: str) -> str:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": unique_name},
        "spec": {
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists"}],
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "pause",
                    "image": PAUSE,
                    "imagePullPolicy": "Never",
                    "resources": {
                        "limits": {"memory": str(MEMORY_LIMIT), "cpu": "50m"},
                    },
                }
            ],
        },
    }
    client.CoreV1Api(kube).create_namespaced_pod(namespace, cast(Any, body))
    return unique_name


def test_a_pod_runs_in_a_container_with_its_own_network_namespace(
    kube: client.ApiClient,
    namespace: str,
    pause_pod: str,
    ctr: list[str],
    settings: StackSettings,
) -> None:
    core = client.CoreV1Api(kube)

    def running() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(pause_pod, namespace)
        assert pod.status is not None
        return pod if pod.status.phase == "Running" and pod.status.pod_ip else None

    pod = wait_for(running, timeout=90, what=f"pod {pause_pod} Running")
    assert pod.status is not None
    assert pod.status.pod_ip is not None
    assert pod.spec is not None
    pod_ip = ipaddress.ip_address(pod.status.pod_ip)
    assert pod_ip in ipaddress.ip_network(settings.pod_cidr)  # so of the network's IP version
    assert int(pod_ip) >= int(ipaddress.ip_network(settings.pod_cidr).network_address + 10)
    assert pod.spec.node_name == settings.node_name
    assert pod.status.host_ip == settings.host_address

    # containerd runs it: its task is in the runtime's own listing, with a live process
    assert pod.status.container_statuses is not None
    first = pod.status.container_statuses[0]
    assert first.container_id is not None
    container_id = first.container_id.removeprefix("containerd://")
    assert container_id in _ctr_ids(ctr, "tasks")
    info = subprocess.run(
        [*ctr, "tasks", "ps", container_id], capture_output=True, text=True, check=True
    )
    pid = int(info.stdout.splitlines()[1].split()[0])

    # its network namespace is a named one (ip netns), and holds the pod IP
    netns_inode = os.stat(f"/proc/{pid}/ns/net").st_ino
    assert netns_inode != os.stat("/proc/self/ns/net").st_ino
    netns = _named_netns()
    assert netns_inode in netns, f"the pod's netns is not among `ip netns` {sorted(netns.values())}"
    name = netns[netns_inode]
    addrs = subprocess.run(
        ["ip", "netns", "exec", name, "ip", "-j", "addr", "show", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    )
    inside = {a["local"] for a in json.loads(addrs.stdout)[0]["addr_info"]}
    assert str(pod_ip) in inside
    routes = subprocess.run(
        ["ip", "netns", "exec", name, "ip", "-j", "route"], capture_output=True, text=True
    )
    assert not [r for r in json.loads(routes.stdout) if r["dst"] == "default"]  # no way out

    # the kernel enforces the limit (cgroup v1 memory controller) and the machine's rlimits
    memory_path = next(
        line.split(":", 2)[2]
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        if line.split(":")[1] == "memory"
    )
    limit = Path(f"/sys/fs/cgroup/memory{memory_path}/memory.limit_in_bytes").read_text()
    assert int(limit) == MEMORY_LIMIT
    limits = Path(f"/proc/{pid}/limits").read_text()
    nofile = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert int(nofile.split()[4]) <= 20000  # hard limit: never above the machine's

    # the API server reaches the kubelet (logs go over its TLS port, verified against the CA)
    assert core.read_namespaced_pod_log(pause_pod, namespace) == ""

    # deleting the pod removes the container and its network namespace
    core.delete_namespaced_pod(pause_pod, namespace, grace_period_seconds=0)

    def gone() -> bool:
        try:
            core.read_namespaced_pod(pause_pod, namespace)
        except ApiException as error:
            return bool(error.status == 404)
        return False

    wait_for(gone, timeout=60, what=f"pod {pause_pod} deleted")
    wait_for(
        lambda: container_id not in _ctr_ids(ctr, "containers"),
        timeout=120,  # the kubelet's container GC removes dead containers once a minute
        what="the container removed from containerd",
    )
    wait_for(
        lambda: name not in _named_netns().values(),
        timeout=60,
        what=f"netns {name} removed",
    )
