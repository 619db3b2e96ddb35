"""Leave nothing of the node behind: containers, network namespaces, mounts, cgroups, shims.

The kubelet is stopped first, so nothing goes through the CRI's own teardown (no CNI DEL, no
volume unmounts). What is ours is decided by pure functions over what the machine reports
(`/proc/self/mountinfo`, `ip netns`, containerd's container specs, cgroup directories,
process command lines); `clean_node` runs their plan. Idempotent: a second run finds nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .node_config import NodePaths

Echo = Callable[[str], None]
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIRS = ("/var/run/netns", "/run/netns")


@dataclass(frozen=True)
class CleanupPlan:
    unmounts: list[str]  # mount points, in the order to unmount them
    netns: list[str]  # names for `ip netns delete`
    cgroups: list[str]  # directories for rmdir, leaves first


def parse_mountpoints(mountinfo: str) -> list[str]:
    """Mount points of /proc/self/mountinfo in mount order (octal escapes like \\040 decoded)."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


def _unescape(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _under(path: str, roots: Iterable[str]) -> bool:
    candidate = PurePosixPath(path)
    return any(
        candidate == PurePosixPath(r) or PurePosixPath(r) in candidate.parents for r in roots
    )


def sandbox_netns(container_info: dict[str, Any]) -> str | None:
    """The network namespace path in a container's OCI spec (`ctr containers info` JSON)."""
    spec = container_info.get("Spec") or container_info.get("spec") or {}
    for namespace in (spec.get("linux") or {}).get("namespaces") or []:
        if namespace.get("type") == "network" and namespace.get("path"):
            return str(namespace["path"])
    return None


def plan_cleanup(
    mountinfo: str,
    netns_names: Iterable[str],
    sandbox_netns_paths: Iterable[str],
    cgroup_dirs: Iterable[str],
    roots: Iterable[str],
) -> CleanupPlan:
    """What to remove once every container of ours is gone.

    unmounts: every mount at or below one of roots, newest first (stacked mounts come off in
      reverse order, children before parents).
    netns: named namespaces that a sandbox of ours used (containerd 1.6 names them cni-<uuid>
      under /var/run/netns); a namespace no sandbox of ours names is not ours to delete.
    cgroups: the kubelet's kubepods* directories, deepest first (rmdir needs empty leaves).
    """
    roots = list(roots)
    points = parse_mountpoints(mountinfo)
    unmounts = [p for p in reversed(points) if _under(p, roots)]
    ours = set()
    for path in sandbox_netns_paths:
        pure = PurePosixPath(path)
        if str(pure.parent) in NETNS_DIRS:
            ours.add(pure.name)
    netns = sorted(name for name in set(netns_names) if name in ours)
    kube = []
    for directory in set(cgroup_dirs):
        parts = PurePosixPath(directory).relative_to(CGROUP_ROOT.as_posix()).parts
        if len(parts) >= 2 and parts[1].startswith("kubepods"):
            kube.append(directory)
    cgroups = sorted(kube, key=lambda d: (-len(PurePosixPath(d).parts), d))
    return CleanupPlan(unmounts=unmounts, netns=netns, cgroups=cgroups)


def plan_shim_kills(cmdlines: dict[int, list[str]], socket: str) -> list[int]:
    """Shims our containerd started (they outlive it by design: own session, `-address SOCK`)."""
    pids = []
    for pid, argv in cmdlines.items():
        if argv and Path(argv[0]).name.startswith("containerd-shim") and socket in argv:
            index = argv.index(socket)
            if index > 0 and argv[index - 1] in ("-address", "--address"):
                pids.append(pid)
    return sorted(pids)


def parse_netns_list(text: str) -> list[str]:
    """`ip netns list` lines look like 'cni-1234 (id: 0)' or just 'name'."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


# -- I/O shell --------------------------------------------------------------------------------


class Ctr:
    """`ctr` against our own containerd, in the kubelet's namespace k8s.io."""

    def __init__(self, socket: Path) -> None:
        self.base = ["ctr", "--address", str(socket), "--namespace", "k8s.io"]

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout)

    def ids(self, kind: str) -> list[str]:
        result = self.run(kind, "list", "-q")
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip() or f"ctr {kind} list failed")
        return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def _proc_cmdlines() -> dict[int, list[str]]:
    cmdlines = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                raw = (entry / "cmdline").read_bytes()
                cmdlines[int(entry.name)] = [
                    a.decode(errors="replace") for a in raw.split(b"\0") if a
                ]
    return cmdlines


def _cgroup_dirs() -> list[str]:
    found: list[str] = []
    if not CGROUP_ROOT.is_dir():
        return found
    for controller in CGROUP_ROOT.iterdir():
        with contextlib.suppress(OSError):
            for top in controller.iterdir():
                if top.is_dir() and top.name.startswith("kubepods"):
                    found.append(str(top))
                    found.extend(dirpath for dirpath, _, _ in os.walk(top) if dirpath != str(top))
    return found


def remove_containers(ctr: Ctr, echo: Echo) -> list[str]:
    """Kill and delete every task and container in k8s.io; return the sandboxes' netns paths."""
    netns_paths = []
    containers = ctr.ids("containers")
    for container in containers:
        info = ctr.run("containers", "info", container)
        if info.returncode == 0:
            path = sandbox_netns(json.loads(info.stdout))
            if path:
                netns_paths.append(path)
    tasks = ctr.ids("tasks")
    for task in tasks:
        ctr.run("tasks", "kill", "--signal", "SIGKILL", task)
    # The CRI deletes a task itself when it sees the exit; delete what it has not got to yet.
    deadline = time.monotonic() + 10
    while tasks and time.monotonic() < deadline:
        time.sleep(0.2)
        tasks = ctr.ids("tasks")
        for task in tasks:
            result = ctr.run("tasks", "delete", "--force", task)
            if result.returncode != 0 and "not found" not in result.stderr:
                echo(f"   node cleanup: task {task[:12]}: {result.stderr.strip()}")
    for container in containers:
        result = ctr.run("containers", "delete", container)
        if result.returncode != 0 and "not found" not in result.stderr:
            echo(f"   node cleanup: container {container[:12]}: {result.stderr.strip()}")
    if containers:
        echo(f"   node cleanup: removed {len(containers)} container(s)")
    return netns_paths


def clean_node(paths: NodePaths, echo: Echo, *, containerd_up: bool) -> None:
    """After the kubelet stopped and before containerd stops: remove everything pods left."""
    netns_paths: list[str] = []
    if containerd_up:
        try:
            netns_paths = remove_containers(Ctr(paths.containerd_socket), echo)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            echo(f"   node cleanup: could not list containerd's containers ({error})")
    shims = plan_shim_kills(_proc_cmdlines(), str(paths.containerd_socket))
    for pid in shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if shims:
        echo(f"   node cleanup: killed {len(shims)} leftover shim(s)")
    netns_list = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    plan = plan_cleanup(
        Path("/proc/self/mountinfo").read_text(),
        parse_netns_list(netns_list),
        netns_paths,
        _cgroup_dirs(),
        [str(paths.node_dir), str(paths.run_dir), str(paths.containerd_root)],
    )
    for name in plan.netns:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    for point in plan.unmounts:
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", point], capture_output=True)
    left = []
    for directory in plan.cgroups:
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            continue
        except OSError as error:
            left.append(f"{directory} ({error.strerror})")
    # No CNI DEL ran (the kubelet was stopped first): every host-local allocation is stale.
    shutil.rmtree(paths.cni_data_dir, ignore_errors=True)
    echo(
        f"   node cleanup: {len(plan.netns)} netns, {len(plan.unmounts)} mount(s), "
        f"{len(plan.cgroups) - len(left)} cgroup dir(s) removed"
    )
    if left:
        echo(f"   node cleanup: could not remove {len(left)} cgroup dir(s): {', '.join(left[:3])}")
