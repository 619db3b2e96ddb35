"""Pod discovery for the stack's Prometheus: the part of the Prometheus Operator's PodMonitor the
local stack needs.

Debian's Prometheus is built without kubernetes_sd, so this small process lists the running pods
every few seconds and writes those with a container port named `metrics` to a file_sd file:
target `<pod IP>:<port>`, labels `job` (the pod's `app.kubernetes.io/name`, metricpipe's
PodMonitor `jobLabel`), `namespace` and `pod`. Prometheus then scrapes the pods at their pod IPs
over the pod bridge, as it would on a cluster.

    python -m metricpipe_devstack.podsd --kubeconfig K --out FILE
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from kubernetes import client, config

from .base import Component, Probe

JOB_LABEL = "app.kubernetes.io/name"
PORT_NAME = "metrics"
INTERVAL_SECONDS = 3.0


def build_targets(pods: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """file_sd groups for pods (dicts as the API returns them) that are Running with a pod IP and
    declare a container port named `metrics`; sorted, so an unchanged set writes the same file."""
    groups = []
    for pod in pods:
        metadata, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        ip = status.get("podIP")
        if status.get("phase") != "Running" or not ip or metadata.get("deletionTimestamp"):
            continue
        ports = sorted(
            port["containerPort"]
            for container in spec.get("containers") or []
            for port in container.get("ports") or []
            if port.get("name") == PORT_NAME
        )
        if not ports:
            continue
        labels = metadata.get("labels") or {}
        groups.append(
            {
                "targets": [f"{ip}:{port}" for port in ports],
                "labels": {
                    "job": labels.get(JOB_LABEL, metadata["name"]),
                    "namespace": metadata["namespace"],
                    "pod": metadata["name"],
                },
            }
        )
    return sorted(groups, key=lambda g: (g["labels"]["namespace"], g["labels"]["pod"]))


def write_if_changed(path: Path, groups: list[dict[str, Any]]) -> bool:
    text = json.dumps(groups, indent=1, sort_keys=True)
    if path.exists() and path.read_text() == text:
        return False
    partial = path.with_suffix(".tmp")
    partial.write_text(text)
    partial.rename(path)  # Prometheus never reads half a file
    return True


def run(kubeconfig: Path, out: Path) -> None:
    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    out.parent.mkdir(parents=True, exist_ok=True)
    while not stopping:
        try:
            pods = api.list_pod_for_all_namespaces(field_selector="status.phase=Running")
            groups = build_targets(api.api_client.sanitize_for_serialization(pods)["items"])
            if write_if_changed(out, groups):
                print(f"{len(groups)} pod target group(s) written to {out}", flush=True)
        except Exception as error:  # the API server restarting: keep the last file, try again
            print(f"listing pods failed: {type(error).__name__}: {error}", flush=True)
        time.sleep(INTERVAL_SECONDS)
    out.unlink(missing_ok=True)


class PodDiscovery(Component):
    """The discovery loop as a stack process (started after the API server)."""

    name = "pod-discovery"
    startup_timeout = 30.0

    @property
    def out(self) -> Path:
        return self.settings.stack_dir / "prometheus" / "file_sd" / "pods.json"

    @property
    def kubeconfig(self) -> Path:
        return self.settings.stack_dir / "kube" / "admin.kubeconfig"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "metricpipe_devstack.podsd",
                "--kubeconfig", str(self.kubeconfig), "--out", str(self.out)]  # fmt: skip

    def probe(self) -> Probe:
        if self.out.exists():
            return Probe(True, f"writing {self.out.name}", "-")
        return Probe(False, "no target file yet", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metricpipe-devstack-podsd", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    run(args.kubeconfig, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
