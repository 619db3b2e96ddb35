"""Bring the whole local stack up, report on it, and take it down again."""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .base import Component, Probe
from .edge import NGINX_LETTERS, EdgeHaproxy, EdgeNginx, nginx_name
from .errors import StackError
from .hdfs import HdfsDataNode, HdfsNameNode
from .kafka import Kafka
from .kube import Etcd, KubeApiserver, KubeControllerManager, KubeScheduler
from .network import delete_bridge, ensure_bridge
from .node import Containerd, Kubelet, clean_node_dir, start_node, stop_node
from .podsd import PodDiscovery
from .prometheus import Prometheus, Prometheus3
from .redis import Redis
from .search import Elasticsearch, OpenSearch, SearchEngine
from .secure_opensearch import SecuredOpenSearch
from .secure_search import SecuredElasticsearch
from .settings import REPO_ROOT, StackSettings
from .spark import Spark

Echo = Callable[[str], None]


def build_components(settings: StackSettings) -> list[Component]:
    """Every component, in start order (stop order is the reverse)."""
    return [
        Etcd(settings),
        KubeApiserver(settings),
        KubeControllerManager(settings),
        KubeScheduler(settings),
        Kafka(settings),
        HdfsNameNode(settings),  # formats the namespace once, before its first start
        HdfsDataNode(settings),
        Elasticsearch(settings),
        SecuredElasticsearch(settings),
        OpenSearch(settings),
        SecuredOpenSearch(settings),
        Prometheus(settings),
        Prometheus3(settings),  # the same targets and rules on Prometheus 3
        Redis(settings),  # the log cache
        *(EdgeNginx(settings, letter) for letter in NGINX_LETTERS),  # the edge (edge.py)
        EdgeHaproxy(settings),
        PodDiscovery(settings),
        Spark(settings),
        Containerd(settings),  # the node: started by start_node, stopped by stop_node
        Kubelet(settings),
    ]


NODE_COMPONENTS = ("containerd", "kubelet")


def ensure_artifacts(echo: Echo) -> None:
    """Build or fetch every binary and jar into the cache (idempotent, fast when warm)."""
    for script in ("build-go-bins.sh", "fetch-deps.sh"):
        echo(f"-- hack/{script}")
        result = subprocess.run(["bash", str(REPO_ROOT / "hack" / script)])
        if result.returncode != 0:
            raise StackError(script, "failed (its last line above names the component and log)")


def _by_name(components: list[Component]) -> dict[str, Component]:
    return {c.name: c for c in components}


def _fresh_start(settings: StackSettings, components: list[Component], echo: Echo) -> None:
    """Nothing of this stack runs: start from empty data so runs do not leak into each other."""
    echo(f"-- fresh start: clearing {settings.data_root} and the search engines' runtime data")
    shutil.rmtree(settings.data_root, ignore_errors=True)
    shutil.rmtree(settings.log_dir, ignore_errors=True)
    shutil.rmtree(settings.stack_dir / "kube", ignore_errors=True)
    clean_node_dir(settings, echo)
    for component in components:
        if isinstance(component, SearchEngine):
            component.wipe()
        (settings.run_dir / f"{component.name}.pid").unlink(missing_ok=True)


def _start(components: list[Component], echo: Echo) -> None:
    for component in components:
        if component.argv() is None:
            continue
        if component.is_running():
            echo(f"   {component.name}: already running")
        else:
            echo(f"   {component.name}: starting (log {component.log_path})")
            component.start()


def _wait(components: list[Component], echo: Echo) -> None:
    """Wait for all of them at once; the first failure (in list order) is raised."""
    with ThreadPoolExecutor(max_workers=len(components)) as pool:
        futures = [(c.name, pool.submit(c.wait_healthy)) for c in components]
        for name, future in futures:
            probe = future.result()
            echo(f"   {name}: healthy ({probe.version}; {probe.detail})")


RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


def reserve_ports(ports: tuple[int, ...], echo: Echo) -> None:
    """The stack's ports lie in Linux's ephemeral range (32768-60999): between two stack runs an
    outgoing connection may take one as its local port and a server then fails to bind (seen:
    Elasticsearch on 39200). As root, add them to ip_local_reserved_ports (kept until reboot)."""
    try:
        current = RESERVED_PORTS.read_text().strip()
        have = set(current.split(",")) if current else set()
        wanted = {str(p) for p in ports} - have
        if wanted:
            RESERVED_PORTS.write_text(",".join(sorted(have | wanted)))
            echo(f"-- reserved the stack's ports from ephemeral use: {','.join(sorted(wanted))}")
    except OSError as error:  # not root, or no such sysctl: the ports stay first come first served
        echo(f"-- could not reserve the stack's ports ({error.strerror}); a port in use fails fast")


def stack_up(settings: StackSettings, *, echo: Echo = print, fetch: bool = True) -> dict[str, str]:
    """Start everything, wait until each server is healthy, write .stack/env; return its entries."""
    began = time.monotonic()
    if fetch:
        ensure_artifacts(echo)
    components = build_components(settings)
    named = _by_name(components)
    settings.stack_dir.mkdir(parents=True, exist_ok=True)
    reserve_ports(dataclasses.astuple(settings.ports), echo)
    running_before = {c.name for c in components if c.is_running()}
    if not running_before:
        _fresh_start(settings, components, echo)
    try:
        _start_all(settings, named, echo)
        entries = write_env(settings, components)
    except BaseException:
        echo("!! the stack did not start: stopping what this start started")
        stop_started(settings, components, running_before, echo)
        raise
    echo(f"-- stack is up in {time.monotonic() - began:.0f}s; environment in {settings.env_file}")
    return entries


def _start_all(settings: StackSettings, named: dict[str, Component], echo: Echo) -> None:
    ensure_bridge(settings, echo)  # before any server: they bind to its host address
    echo(f"-- starting servers (bound to {settings.host_address}, the pod bridge's host address)")
    servers = (
        "etcd",
        "kafka",
        "hdfs-namenode",
        "hdfs-datanode",
        "elasticsearch",
        "elasticsearch-secure",
        "opensearch",
        "opensearch-secure",
        "prometheus",
        "prometheus3",
        "redis",
        *(nginx_name(letter) for letter in NGINX_LETTERS),
        "edge-haproxy",
    )
    independent = [named[n] for n in servers]
    _start(independent, echo)
    _wait([named["etcd"]], echo)
    _start([named["kube-apiserver"]], echo)
    _wait([named["kube-apiserver"]], echo)
    control = [named["kube-controller-manager"], named["kube-scheduler"], named["pod-discovery"]]
    _start(control, echo)
    echo("-- starting the node (containerd, images, kubelet)")
    start_node(settings, echo)
    _wait([*control, named["kubelet"], named["spark"], *independent[1:]], echo)
    spark = named["spark"]
    if isinstance(spark, Spark):  # consumer processes on the host map it (sparkconf.py)
        spark.ensure_class_archive(echo)


def stop_started(
    settings: StackSettings, components: list[Component], running_before: set[str], echo: Echo
) -> None:
    """After a failed start: stop what that start started (all of it when nothing ran
    before), leaving running what was already running."""
    if not running_before:
        stack_down(settings, echo=echo)
        return
    if not running_before & set(NODE_COMPONENTS):
        stop_node(settings, echo)
    for component in reversed(components):
        started_now = component.name not in running_before and component.argv() is not None
        if started_now and component.name not in NODE_COMPONENTS:
            echo(f"   {component.name}: {component.stop()}")


PATH_KEY = "PATH"


def write_env(settings: StackSettings, components: list[Component]) -> dict[str, str]:
    entries = {
        "METRICPIPE_STACK_DIR": str(settings.stack_dir),
        "METRICPIPE_CACHE": str(settings.cache_dir),
        "METRICPIPE_DATA_DIR": str(settings.data_dir),
    }
    for component in components:
        entries.update(component.env())
    entries["HELM"] = str(settings.helm)
    tools = f"{shlex.quote(str(settings.kube_bin))}:{shlex.quote(str(settings.helm.parent))}"
    settings.env_file.write_text(
        "# Written by 'make stack-up'. Shell KEY=value lines; source it to use the stack.\n"
        + "".join(f"{key}={shlex.quote(value)}\n" for key, value in entries.items())
        + "# the pinned kubectl and helm first on PATH (for shells; Python reads KUBECTL, HELM)\n"
        + f'{PATH_KEY}={tools}:"$PATH"\n'
    )
    return entries


def stack_down(settings: StackSettings, *, echo: Echo = print) -> None:
    """Stop exactly the processes this stack started (by pid file), in reverse start order:
    first the node (kubelet, what its pods left, containerd), last the pod bridge."""
    stop_node(settings, echo)
    for component in reversed(build_components(settings)):
        if component.argv() is None or component.name in NODE_COMPONENTS:
            continue
        echo(f"   {component.name}: {component.stop()}")
    echo(f"   bridge {settings.bridge}: {delete_bridge(settings, echo)}")
    settings.env_file.unlink(missing_ok=True)


def stack_status(settings: StackSettings) -> list[dict[str, str]]:
    """One row per component: name, version, pid, port, health."""
    rows = []
    for component in build_components(settings):
        record = component.record()
        running = component.is_running()
        has_process = component.argv() is not None
        probe = component.probe() if running or not has_process else Probe(False, "not running")
        rows.append(
            {
                "component": component.name,
                "version": probe.version,
                "pid": str(record.pid) if record and running else "-",
                "port": str(component.port() or "-"),
                "health": ("healthy" if probe.healthy else "DOWN") + f" ({probe.detail})",
            }
        )
    return rows


def read_env_file(settings: StackSettings) -> dict[str, str]:
    """Parse .stack/env back into a dict (empty when the stack was never started)."""
    if not settings.env_file.exists():
        return {}
    entries = {}
    for line in settings.env_file.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            if key != PATH_KEY:  # a shell expansion of the reader's PATH
                entries[key] = shlex.split(value)[0] if value else ""
    return entries
