"""The real node's pure parts: containerd, CNI and kubelet configuration, the pod bridge plan,
and what the clean-up removes (and what it leaves alone)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from metricpipe_devstack.network import host_cidr, plan_bridge, plan_bridge_delete
from metricpipe_devstack.node_cleanup import (
    parse_mountpoints,
    parse_netns_list,
    plan_cleanup,
    plan_shim_kills,
    sandbox_netns,
)
from metricpipe_devstack.node_config import (
    NodePaths,
    build_cni_conflist,
    build_containerd_config,
    build_kubelet_argv,
    build_kubelet_config,
)
from metricpipe_devstack.settings import StackSettings

CRI = "io.containerd.grpc.v1.cri"


@pytest.fixture
def settings(tmp_path: Path) -> StackSettings:
    return StackSettings(cache_dir=tmp_path / "cache", stack_dir=tmp_path / "stack")


@pytest.fixture
def paths(settings: StackSettings) -> NodePaths:
    return NodePaths.of(settings)


# -- containerd ---------------------------------------------------------------------------------


def test_containerd_config_uses_our_own_root_state_and_socket(paths: NodePaths) -> None:
    config = tomllib.loads(build_containerd_config(paths))
    assert config["version"] == 2
    assert config["root"] == str(paths.containerd_root)
    assert config["state"] == str(paths.run_dir / "state")
    assert config["grpc"]["address"] == str(paths.run_dir / "containerd.sock")
    # never the Debian service's socket or state
    assert "/run/containerd" not in build_containerd_config(paths)
    assert config["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith(
        str(paths.containerd_root)
    )


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (("sandbox_image",), "localhost/metricpipe/pause:3.10"),
        (("containerd", "snapshotter"), "overlayfs"),
        (("containerd", "default_runtime_name"), "runc"),
        (("containerd", "runtimes", "runc", "runtime_type"), "io.containerd.runc.v2"),
        (("containerd", "runtimes", "runc", "options", "BinaryName"), "/usr/sbin/runc"),
        (("containerd", "runtimes", "runc", "options", "SystemdCgroup"), False),
        (("cni", "bin_dir"), "/usr/lib/cni"),
        (("restrict_oom_score_adj",), True),
    ],
)
def test_containerd_cri_settings(paths: NodePaths, keys: tuple[str, ...], expected: object) -> None:
    value: Any = tomllib.loads(build_containerd_config(paths))["plugins"][CRI]
    for key in keys:
        value = value[key]
    assert value == expected


def test_containerd_keeps_the_cri_default_of_no_rlimits(paths: NodePaths) -> None:
    """A base runtime spec would bring rlimits (containerd's default NOFILE 1024 or whatever it
    says); without one the CRI clears them and containers inherit containerd's, which are
    within the machine's hard limits by construction."""
    cri = tomllib.loads(build_containerd_config(paths))["plugins"][CRI]
    assert "base_runtime_spec" not in cri["containerd"]["runtimes"]["runc"]
    assert "base_runtime_spec" not in cri["containerd"]


def test_cni_conf_dir_is_the_nodes(paths: NodePaths, settings: StackSettings) -> None:
    cri = tomllib.loads(build_containerd_config(paths))["plugins"][CRI]
    assert cri["cni"]["conf_dir"] == str(settings.node_dir / "cni" / "net.d")


# -- CNI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod_cidr", "start", "end", "gateway"),
    [
        ("10.77.0.0/24", "10.77.0.10", "10.77.0.254", "10.77.0.1"),
        ("10.88.4.0/23", "10.88.4.10", "10.88.5.254", "10.88.4.1"),
        ("192.168.50.0/28", "192.168.50.10", "192.168.50.14", "192.168.50.1"),
    ],
)
def test_cni_bridge_has_no_way_out(
    settings: StackSettings, paths: NodePaths, pod_cidr: str, start: str, end: str, gateway: str
) -> None:
    conf = build_cni_conflist(dataclasses.replace(settings, pod_cidr=pod_cidr), paths)
    bridge, loopback = conf["plugins"]
    assert conf["cniVersion"] == "1.0.0"
    assert loopback == {"type": "loopback"}
    assert bridge["type"] == "bridge"
    assert bridge["bridge"] == settings.bridge
    assert (bridge["isGateway"], bridge["isDefaultGateway"], bridge["ipMasq"]) == (
        True,
        False,
        False,
    )
    assert bridge["hairpinMode"] is True
    (only_range,) = bridge["ipam"]["ranges"]
    assert only_range == [
        {"subnet": pod_cidr, "rangeStart": start, "rangeEnd": end, "gateway": gateway}
    ]
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["dataDir"] == str(settings.node_dir / "cni" / "ipam")
    assert "routes" not in bridge["ipam"]  # no route out of the bridge


def test_cni_refuses_a_range_without_room_for_pods(
    settings: StackSettings, paths: NodePaths
) -> None:
    with pytest.raises(ValueError, match="too small"):
        build_cni_conflist(dataclasses.replace(settings, pod_cidr="10.77.0.0/29"), paths)


# -- kubelet ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("failCgroupV1", False),
        ("cgroupDriver", "cgroupfs"),
        ("address", "10.77.0.1"),
        ("port", 39250),
        ("readOnlyPort", 0),
        ("healthzBindAddress", "127.0.0.1"),
        ("healthzPort", 39248),
        ("failSwapOn", False),
        ("oomScoreAdj", 0),
        ("maxPods", 40),
        ("imageGCHighThresholdPercent", 100),
        ("registerWithTaints", [
            {"key": "metricpipe.io/dev-node", "value": "local", "effect": "NoSchedule"}
        ]),
        ("authentication", {
            "x509": {"clientCAFile": "PKI/ca.crt"},
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
        }),
        ("authorization", {"mode": "Webhook"}),
        ("tlsCertFile", "PKI/kubelet.crt"),
        ("tlsPrivateKeyFile", "PKI/kubelet.key"),
    ],
)  # fmt: skip
def test_kubelet_config(
    settings: StackSettings, paths: NodePaths, key: str, expected: object
) -> None:
    config = build_kubelet_config(settings, paths, Path("PKI"))
    assert config[key] == expected


def test_kubelet_config_paths_live_in_the_node_dir(
    settings: StackSettings, paths: NodePaths
) -> None:
    config = build_kubelet_config(settings, paths, Path("/pki"))
    assert config["containerRuntimeEndpoint"] == f"unix://{paths.run_dir / 'containerd.sock'}"
    for key in ("podLogsDir", "resolvConf"):
        assert Path(config[key]).is_relative_to(settings.node_dir), key


def test_kubelet_never_evicts_or_collects_images_on_a_roomy_machine(
    settings: StackSettings, paths: NodePaths
) -> None:
    config = build_kubelet_config(settings, paths, Path("/pki"))
    assert config["evictionHard"] == {
        "memory.available": "100Mi",
        "nodefs.available": "1%",
        "nodefs.inodesFree": "1%",
        "imagefs.available": "1%",
        "imagefs.inodesFree": "1%",
    }
    # Image GC starts only above the high threshold: disk usage never exceeds 100 %.
    assert config["imageGCLowThresholdPercent"] < config["imageGCHighThresholdPercent"] == 100


def test_kubelet_argv(settings: StackSettings, paths: NodePaths) -> None:
    argv = build_kubelet_argv(settings, paths, Path("/bin/kubelet"), Path("/k/kubelet.kubeconfig"))
    assert argv == [
        "/bin/kubelet",
        f"--config={settings.node_dir / 'kubelet-config.json'}",
        "--kubeconfig=/k/kubelet.kubeconfig",
        f"--root-dir={settings.node_dir / 'kubelet'}",
        f"--cert-dir={settings.node_dir / 'kubelet-pki'}",
        "--hostname-override=metricpipe-node",
        "--node-ip=10.77.0.1",
    ]
    assert not any(a.startswith("--pod-infra-container-image") for a in argv)  # gone in 1.35


# -- the pod bridge -----------------------------------------------------------------------------


def _link(name: str, kind: str | None, addrs: list[str], up: bool = True) -> dict[str, Any]:
    link: dict[str, Any] = {
        "ifname": name,
        "flags": ["BROADCAST", "UP"] if up else ["BROADCAST"],
        "addr_info": [
            {"family": "inet", "local": a.split("/")[0], "prefixlen": int(a.split("/")[1])}
            for a in addrs
        ],
    }
    if kind:
        link["linkinfo"] = {"info_kind": kind}
    return link


LO = _link("lo", None, ["127.0.0.1/8"])
ETH = _link("eth0", None, ["172.16.0.2/24"])
ADD = ["ip", "link", "add", "name", "metricpipe0", "type", "bridge"]
ADDR = ["ip", "addr", "add", "10.77.0.1/24", "dev", "metricpipe0"]
UP = ["ip", "link", "set", "metricpipe0", "up"]
DEL = ["ip", "link", "del", "metricpipe0"]


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ([LO, ETH], [ADD, ADDR, UP]),
        ([LO, ETH, _link("metricpipe0", "bridge", [], up=False)], [ADDR, UP]),
        ([LO, _link("metricpipe0", "bridge", ["10.77.0.1/24"], up=False)], [UP]),
        ([LO, _link("metricpipe0", "bridge", ["10.77.0.1/24"])], []),
        # an address with another prefix is not ours: add ours beside it
        ([LO, _link("metricpipe0", "bridge", ["10.77.0.1/16"])], [ADDR]),
    ],
)
def test_plan_bridge(links: list[dict[str, Any]], expected: list[list[str]]) -> None:
    assert plan_bridge(links, "metricpipe0", "10.77.0.1/24") == expected


@pytest.mark.parametrize(
    ("links", "message"),
    [
        ([LO, _link("metricpipe0", "veth", [])], "is a veth, not a bridge"),
        ([LO, _link("metricpipe0", None, [])], "plain device"),
        ([LO, _link("eth1", None, ["10.77.0.200/24"])], "eth1 already has 10.77.0.200/24"),
        ([LO, _link("eth1", None, ["10.0.0.5/8"])], "METRICPIPE_POD_CIDR"),
    ],
)
def test_plan_bridge_refuses(links: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_bridge(links, "metricpipe0", "10.77.0.1/24")


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ([LO, _link("metricpipe0", "bridge", ["10.77.0.1/24"])], [DEL]),
        ([LO, ETH], []),
        ([LO, _link("metricpipe0", "veth", [])], []),  # never delete a link of another kind
    ],
)  # fmt: skip
def test_plan_bridge_delete(links: list[dict[str, Any]], expected: list[list[str]]) -> None:
    assert plan_bridge_delete(links, "metricpipe0") == expected


def test_host_cidr(settings: StackSettings) -> None:
    assert host_cidr(settings) == "10.77.0.1/24"
    assert host_cidr(dataclasses.replace(settings, pod_cidr="10.9.8.0/23")) == "10.9.8.1/23"


# -- clean-up -----------------------------------------------------------------------------------

NODE = "/w/.stack/node"
RUN = "/run/metricpipe-abc"
ROOT = "/root/.cache/metricpipe/containerd"
MOUNTINFO = "\n".join(
    [
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
        "30 22 0:5 / /sys/fs/cgroup rw shared:2 - tmpfs tmpfs rw",
        f"40 22 0:40 / {NODE}/kubelet/pods/u1/volumes/kubernetes.io~projected/kube-api-access rw"
        " - tmpfs tmpfs rw",
        f"41 22 0:41 / {RUN}/state/io.containerd.grpc.v1.cri/sandboxes/s1/shm rw - tmpfs shm rw",
        f"42 22 0:42 / {RUN}/state/io.containerd.runtime.v2.task/k8s.io/c1/rootfs rw"
        " - overlay overlay rw",
        "43 22 0:4 net:[4026532300] /run/netns/cni-1111 rw - nsfs nsfs rw",
        "44 22 0:4 net:[4026532301] /run/netns/cni-2222 rw - nsfs nsfs rw",
        # a directory whose name has a space (mountinfo escapes it as \\040)
        f"45 22 0:43 / {NODE}/kubelet/pods/u2/volumes/a\\040b rw - tmpfs tmpfs rw",
        f"46 40 0:44 / {NODE}/kubelet/pods/u1/volumes/kubernetes.io~projected/kube-api-access"
        " rw - tmpfs tmpfs rw",
        # another stack's node: a prefix of the name, not a parent directory
        "47 22 0:45 / /w/.stack/node-other/x rw - tmpfs tmpfs rw",
        "48 22 0:46 / /run/metricpipe-abcdef/state/x rw - tmpfs tmpfs rw",
    ]
)


def test_parse_mountpoints_decodes_escapes() -> None:
    points = parse_mountpoints(MOUNTINFO)
    assert points[0] == "/"
    assert f"{NODE}/kubelet/pods/u2/volumes/a b" in points


def test_plan_cleanup_unmounts_only_ours_newest_first() -> None:
    plan = plan_cleanup(MOUNTINFO, [], [], [], [NODE, RUN, ROOT])
    projected = f"{NODE}/kubelet/pods/u1/volumes/kubernetes.io~projected/kube-api-access"
    assert plan.unmounts == [
        projected,  # the stacked mount (46) comes off before the one below it (40)
        f"{NODE}/kubelet/pods/u2/volumes/a b",
        f"{RUN}/state/io.containerd.runtime.v2.task/k8s.io/c1/rootfs",
        f"{RUN}/state/io.containerd.grpc.v1.cri/sandboxes/s1/shm",
        projected,
    ]


@pytest.mark.parametrize(
    ("netns", "sandboxes", "expected"),
    [
        (["cni-1111", "cni-2222", "other"], ["/var/run/netns/cni-1111"], ["cni-1111"]),
        (["cni-1111", "cni-2222"], ["/run/netns/cni-2222", "/var/run/netns/cni-1111"],
         ["cni-1111", "cni-2222"]),
        # a sandbox of ours whose netns is already gone: nothing to delete
        (["cni-2222"], ["/var/run/netns/cni-1111"], []),
        # someone else's namespaces, and a path outside the named-netns directories
        (["cni-3333", "podman"], ["/proc/123/ns/net"], []),
        ([], [], []),
    ],
)  # fmt: skip
def test_plan_cleanup_deletes_only_our_sandboxes_netns(
    netns: list[str], sandboxes: list[str], expected: list[str]
) -> None:
    assert plan_cleanup("", netns, sandboxes, [], [NODE]).netns == expected


def test_plan_cleanup_removes_kubepods_cgroups_leaves_first() -> None:
    dirs = [
        "/sys/fs/cgroup/memory/kubepods",
        "/sys/fs/cgroup/memory/kubepods/besteffort",
        "/sys/fs/cgroup/memory/kubepods/besteffort/pod1/c1",
        "/sys/fs/cgroup/memory/kubepods/besteffort/pod1",
        "/sys/fs/cgroup/cpu/kubepods/burstable",
        "/sys/fs/cgroup/cpu/kubepods",
        "/sys/fs/cgroup/memory/system.slice",  # not the kubelet's
        "/sys/fs/cgroup/memory/user/kubepods",  # nested elsewhere: not ours either
    ]
    assert plan_cleanup("", [], [], dirs, [NODE]).cgroups == [
        "/sys/fs/cgroup/memory/kubepods/besteffort/pod1/c1",
        "/sys/fs/cgroup/memory/kubepods/besteffort/pod1",
        "/sys/fs/cgroup/cpu/kubepods/burstable",
        "/sys/fs/cgroup/memory/kubepods/besteffort",
        "/sys/fs/cgroup/cpu/kubepods",
        "/sys/fs/cgroup/memory/kubepods",
    ]


def test_parse_netns_list() -> None:
    assert parse_netns_list("cni-1 (id: 0)\ncni-2\n\n") == ["cni-1", "cni-2"]


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"Spec": {"linux": {"namespaces": [
            {"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-9"}]}}},
         "/var/run/netns/cni-9"),
        ({"Spec": {"linux": {"namespaces": [{"type": "network"}]}}}, None),  # a new netns
        ({"Spec": {}}, None),
        ({}, None),
    ],
)  # fmt: skip
def test_sandbox_netns(info: dict[str, Any], expected: str | None) -> None:
    assert sandbox_netns(info) == expected


def test_plan_shim_kills_only_shims_of_our_socket() -> None:
    sock = f"{RUN}/containerd.sock"
    cmdlines = {
        10: ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "a",
             "-address", sock],
        11: ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "b",
             "-address", "/run/containerd/containerd.sock"],
        12: ["/usr/bin/containerd", "--config", sock],
        13: ["/bin/sh", "-c", f"echo -address {sock}"],
        14: [],
    }  # fmt: skip
    assert plan_shim_kills(cmdlines, sock) == [10]
