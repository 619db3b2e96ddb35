"""metricpipe's own install (manifests/) on the real API server, for the tests that need its
identities: the namespace, ServiceAccounts and RBAC of the local overlay."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from metricpipe_devstack.env import StackEnv

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "manifests" / "overlays" / "local"
SYSTEM = "metricpipe-system"
IDENTITY_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                  "RoleBinding"}  # fmt: skip


def kubectl(
    stack: StackEnv, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(stack.kubectl), f"--kubeconfig={stack.kubeconfig}", *args],
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="session")
def identities(stack: StackEnv) -> Iterator[str]:
    """The overlay's namespace, ServiceAccounts and RBAC, applied for real (no Deployments: a
    running operator would act on other tests' pipelines); removed afterwards unless they were
    installed before."""
    rendered = kubectl(stack, "kustomize", str(OVERLAY))
    assert rendered.returncode == 0, rendered.stderr
    phase = kubectl(stack, "get", "namespace", SYSTEM, "-o", "jsonpath={.status.phase}")
    if phase.stdout == "Terminating":  # an earlier run's removal still going on
        kubectl(stack, "wait", "--for=delete", f"namespace/{SYSTEM}", "--timeout=120s")
    installed = kubectl(stack, "get", "namespace", SYSTEM).returncode == 0  # e.g. by make demo
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d["kind"] in IDENTITY_KINDS]
    text = yaml.safe_dump_all(documents)
    applied = kubectl(stack, "apply", "--server-side", "-f", "-", stdin=text)
    assert applied.returncode == 0, applied.stderr
    yield text
    if not installed:  # never take away an installation that was there before the test
        kubectl(stack, "delete", "--ignore-not-found", "--timeout=120s", "-f", "-", stdin=text)
