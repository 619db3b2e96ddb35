"""The peek API for the demo: a host process on the stack's peek port, where the edge's Nginx
servers proxy to (HAProxy :39443 → Nginx → 127.0.0.1:<ports.peek>, docs/peek.md), and the
kubectl plugin run as a developer runs it.

The port is the edge's only upstream, and tests of the stack serve on it too (the peek API's
and the edge's own), so the demo holds it only while it asks its question: it waits for the
port to be free, starts the API, and stops it afterwards (`make demo-down` stops one left by an
interrupted demo). The API's own identity is the ServiceAccount the manifests install for it
(metricpipe-system/metricpipe-peek: TokenReviews and SubjectAccessReviews, nothing else).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from metricpipe_devstack.base import Component, Probe
from metricpipe_devstack.settings import StackSettings

PEEK_IDENTITY = ("metricpipe-system", "metricpipe-peek")  # manifests/base/peek-rbac.yaml
EDGE_PROXY = "127.0.0.1"  # where the edge's Nginx servers connect from
PORT_WAIT_SECONDS = 90.0  # a test may hold the port for a while (test_peek_api: ~25 s)


class PeekApi(Component):
    """`python -m metricpipe_consumers.peek` on 127.0.0.1:<ports.peek>, reading the archive
    root as the read-only HDFS user the manifests give it, trusting only the edge's address for
    X-Real-IP. Its pid file and log are the stack's (`.stack/run`, `.stack/logs/demo-peek.log`)."""

    name = "demo-peek"
    startup_timeout = 60.0

    def __init__(self, settings: StackSettings, webhdfs_url: str, kubeconfig: Path) -> None:
        super().__init__(settings)
        self.webhdfs_url, self.kubeconfig = webhdfs_url, kubeconfig

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "metricpipe_consumers.peek"]

    def process_env(self) -> dict[str, str]:
        return {
            "METRICPIPE_PEEK_HOST": self.bind_host(),
            "METRICPIPE_PEEK_PORT": str(self.port()),
            "METRICPIPE_PEEK_TRUSTED_PROXIES": json.dumps([EDGE_PROXY]),
            "METRICPIPE_PEEK_WEBHDFS_URL": self.webhdfs_url,
            "METRICPIPE_PEEK_KUBECONFIG": str(self.kubeconfig),
        }

    def bind_host(self) -> str:
        return "127.0.0.1"

    def port(self) -> int:
        return self.settings.ports.peek

    @property
    def url(self) -> str:
        return f"http://{self.bind_host()}:{self.port()}"

    def probe(self) -> Probe:
        try:
            answer = requests.get(f"{self.url}/healthz", timeout=2)
        except requests.RequestException as error:
            return Probe(False, f"GET /healthz: {error}")
        return Probe(answer.ok, f"GET /healthz: HTTP {answer.status_code}")

    def wait_port_free(self, timeout: float = PORT_WAIT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while self.ports_in_use():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"127.0.0.1:{self.port()}, the peek API's port behind the stack's edge, has "
                    f"been in use for {timeout:.0f} s (`ss -ltnp sport = :{self.port()}` names "
                    "who holds it; a test of the peek API or the edge does while it runs)"
                )
            time.sleep(1)


def write_kubeconfig(path: Path, server: str, ca_file: str, token: str) -> None:
    """A kubeconfig of one token (the peek API's own identity), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "peek",
        "clusters": [{"name": "stack", "cluster": {"server": server,
                                                   "certificate-authority": ca_file}}],
        "users": [{"name": "peek", "user": {"token": token}}],
        "contexts": [{"name": "peek", "context": {"cluster": "stack", "user": "peek"}}],
    }))  # fmt: skip


def load_reader_role(path: Path) -> dict[str, object]:
    """The Role of the RBAC example (get logarchives/logs), as the demo applies it."""
    documents = list(yaml.safe_load_all(path.read_text()))
    role: dict[str, object] = next(d for d in documents if d["kind"] == "Role")
    return role


def run_plugin(
    kubectl: Path, kubeconfig: Path, args: list[str]
) -> subprocess.CompletedProcess[str]:
    """`kubectl metricpipe peek ARGS`: kubectl finds the plugin `kubectl-metricpipe` on PATH
    (the virtualenv's bin/, where `pip install` put it)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(
        [str(kubectl), "metricpipe", "peek", *args],
        capture_output=True, text=True, timeout=180, check=False, env=env,
    )  # fmt: skip
