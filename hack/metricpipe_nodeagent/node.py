"""The Node object and its heartbeat Lease (pure builders)."""

from __future__ import annotations

import platform
from datetime import datetime
from typing import Any

from .settings import TAINT_KEY, TAINT_VALUE, AgentSettings

AGENT_VERSION = "metricpipe-dev-nodeagent"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_node(settings: AgentSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": settings.node_name,
            "labels": {
                "kubernetes.io/hostname": settings.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                TAINT_KEY: "true",
            },
            "annotations": {
                "metricpipe.io/note": "development node agent: pods run as local processes"
            },
        },
        "spec": {"taints": [{"key": TAINT_KEY, "value": TAINT_VALUE, "effect": "NoSchedule"}]},
    }


def build_node_status(settings: AgentSettings, now: datetime, started: datetime) -> dict[str, Any]:
    resources = {"cpu": settings.cpu, "memory": settings.memory, "pods": str(settings.pods)}

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": rfc3339(now), "lastTransitionTime": rfc3339(started),
        }  # fmt: skip

    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("Ready", "True", "KubeletReady", "the metricpipe node agent is running"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "not measured"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "not measured"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "not measured"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": settings.node_name},
        ],
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": platform.release(),
            "osImage": platform.platform(),
            "containerRuntimeVersion": f"local-process://{AGENT_VERSION}",
            "kubeletVersion": AGENT_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def build_lease(settings: AgentSettings, now: datetime) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": settings.node_name, "namespace": LEASE_NAMESPACE},
        "spec": {
            "holderIdentity": settings.node_name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": rfc3339_micro(now),
        },
    }
