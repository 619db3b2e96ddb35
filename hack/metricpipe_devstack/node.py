"""The real node: our own containerd (Debian 1.6, runc) and the pinned kubelet.

containerd is started by us with `--config` (its own root, state and socket), never the Debian
service's /run/containerd socket. The kubelet registers Node `settings.node_name` with the
dev-node taint; it counts as healthy once /healthz answers and that Node is Ready (which needs
the CNI config in place and the pause image imported).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from .base import Component, Probe
from .errors import StackError
from .images import import_images
from .node_cleanup import clean_node
from .node_config import (
    PAUSE_IMAGE,
    NodePaths,
    build_cni_conflist,
    build_containerd_config,
    build_kubelet_argv,
    build_kubelet_config,
)
from .pki import build_node_kubeconfig, ensure_node_pki
from .settings import StackSettings

Echo = Callable[[str], None]
CONTAINERD = Path("/usr/bin/containerd")


class Containerd(Component):
    name = "containerd"
    startup_timeout = 60.0

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings)
        self.paths = NodePaths.of(settings)

    def prepare(self) -> None:
        for directory in (self.paths.node_dir, self.paths.run_dir, self.paths.containerd_root):
            directory.mkdir(parents=True, exist_ok=True)
        self.paths.run_dir.chmod(0o711)
        self.paths.containerd_config.write_text(build_containerd_config(self.paths))
        # The CNI config is what makes containerd report NetworkReady (and so the Node Ready).
        self.paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        conflist = build_cni_conflist(self.settings, self.paths)
        (self.paths.cni_conf_dir / "10-metricpipe.conflist").write_text(
            json.dumps(conflist, indent=2) + "\n"
        )

    def argv(self) -> list[str]:
        return [str(CONTAINERD), "--config", str(self.paths.containerd_config)]

    def workdir(self) -> Path:
        return self.paths.node_dir

    def probe(self) -> Probe:
        """Healthy when our socket answers and the CRI plugin loaded."""
        socket = str(self.paths.containerd_socket)
        try:
            version = subprocess.run(
                ["ctr", "--address", socket, "version"], capture_output=True, text=True, timeout=5
            )
            if version.returncode != 0:
                return Probe(False, f"no answer on {socket}")
            plugins = subprocess.run(
                ["ctr", "--address", socket, "plugins", "ls"],
                capture_output=True,
                text=True,
                timeout=5,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return Probe(False, f"ctr failed: {error}")
        server = version.stdout.split("Server:", 1)[-1]
        release = next(
            (ln.split()[-1] for ln in server.splitlines() if ln.strip().startswith("Version:")), "?"
        )
        cri = [ln.split() for ln in plugins.stdout.splitlines() if "io.containerd.grpc.v1" in ln]
        cri_status = next((f[-1] for f in cri if len(f) >= 3 and f[1] == "cri"), "missing")
        if cri_status != "ok":
            return Probe(False, f"CRI plugin {cri_status} (see the log)", release)
        return Probe(True, f"CRI ok on {socket}", release)

    def env(self) -> dict[str, str]:
        return {"CONTAINERD_ADDRESS": str(self.paths.containerd_socket)}


class Kubelet(Component):
    name = "kubelet"
    startup_timeout = 120.0

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings)
        self.paths = NodePaths.of(settings)

    @property
    def pki(self) -> Path:
        return self.settings.pki_dir

    @property
    def kubeconfig(self) -> Path:
        return self.paths.node_dir / "kubelet.kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://{self.settings.host_address}:{self.settings.ports.apiserver}"

    def port(self) -> int:
        return self.settings.ports.kubelet

    def ports_in_use(self) -> list[int]:
        """The API port listens on the bridge's host address, /healthz on loopback."""
        ports = self.settings.ports
        wanted = [(self.settings.host_address, ports.kubelet), ("127.0.0.1", ports.kubelet_healthz)]
        busy = []
        for host, port in wanted:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError:
                    busy.append(port)
        return busy

    def env(self) -> dict[str, str]:
        return {"METRICPIPE_NODE_NAME": self.settings.node_name}

    def prepare(self) -> None:
        ensure_node_pki(self.pki, self.settings.node_name, self.settings.host_address)
        for directory in (
            self.paths.kubelet_root,
            self.paths.pod_logs,
            self.paths.kubelet_cert_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        self.paths.resolv_conf.write_text("")  # no DNS here: pods get an empty resolv.conf
        self.kubeconfig.write_text(build_node_kubeconfig(self.apiserver_url, self.pki))
        config = build_kubelet_config(self.settings, self.paths, self.pki)
        self.paths.kubelet_config.write_text(json.dumps(config, indent=2) + "\n")

    def argv(self) -> list[str]:
        return build_kubelet_argv(
            self.settings, self.paths, self.settings.kube_bin / "kubelet", self.kubeconfig
        )

    def workdir(self) -> Path:
        return self.paths.node_dir

    def probe(self) -> Probe:
        version = self.settings.versions.get("KUBE_VERSION", "?")
        try:
            response = requests.get(
                f"http://127.0.0.1:{self.settings.ports.kubelet_healthz}/healthz", timeout=3
            )
        except requests.RequestException as error:
            return Probe(False, f"healthz unreachable: {type(error).__name__}", version)
        if response.status_code != 200:
            return Probe(False, f"/healthz -> {response.status_code}", version)
        ready, detail = self.node_ready()
        return Probe(ready, detail, version)

    def node_ready(self) -> tuple[bool, str]:
        """Is Node <node_name> Ready? Asked with the admin kubeconfig's client cert."""
        node = read_node(self.settings)
        if node is None:
            return False, f"Node {self.settings.node_name} not registered yet"
        conditions = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
        ready = conditions.get("Ready", {})
        if ready.get("status") == "True":
            return True, f"Node {self.settings.node_name} Ready"
        return False, f"Node not Ready: {ready.get('reason', '?')}: {ready.get('message', '')}"


def read_node(settings: StackSettings) -> dict[str, Any] | None:
    pki = settings.pki_dir
    server = f"https://{settings.host_address}:{settings.ports.apiserver}"
    try:
        response = requests.get(
            f"{server}/api/v1/nodes/{settings.node_name}",
            timeout=3,
            verify=str(pki / "ca.crt"),
            cert=(str(pki / "admin.crt"), str(pki / "admin.key")),
        )
    except (requests.RequestException, OSError):
        return None
    if response.status_code != 200:
        return None
    node: dict[str, Any] = response.json()
    return node


def load_images(settings: StackSettings, echo: Echo) -> None:
    """Import the built images into containerd's k8s.io namespace (the pause image first of all:
    without it no pod sandbox starts, and nothing can pull it here). Fails naming `make images`
    when they were not built."""
    socket = NodePaths.of(settings).containerd_socket
    imported = import_images(settings, socket, echo)
    held = subprocess.run(
        ["ctr", "--address", str(socket), "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if PAUSE_IMAGE not in held:
        raise StackError(
            "images",
            f"containerd holds no {PAUSE_IMAGE} (the pod sandbox image): run 'make images', "
            "then 'make stack-up' again",
        )
    echo(f"   images: {len(imported)} imported; {len(held)} held, the pause image among them")


def start_node(settings: StackSettings, echo: Echo) -> None:
    """containerd (healthy), images imported, leftovers of an earlier run removed, kubelet."""
    containerd, kubelet = Containerd(settings), Kubelet(settings)
    if containerd.is_running():
        echo("   containerd: already running")
    else:
        echo(f"   containerd: starting (log {containerd.log_path})")
        containerd.start()
    probe = containerd.wait_healthy()
    echo(f"   containerd: healthy ({probe.version}; {probe.detail})")
    if not kubelet.is_running():
        # Containers of an earlier run (containerd's metadata lives in the cache) would be
        # adopted half-way by a new kubelet: start from none.
        clean_node(containerd.paths, echo, containerd_up=True)
    load_images(settings, echo)
    if kubelet.is_running():
        echo("   kubelet: already running")
    else:
        echo(f"   kubelet: starting (log {kubelet.log_path})")
        kubelet.start()


def wait_node(settings: StackSettings, echo: Echo) -> None:
    probe = Kubelet(settings).wait_healthy()
    echo(f"   kubelet: healthy ({probe.version}; {probe.detail})")


def stop_node(settings: StackSettings, echo: Echo) -> None:
    """kubelet (SIGTERM), then every container, netns, mount and cgroup it left, then containerd.

    The Node object stays: a fresh start wipes etcd anyway, and a kubelet restarted against a
    running control plane re-registers and re-creates its pods as after a node reboot.
    """
    containerd, kubelet = Containerd(settings), Kubelet(settings)
    echo(f"   kubelet: {kubelet.stop()}")
    clean_node(containerd.paths, echo, containerd_up=containerd.is_running())
    echo(f"   containerd: {containerd.stop()}")
    # A last pass for what only containerd's exit released (its own mounts under state).
    clean_node(containerd.paths, lambda _line: None, containerd_up=False)
    shutil.rmtree(containerd.paths.run_dir, ignore_errors=True)


def clean_node_dir(settings: StackSettings, echo: Echo) -> None:
    """Fresh start: release what a crashed run may have left mounted, then clear the node's
    state (kubelet root, pod logs, CNI allocations). containerd's images stay in the cache."""
    paths = NodePaths.of(settings)
    clean_node(paths, lambda _line: None, containerd_up=False)
    shutil.rmtree(paths.node_dir, ignore_errors=True)
    echo(f"   node: cleared {paths.node_dir}")
