"""The development node agent with the real API server, controller-manager and scheduler:
Deployments scale into exactly the right local processes, crashes restart, deletion honours the
grace period, the taint keeps other pods off."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import wait_for
from nodeagent_harness import NODE, NodeAgentProcess

TOLERATION = {"key": "metricpipe.io/dev-node", "operator": "Exists", "effect": "NoSchedule"}
# The container: prints its pod name, answers SIGTERM after EXIT_DELAY s (or ignores it).
SCRIPT = """
import os, signal, sys, time
def term(*_):
    print("SIGTERM received", flush=True)
    time.sleep(float(os.environ.get("EXIT_DELAY", "0.2")))
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if os.environ.get("IGNORE_TERM") else term)
print("started", os.environ["POD_NAME"], flush=True)
while True:
    time.sleep(1)
"""


def build_pod_spec(
    marker: str, grace: int = 10, tolerate: bool = True, **env: str
) -> dict[str, Any]:
    return {
        "terminationGracePeriodSeconds": grace,
        "tolerations": [TOLERATION] if tolerate else [],
        "containers": [
            {
                "name": "main",
                "image": "ghcr.io/metricpipe/consumer:dev",
                "command": ["python", "-c", SCRIPT, marker],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    *({"name": k, "value": v} for k, v in env.items()),
                ],
            }
        ],
    }


def build_deployment(name: str, marker: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": build_pod_spec(marker)},
        },
    }


def local_processes(marker: str) -> dict[int, str]:
    """pid -> POD_NAME of every process whose command line carries `marker`."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if marker.encode() not in argv:
                continue
            environ = dict(
                item.split(b"=", 1)
                for item in (entry / "environ").read_bytes().split(b"\0")
                if b"=" in item
            )
        except OSError:
            continue
        found[int(entry.name)] = environ.get(b"POD_NAME", b"").decode()
    return found


def running_pods(kube: client.ApiClient, namespace: str) -> set[str]:
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace).items
    return {p.metadata.name for p in pods if p.status.phase == "Running"}


def scale(kube: client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    client.AppsV1Api(kube).patch_namespaced_deployment_scale(
        name, namespace, {"spec": {"replicas": replicas}}
    )


def test_deployment_scales_into_exactly_the_right_local_processes(
    kube: client.ApiClient, namespace: str, unique_name: str, node_agent: NodeAgentProcess
) -> None:
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, build_deployment("sleeper", unique_name, 0))
    time.sleep(3)
    assert local_processes(unique_name) == {}
    for replicas in (3, 1):
        scale(kube, namespace, "sleeper", replicas)

        def matches(replicas: int = replicas) -> bool:
            processes = local_processes(unique_name)
            pods = running_pods(kube, namespace)
            return len(processes) == replicas and set(processes.values()) == pods

        wait_for(matches, 60, f"{replicas} local processes, one per running pod")
        ready = wait_for(
            lambda r=replicas: (
                apps.read_namespaced_deployment(  # type: ignore[misc]
                    "sleeper", namespace
                ).status.ready_replicas
                == r
            ),
            30,
            f"{replicas} ready replicas",
        )
        assert ready
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace).items
    assert {p.spec.node_name for p in pods} == {NODE}


def test_a_killed_container_is_restarted_and_counted(
    kube: client.ApiClient, namespace: str, unique_name: str, node_agent: NodeAgentProcess
) -> None:
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, build_deployment("crashy", unique_name, 1))
    ((pid, pod),) = wait_for(lambda: local_processes(unique_name).items(), 60, "the process")  # type: ignore[misc]
    core = client.CoreV1Api(kube)
    for round_ in (1, 2):
        os.kill(pid, signal.SIGKILL)

        def restarted(round_: int = round_) -> Any:
            status = core.read_namespaced_pod(pod, namespace).status
            processes = local_processes(unique_name)
            counts = [c.restart_count for c in status.container_statuses or []]
            return counts == [round_] and list(processes.values()) == [pod] and processes

        processes = wait_for(restarted, 90, f"restart #{round_} in the pod status")
        (pid,) = processes
    status = core.read_namespaced_pod(pod, namespace).status
    (container,) = status.container_statuses
    assert container.last_state.terminated.exit_code == 137  # 128 + SIGKILL, as a kubelet says
    assert status.phase == "Running"


def test_deletion_sends_sigterm_and_sigkill_after_the_grace_period(
    kube: client.ApiClient, namespace: str, unique_name: str, node_agent: NodeAgentProcess
) -> None:
    core = client.CoreV1Api(kube)
    for name, grace, env in (("polite", 20, {}), ("stubborn", 3, {"IGNORE_TERM": "1"})):
        body = {
            "metadata": {"name": name},
            "spec": build_pod_spec(f"{unique_name}-{name}", grace, **env),
        }
        core.create_namespaced_pod(namespace, body)
    for name in ("polite", "stubborn"):
        wait_for(lambda n=name: local_processes(f"{unique_name}-{n}"), 60, f"{name} running")  # type: ignore[misc]
        wait_for(
            lambda n=name: f"started {n}" in node_agent.container_log(namespace, n, "main"),
            30,  # type: ignore[misc]
            f"{name}'s signal handler installed",
        )
    for name, grace, lower in (("polite", 20, 0.0), ("stubborn", 3, 2.5)):
        started = time.monotonic()
        core.delete_namespaced_pod(name, namespace)
        wait_for(
            lambda n=name: not local_processes(f"{unique_name}-{n}"), grace + 10, f"{name} gone"
        )  # type: ignore[misc]
        took = time.monotonic() - started
        assert lower <= took <= grace + 3, (
            f"{name}: process gone after {took:.1f}s (grace {grace}s)"
        )
        log = node_agent.container_log(namespace, name, "main")
        assert ("SIGTERM received" in log.splitlines()) is (name == "polite"), log

        def deleted(n: str = name) -> bool:
            try:
                core.read_namespaced_pod(n, namespace)
            except ApiException as error:
                return error.status == 404
            return False

        wait_for(deleted, 30, f"pod {name} removed from the API")


def test_the_taint_keeps_other_pods_off_and_foreign_images_wait(
    kube: client.ApiClient, namespace: str, unique_name: str, node_agent: NodeAgentProcess
) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_pod(
        namespace,
        {"metadata": {"name": "untolerated"}, "spec": build_pod_spec(unique_name, tolerate=False)},
    )
    foreign = build_pod_spec(f"{unique_name}-foreign")
    foreign["containers"][0]["image"] = "docker.io/library/busybox:1"
    core.create_namespaced_pod(namespace, {"metadata": {"name": "foreign"}, "spec": foreign})

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("foreign", namespace).status.container_statuses
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None

    assert wait_for(waiting_reason, 60, "the foreign image's waiting reason") == "ErrImageNotLocal"
    pod = core.read_namespaced_pod("untolerated", namespace)
    assert pod.spec.node_name is None
    assert pod.status.phase == "Pending"
    assert local_processes(unique_name) == {}


def test_containers_do_not_outlive_a_killed_agent(
    kube: client.ApiClient, namespace: str, unique_name: str, node_agent: NodeAgentProcess
) -> None:
    """An agent that dies by SIGKILL cannot stop its containers itself; left running, they would
    consume from the next stack started on the same ports. They get SIGTERM from the kernel."""
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, build_deployment("orphan", unique_name, 1))
    wait_for(lambda: local_processes(unique_name), 60, "the container's process")
    node_agent.process.kill()
    node_agent.process.wait(timeout=10)
    wait_for(lambda: not local_processes(unique_name), 15, "the container gone with its agent")
