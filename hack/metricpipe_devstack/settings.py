"""Typed settings of the local stack: paths, ports and pinned versions (env prefix METRICPIPE_)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
JAVA_FOR_SEARCH_CANDIDATES = ("temurin-25-jdk-amd64", "temurin-21-jdk-amd64")


def read_versions(path: Path | None = None) -> dict[str, str]:
    """Parse hack/versions.env (shell KEY=value lines) into a dict."""
    path = path or REPO_ROOT / "hack" / "versions.env"
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def _env_port(name: str, default: int) -> int:
    return int(os.environ.get(f"METRICPIPE_PORT_{name}", default))


@dataclass(frozen=True)
class Ports:
    """Loopback ports of every server (override each with METRICPIPE_PORT_<NAME>)."""

    etcd: int = _env_port("ETCD", 32379)
    etcd_peer: int = _env_port("ETCD_PEER", 32380)
    apiserver: int = _env_port("APISERVER", 36443)
    controller_manager: int = _env_port("CONTROLLER_MANAGER", 30257)
    scheduler: int = _env_port("SCHEDULER", 30259)
    kafka: int = _env_port("KAFKA", 39092)
    kafka_controller: int = _env_port("KAFKA_CONTROLLER", 39093)
    kafka_sasl: int = _env_port("KAFKA_SASL", 39094)  # SASL_SSL, SCRAM users, ACLs
    kafka_mtls: int = _env_port("KAFKA_MTLS", 39095)  # SSL with client certificates, ACLs
    elasticsearch: int = _env_port("ELASTICSEARCH", 39200)
    elasticsearch_transport: int = _env_port("ELASTICSEARCH_TRANSPORT", 39300)
    elasticsearch_secure: int = _env_port("ELASTICSEARCH_SECURE", 39202)  # 8.x, HTTPS, users
    elasticsearch_secure_transport: int = _env_port("ELASTICSEARCH_SECURE_TRANSPORT", 39302)
    opensearch_secure: int = _env_port("OPENSEARCH_SECURE", 39203)  # 2.19 + security plugin
    opensearch_secure_transport: int = _env_port("OPENSEARCH_SECURE_TRANSPORT", 39303)
    opensearch: int = _env_port("OPENSEARCH", 39201)
    opensearch_transport: int = _env_port("OPENSEARCH_TRANSPORT", 39301)
    prometheus: int = _env_port("PROMETHEUS", 39090)
    prometheus3: int = _env_port("PROMETHEUS3", 39190)  # Prometheus 3, the same targets and rules
    redis: int = _env_port("REDIS", 39379)  # the log cache (redis.py)
    hdfs_namenode: int = _env_port("HDFS_NAMENODE", 39820)  # NameNode RPC, the hdfs:// port
    hdfs_namenode_http: int = _env_port("HDFS_NAMENODE_HTTP", 39870)  # WebHDFS, JMX, web UI
    hdfs_datanode: int = _env_port("HDFS_DATANODE", 39866)  # block data transfer
    hdfs_datanode_http: int = _env_port("HDFS_DATANODE_HTTP", 39864)  # WebHDFS data, JMX
    hdfs_datanode_ipc: int = _env_port("HDFS_DATANODE_IPC", 39867)
    kubelet: int = _env_port("KUBELET", 39250)
    kubelet_healthz: int = _env_port("KUBELET_HEALTHZ", 39248)
    # The edge (edge.py), all on 127.0.0.1: HAProxy (TCP) -> two Nginx (TLS) -> the peek API.
    edge: int = _env_port("EDGE", 39443)  # HAProxy: the edge's one entry (METRICPIPE_EDGE_URL)
    edge_nginx_a: int = _env_port("EDGE_NGINX_A", 39444)  # TLS, PROXY protocol from HAProxy only
    edge_nginx_b: int = _env_port("EDGE_NGINX_B", 39445)
    peek: int = _env_port("PEEK", 39480)  # the peek API's plain HTTP, Nginx's upstream


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(f"METRICPIPE_{name}", default))


@dataclass(frozen=True)
class EdgeLimits:
    """Per-client request rate limits of each edge Nginx (limit_req keyed by the client's
    address from the PROXY protocol; over the limit: 429). Each Nginx counts on its own, so a
    client whose connections HAProxy spreads over both gets up to twice these.

    rate_per_s, burst: every proxied path (METRICPIPE_EDGE_RATE_PER_S, METRICPIPE_EDGE_BURST);
        generous, so a load test of a few hundred requests/s from one address passes.
    strict_prefix, strict_rate_per_min, strict_burst: paths under strict_prefix, for endpoints
        that must be protected harder; the integration test's 429s come from here.
    """

    rate_per_s: int = _env_int("EDGE_RATE_PER_S", 500)
    burst: int = _env_int("EDGE_BURST", 1000)
    strict_prefix: str = os.environ.get("METRICPIPE_EDGE_STRICT_PREFIX", "/limited/")
    strict_rate_per_min: int = _env_int("EDGE_STRICT_RATE_PER_MIN", 6)
    strict_burst: int = _env_int("EDGE_STRICT_BURST", 3)


@dataclass(frozen=True)
class StackSettings:
    """Where the stack keeps its cache, runtime state and data, and how it runs.

    cache_dir: downloads and builds, shared by every clone (METRICPIPE_CACHE).
    stack_dir: this checkout's runtime state: env file, pids, logs, data (METRICPIPE_STACK_DIR).
    data_dir:  the shared real data set (METRICPIPE_DATA_DIR), may be absent.
    search_user: unprivileged user for Elasticsearch/OpenSearch when run as root.
    heap_mb: JVM heap of Kafka, Elasticsearch and OpenSearch each, in MiB.
    edge_limits: the edge Nginx servers' per-client rate limits (EdgeLimits).
    redis_maxmemory: the log cache's memory limit, a Redis size such as 512mb or 2gb
        (METRICPIPE_REDIS_MAXMEMORY); past it Redis refuses writes (noeviction).
    """

    cache_dir: Path = field(
        default_factory=lambda: _env_path("METRICPIPE_CACHE", Path.home() / ".cache" / "metricpipe")
    )
    stack_dir: Path = field(
        default_factory=lambda: _env_path("METRICPIPE_STACK_DIR", REPO_ROOT / ".stack")
    )
    data_dir: Path = field(
        default_factory=lambda: _env_path(
            "METRICPIPE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"
        )
    )
    search_user: str = field(
        default_factory=lambda: os.environ.get("METRICPIPE_SEARCH_USER", "metricpipe")
    )
    heap_mb: int = field(default_factory=lambda: int(os.environ.get("METRICPIPE_HEAP_MB", "512")))
    ports: Ports = field(default_factory=Ports)
    edge_limits: EdgeLimits = field(default_factory=EdgeLimits)
    redis_maxmemory: str = field(
        default_factory=lambda: os.environ.get("METRICPIPE_REDIS_MAXMEMORY", "512mb")
    )
    # The pod network: a bridge the stack creates, the host's address on it (every server of the
    # stack listens there, so pods reach them), and the range pods get addresses from.
    bridge: str = field(default_factory=lambda: os.environ.get("METRICPIPE_BRIDGE", "metricpipe0"))
    pod_cidr: str = field(
        default_factory=lambda: os.environ.get("METRICPIPE_POD_CIDR", "10.77.0.0/24")
    )
    node_name: str = field(
        default_factory=lambda: os.environ.get("METRICPIPE_NODE_NAME", "metricpipe-node")
    )

    @cached_property
    def versions(self) -> dict[str, str]:
        return read_versions()

    @property
    def env_file(self) -> Path:
        return self.stack_dir / "env"

    @property
    def run_dir(self) -> Path:
        """Pid files of the processes this stack started."""
        return self.stack_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.stack_dir / "logs"

    @property
    def data_root(self) -> Path:
        return self.stack_dir / "data"

    @property
    def search_root(self) -> Path:
        """Runtime home of the search engines. They refuse to run as root, and /root is not
        readable by other users, so as root this lives under /var/tmp, owned by search_user."""
        if os.geteuid() == 0:
            tag = hashlib.sha256(str(self.stack_dir).encode()).hexdigest()[:10]
            return Path("/var/tmp") / f"metricpipe-search-{tag}"  # noqa: S108 - root-owned parent
        return self.stack_dir / "search"

    @property
    def pki_dir(self) -> Path:
        """The stack's certificate authority and every certificate it issued (pki.py)."""
        return self.stack_dir / "kube" / "pki"

    @property
    def host_address(self) -> str:
        """The host's address on the pod bridge: the first address of pod_cidr."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def node_dir(self) -> Path:
        """The node's state in this checkout: kubelet root, CNI config and IPAM, pod logs."""
        return self.stack_dir / "node"

    @property
    def node_run_dir(self) -> Path:
        """containerd's sockets and state: unix socket paths must stay under 108 bytes, so this
        lives under /run (as root) with a tag of the checkout, not inside it."""
        tag = hashlib.sha256(str(self.stack_dir).encode()).hexdigest()[:10]
        base = Path("/run") if os.geteuid() == 0 else Path("/tmp")  # noqa: S108
        return base / f"metricpipe-{tag}"

    @property
    def containerd_root(self) -> Path:
        """containerd's content and snapshots: in the cache, so loaded images survive restarts."""
        return self.cache_dir / "containerd"

    @property
    def images_dir(self) -> Path:
        """Built images as archives, keyed by content, and index.json naming the current ones."""
        return self.cache_dir / "images"

    @property
    def kube_bin(self) -> Path:
        return self.cache_dir / "bin" / f"kubernetes-{self.versions['KUBE_VERSION']}"

    @property
    def etcd_bin(self) -> Path:
        return self.cache_dir / "bin" / f"etcd-{self.versions['ETCD_VERSION']}" / "etcd"

    @property
    def kafka_libs(self) -> Path:
        return self.cache_dir / f"kafka-{self.versions['KAFKA_VERSION']}" / "libs"

    @property
    def spark_kafka_jars(self) -> Path:
        return self.cache_dir / f"spark-kafka-{self.versions['SPARK_VERSION']}" / "jars"

    @property
    def hadoop_libs(self) -> Path:
        """The HDFS servers' classpath folder (hack/maven/hadoop.pom.xml)."""
        return self.cache_dir / f"hadoop-{self.versions['HADOOP_VERSION']}" / "libs"

    @property
    def prometheus_bin(self) -> Path:
        """Debian's Prometheus 2 and its promtool."""
        return self.cache_dir / "prometheus" / "usr" / "bin"

    @property
    def prometheus3_bin(self) -> Path:
        """Prometheus 3 and its promtool, built from the Go module (hack/build-go-bins.sh)."""
        return self.cache_dir / "bin" / f"prometheus-{self.versions['PROMETHEUS3_MODULE_VERSION']}"

    @property
    def alertmanager_bin(self) -> Path:
        """Debian's Alertmanager and amtool (hack/fetch-deps.sh)."""
        return self.cache_dir / "alertmanager" / "usr" / "bin"

    @property
    def helm(self) -> Path:
        return self.cache_dir / "bin" / f"helm-{self.versions['HELM_VERSION']}" / "helm"

    def dist_zip(self, product: str, version: str) -> Path:
        return self.cache_dir / "dist" / f"{product}-{version}" / f"{product}-{version}.zip"

    @cached_property
    def search_java_home(self) -> Path:
        """The newer JDK beside Java 17 (Elasticsearch 9 and OpenSearch 3 need Java 21+)."""
        override = os.environ.get("METRICPIPE_SEARCH_JAVA_HOME")
        if override:
            return Path(override)
        for name in JAVA_FOR_SEARCH_CANDIDATES:
            candidate = Path("/usr/lib/jvm") / name
            if (candidate / "bin" / "java").exists():
                return candidate
        raise FileNotFoundError(
            "no Java 21+ found under /usr/lib/jvm; set METRICPIPE_SEARCH_JAVA_HOME to one"
        )
