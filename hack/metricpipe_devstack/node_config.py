"""Pure builders of the real node's configuration: containerd, CNI, kubelet.

Nothing here touches the machine; every function maps settings to text or a dict, so the
choices are tested by tables (tests/unit/test_devstack_node.py) and written by node.py.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import StackSettings

PAUSE_IMAGE = "localhost/metricpipe/pause:3.10"
RUNC = "/usr/sbin/runc"
CNI_BIN_DIR = "/usr/lib/cni"
# Debian's containernetworking-plugins 1.1 speak CNI 0.1.0 to 1.0.0 (`/usr/lib/cni/bridge
# --version`); containerd 1.6's libcni handles 1.0.0 as well.
CNI_VERSION = "1.0.0"
NODE_TAINT = {"key": "metricpipe.io/dev-node", "value": "local", "effect": "NoSchedule"}
CNI_NETWORK_NAME = "metricpipe"


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps each piece of state (derived from the settings, nothing created)."""

    node_dir: Path
    run_dir: Path
    containerd_root: Path

    @classmethod
    def of(cls, settings: StackSettings) -> NodePaths:
        return cls(settings.node_dir, settings.node_run_dir, settings.containerd_root)

    @property
    def containerd_config(self) -> Path:
        return self.node_dir / "containerd.toml"

    @property
    def containerd_state(self) -> Path:
        return self.run_dir / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.node_dir / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        """host-local IPAM's allocations (one file per address in use)."""
        return self.node_dir / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.node_dir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.node_dir / "kubelet-config.json"

    @property
    def kubelet_cert_dir(self) -> Path:
        return self.node_dir / "kubelet-pki"

    @property
    def pod_logs(self) -> Path:
        return self.node_dir / "pod-logs"

    @property
    def resolv_conf(self) -> Path:
        return self.node_dir / "resolv.conf"


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def build_containerd_config(paths: NodePaths) -> str:
    """containerd 1.6 config (version 2): our own root, state and socket, the CRI with runc.

    base_runtime_spec stays unset on purpose: the CRI then drops the default spec's rlimits, so
    containers inherit containerd's own (the machine's hard limits NOFILE 20000, NPROC 96362);
    a spec asking for more fails with "setrlimit: operation not permitted".
    """
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = f"{cri[:-1]}.containerd.runtimes.runc]"
    lines = [
        "version = 2",
        f"root = {_toml_str(paths.containerd_root)}",
        f"state = {_toml_str(paths.containerd_state)}",
        "oom_score = 0",
        "",
        "[grpc]",
        f"  address = {_toml_str(paths.containerd_socket)}",
        "",
        "[ttrpc]",
        f"  address = {_toml_str(str(paths.containerd_socket) + '.ttrpc')}",
        "",
        "[debug]",
        '  address = ""',
        '  level = "info"',
        "",
        "[metrics]",
        '  address = ""',
        "",
        '[plugins."io.containerd.internal.v1.opt"]',
        f"  path = {_toml_str(paths.containerd_root / 'opt')}",
        "",
        cri,
        f"  sandbox_image = {_toml_str(PAUSE_IMAGE)}",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        "  enable_selinux = false",
        "  disable_apparmor = true",
        # Root here lacks CAP_SYS_RESOURCE: lowering oom_score_adj below containerd's own (the
        # sandbox's -998, Guaranteed pods' -997) fails runc with "can't get final child's PID
        # from pipe". Clamp them to containerd's (0) instead.
        "  restrict_oom_score_adj = true",
        "  max_concurrent_downloads = 1",
        "",
        f"{cri[:-1]}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        "  discard_unpacked_layers = false",
        "",
        runc,
        '  runtime_type = "io.containerd.runc.v2"',
        "",
        f"{runc[:-1]}.options]",
        f"  BinaryName = {_toml_str(RUNC)}",
        "  SystemdCgroup = false",
        "",
        f"{cri[:-1]}.cni]",
        f"  bin_dir = {_toml_str(CNI_BIN_DIR)}",
        f"  conf_dir = {_toml_str(paths.cni_conf_dir)}",
        "  max_conf_num = 1",
        "",
    ]
    return "\n".join(lines)


def build_cni_conflist(settings: StackSettings, paths: NodePaths) -> dict[str, Any]:
    """The pod network: a bridge with the host as gateway but no default route and no NAT, so
    pods reach the stack's servers on host_address and nothing else."""
    network = ipaddress.ip_network(settings.pod_cidr)
    hosts = list(network.hosts())
    range_start = network.network_address + 10
    if range_start > hosts[-1]:
        raise ValueError(f"pod_cidr {settings.pod_cidr} is too small: pods start at .10")
    return {
        "cniVersion": CNI_VERSION,
        "name": CNI_NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": settings.bridge,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [
                        [
                            {
                                "subnet": str(network),
                                "rangeStart": str(range_start),
                                "rangeEnd": str(hosts[-1]),
                                "gateway": settings.host_address,
                            }
                        ]
                    ],
                    "dataDir": str(paths.cni_data_dir),
                },
            },
            {"type": "loopback"},
        ],
    }


def build_kubelet_config(settings: StackSettings, paths: NodePaths, pki: Path) -> dict[str, Any]:
    """KubeletConfiguration for this machine (cgroup v1 hybrid host, no systemd, no DNS)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "address": settings.host_address,
        "port": settings.ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": settings.ports.kubelet_healthz,
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "authentication": {
            "x509": {"clientCAFile": str(pki / "ca.crt")},
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
        },
        # The API server authenticates with the admin certificate; the kubelet asks it
        # (SubjectAccessReview, allowed to nodes by the Node authorizer) whether that user may.
        "authorization": {"mode": "Webhook"},
        "registerNode": True,
        "registerWithTaints": [NODE_TAINT],
        "failSwapOn": False,
        "oomScoreAdj": 0,  # the default -999 needs CAP_SYS_RESOURCE, which root lacks here
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
            "imagefs.inodesFree": "1%",
        },
        # Images are imported, never pulled: a GC'd image would leave its pods unable to start.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "podLogsDir": str(paths.pod_logs),
        "resolvConf": str(paths.resolv_conf),
        "serializeImagePulls": True,
        "maxPods": 40,
        "systemReserved": {"cpu": "100m", "memory": "256Mi"},
        "kubeReserved": {"cpu": "100m", "memory": "256Mi"},
        "enforceNodeAllocatable": ["pods"],
        "cgroupsPerQOS": True,
        "nodeStatusReportFrequency": "10s",
        "nodeStatusUpdateFrequency": "10s",
        "fileCheckFrequency": "20s",
        "staticPodPath": "",
        "shutdownGracePeriod": "0s",
        "logging": {"format": "text", "verbosity": 1},
    }


def build_kubelet_argv(
    settings: StackSettings, paths: NodePaths, kubelet: Path, kubeconfig: Path
) -> list[str]:
    """The command line: everything else lives in the config file. No
    --pod-infra-container-image (removed in 1.35: the pause image is containerd's sandbox_image)."""
    return [
        str(kubelet),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.kubelet_cert_dir}",
        f"--hostname-override={settings.node_name}",
        f"--node-ip={settings.host_address}",
    ]
