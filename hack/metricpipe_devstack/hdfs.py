"""HDFS: a NameNode and a DataNode, two JVMs from the hadoop-hdfs jars on Maven Central.

Both read one configuration directory, `.stack/hdfs/conf` (core-site.xml, hdfs-site.xml and
log4j.properties, written by the pure builders below), which is first on their classpath.
Replication 1, WebHDFS on, simple authentication (the caller names itself, `user.name=` in
WebHDFS), permissions checked; the superuser is the OS user that runs the stack (it formatted
the namespace and owns `/`). Every port listens on the pod bridge's host address, like the
stack's other servers, and the DataNode registers under that address, so the NameNode's
WebHDFS redirects (307 to the DataNode) work from the host and from pods alike.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import requests

from .base import Component, Probe, http_get_json
from .errors import StackError
from .settings import Ports, StackSettings

NAMENODE_MAIN = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE_MAIN = "org.apache.hadoop.hdfs.server.datanode.DataNode"
NAMENODE_HEAP_MB = 384
DATANODE_HEAP_MB = 256
FS_STATE_BEAN = "Hadoop:service=NameNode,name=FSNamesystemState"
NAMENODE_INFO_BEAN = "Hadoop:service=NameNode,name=NameNodeInfo"
DATANODE_INFO_BEAN = "Hadoop:service=DataNode,name=DataNodeInfo"
HOSTS_FILE = "hosts"  # in the conf dir: the JVMs' name lookups (build_hosts_file)

# Hadoop reaches into JDK internals by reflection in places; Java 17 needs these opened.
JAVA17_OPENS = (
    "java.base/java.lang",
    "java.base/java.lang.reflect",
    "java.base/java.io",
    "java.base/java.net",
    "java.base/java.nio",
    "java.base/java.util",
    "java.base/java.util.concurrent",
    "java.base/sun.nio.ch",
    "java.base/sun.security.util",
)

LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.out
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=[%d{ISO8601}] %p %m (%c{2})%n
log4j.logger.org.apache.hadoop.hdfs.server.namenode.FSNamesystem.audit=WARN
log4j.logger.org.apache.hadoop.hdfs.server.datanode.DataNode.clienttrace=WARN
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
log4j.logger.org.apache.hadoop.metrics2=WARN
log4j.logger.http.requests=WARN
log4j.logger.org.apache.hadoop.hdfs.server.datanode.fsdataset.impl.FsDatasetImpl=WARN
"""

# The servers' HTTP servers look up `webapps/<name>` on the classpath; the Maven Central jars
# leave those folders out (the binary tarball ships them under share/). WebHDFS and /jmx are
# servlets the servers register themselves, so an empty web application each is enough.
WEBAPPS = ("hdfs", "datanode")
EMPTY_WEB_XML = """<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="http://xmlns.jcp.org/xml/ns/javaee" version="3.1"/>
"""


@dataclass(frozen=True)
class HdfsLayout:
    """Where HDFS listens and keeps its files: the inputs of the configuration builders."""

    host: str
    ports: Ports
    name_dir: Path  # the NameNode's fsimage and edits
    data_dir: Path  # the DataNode's blocks
    tmp_dir: Path  # hadoop.tmp.dir: anything else Hadoop would put under /tmp

    @property
    def fs_uri(self) -> str:
        return f"hdfs://{self.host}:{self.ports.hdfs_namenode}"

    @property
    def namenode_http(self) -> str:
        return f"http://{self.host}:{self.ports.hdfs_namenode_http}"

    @property
    def webhdfs_url(self) -> str:
        return f"{self.namenode_http}/webhdfs/v1"

    @property
    def datanode_http(self) -> str:
        return f"http://{self.host}:{self.ports.hdfs_datanode_http}"


def build_layout(settings: StackSettings) -> HdfsLayout:
    return HdfsLayout(
        host=settings.host_address,
        ports=settings.ports,
        name_dir=settings.data_root / HdfsNameNode.name / "name",
        data_dir=settings.data_root / HdfsDataNode.name / "data",
        tmp_dir=settings.data_root / "hdfs-tmp",
    )


def build_core_site(layout: HdfsLayout) -> dict[str, str]:
    return {
        "fs.defaultFS": layout.fs_uri,
        "hadoop.tmp.dir": str(layout.tmp_dir),
        "hadoop.security.authentication": "simple",
        "hadoop.security.authorization": "false",
    }


def build_hdfs_site(layout: HdfsLayout) -> dict[str, str]:
    host, ports = layout.host, layout.ports
    return {
        "dfs.namenode.name.dir": str(layout.name_dir),
        "dfs.datanode.data.dir": str(layout.data_dir),
        "dfs.replication": "1",
        "dfs.webhdfs.enabled": "true",
        "dfs.permissions.enabled": "true",
        "dfs.namenode.rpc-address": f"{host}:{ports.hdfs_namenode}",
        "dfs.namenode.http-address": f"{host}:{ports.hdfs_namenode_http}",
        "dfs.http.policy": "HTTP_ONLY",
        "dfs.datanode.address": f"{host}:{ports.hdfs_datanode}",
        "dfs.datanode.http.address": f"{host}:{ports.hdfs_datanode_http}",
        "dfs.datanode.ipc.address": f"{host}:{ports.hdfs_datanode_ipc}",
        # the DataNode registers as this address (not the machine's name), so the NameNode's
        # redirects and block locations point where the DataNode listens
        "dfs.datanode.hostname": host,
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
        # quick starts: no 30 s safe-mode extension, an immediate first block report, no
        # background block scanner
        "dfs.namenode.safemode.extension": "0",
        "dfs.blockreport.initialDelay": "0",
        "dfs.datanode.scan.period.hours": "-1",
        "dfs.heartbeat.interval": "3",
        # a file closes once its last block is committed by the writer, without waiting for
        # the DataNode's block report: otherwise every WebHDFS CREATE waits out the client's
        # 400 ms retry (measured: 417 ms a CREATE of 1 kB; bench/archive_throughput.py)
        "dfs.namenode.file.close.num-committed-allowed": "1",
        "dfs.client.block.write.locateFollowingBlock.initial.delay.ms": "20",
    }


def build_hosts_file(etc_hosts: Path = Path("/etc/hosts")) -> str:
    """The JVMs' only name service (jdk.net.hosts.file): the machine's /etc/hosts and its own
    name, so a reverse lookup of an address outside it fails at once instead of asking DNS."""
    try:
        system = etc_hosts.read_text()
    except OSError:
        system = ""
    return f"{system.rstrip()}\n127.0.0.1 localhost {socket.gethostname()}\n".lstrip()


def render_configuration(properties: dict[str, str]) -> str:
    """A Hadoop `<configuration>` XML document of the given properties, in the given order."""
    rows = "".join(
        f"  <property><name>{escape(key)}</name><value>{escape(value)}</value></property>\n"
        for key, value in properties.items()
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<configuration>\n{rows}</configuration>\n'


class _HdfsDaemon(Component):
    """What the NameNode and the DataNode share: the jars, the conf dir, the JVM line."""

    main_class: str
    heap_mb: int
    startup_timeout = 90.0

    @abstractmethod
    def listen_ports(self) -> list[int]:
        """Every port it binds, the one `make stack-status` shows first."""

    def port(self) -> int:
        """The first of its listen ports, the one `make stack-status` shows."""
        return self.listen_ports()[0]

    @property
    def version(self) -> str:
        return self.settings.versions["HADOOP_VERSION"]

    @property
    def layout(self) -> HdfsLayout:
        return build_layout(self.settings)

    @property
    def conf_dir(self) -> Path:
        return self.settings.stack_dir / "hdfs" / "conf"

    def _classpath(self) -> str:
        libs = self.settings.hadoop_libs
        if not (libs / f"hadoop-hdfs-{self.version}.jar").exists():
            raise StackError(self.name, f"jars missing in {libs}; run 'make stack-deps'")
        return f"{self.conf_dir}:{libs}/*"

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            f"-Xms{self.heap_mb // 4}m",
            f"-Xmx{self.heap_mb}m",
            # a quick start and a small footprint matter more here than peak throughput: the
            # client JIT only and the serial collector halve the start (measured ~10 s -> ~5 s)
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            # Name lookups from /etc/hosts only, never DNS: Hadoop's IPC client hashes its
            # connection ids with InetSocketAddress.getHostName(), a reverse lookup of the
            # NameNode's address (not in /etc/hosts) on every new connection, under the
            # client's connection lock; the DataNode's WebHDFS opens one connection a request
            # (a new user each), and when the resolver drops a query its 5 s timeout stalls
            # every RPC of the JVM. Measured on a scratch NN+DN on 127.0.0.2 (also not in
            # /etc/hosts), /tmp load script, 300 CREATEs of 10-60 kB, 8 threads: 10.5-18.0 s,
            # p95 1.2-5.1 s, max 5.1-5.2 s without; 3.1-4.5 s, p95 148-220 ms, max 185-735 ms
            # with this (1 thread: 9.3 s, max 88 ms).
            f"-Djdk.net.hosts.file={self.conf_dir / HOSTS_FILE}",
            *(f"--add-opens={module}=ALL-UNNAMED" for module in JAVA17_OPENS),
            f"-Dhadoop.log.dir={self.settings.log_dir}",
            f"-Dhadoop.home.dir={self.settings.hadoop_libs.parent}",
            "-Dhadoop.security.logger=WARN,console",
            "-cp",
            self._classpath(),
            self.main_class,
            *args,
        ]

    def argv(self) -> list[str]:
        return self._java()

    def write_config(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        layout = self.layout
        (self.conf_dir / "core-site.xml").write_text(render_configuration(build_core_site(layout)))
        (self.conf_dir / "hdfs-site.xml").write_text(render_configuration(build_hdfs_site(layout)))
        (self.conf_dir / "log4j.properties").write_text(LOG4J_PROPERTIES)
        (self.conf_dir / HOSTS_FILE).write_text(build_hosts_file())
        for app in WEBAPPS:
            web_inf = self.conf_dir / "webapps" / app / "WEB-INF"
            web_inf.mkdir(parents=True, exist_ok=True)
            (web_inf / "web.xml").write_text(EMPTY_WEB_XML)

    def _jmx(self, base_url: str, bean: str, attribute: str | None = None) -> dict[str, object]:
        """One bean from the server's /jmx servlet ({} when absent), or just one attribute."""
        query = {"get": f"{bean}::{attribute}"} if attribute else {"qry": bean}
        _, body = http_get_json(f"{base_url}/jmx", params=query)
        beans = body.get("beans", []) if isinstance(body, dict) else []
        return beans[0] if beans and isinstance(beans[0], dict) else {}


class HdfsNameNode(_HdfsDaemon):
    name = "hdfs-namenode"
    main_class = NAMENODE_MAIN
    heap_mb = NAMENODE_HEAP_MB

    def listen_ports(self) -> list[int]:  # RPC (the hdfs:// port) first
        return [self.settings.ports.hdfs_namenode, self.settings.ports.hdfs_namenode_http]

    def prepare(self) -> None:
        """Write the configuration; format the namespace once (when it has no VERSION yet)."""
        self.write_config()
        layout = self.layout
        if (layout.name_dir / "current" / "VERSION").exists():
            return
        # a new namespace: blocks of an old one would make the DataNode refuse to register
        shutil.rmtree(layout.data_dir, ignore_errors=True)
        result = subprocess.run(
            self._java("-format", "-force", "-nonInteractive"), capture_output=True, text=True
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise StackError(self.name, f"formatting the namespace failed:\n{tail}")

    def probe(self) -> Probe:
        """Up when WebHDFS answers for `/`, safe mode is off and one DataNode is live."""
        layout = self.layout
        try:
            status, _ = http_get_json(f"{layout.webhdfs_url}/", params={"op": "GETFILESTATUS"})
            state = self._jmx(layout.namenode_http, FS_STATE_BEAN)
            info = self._jmx(layout.namenode_http, NAMENODE_INFO_BEAN, "SoftwareVersion")
        except requests.RequestException as error:
            return Probe(False, f"unreachable: {type(error).__name__}")
        version = str(info.get("SoftwareVersion", "?"))
        live = state.get("NumLiveDataNodes")
        if status != 200:
            return Probe(False, f"WebHDFS GETFILESTATUS / answered HTTP {status}", version)
        if state.get("FSState") != "Operational":
            return Probe(False, f"file system state {state.get('FSState')}", version)
        if live != 1:
            return Probe(False, f"{live} live DataNodes (waiting for 1)", version)
        return Probe(True, "WebHDFS ok, 1 live DataNode", version)

    def env(self) -> dict[str, str]:
        layout = self.layout
        return {
            "METRICPIPE_HDFS_URL": layout.fs_uri,
            "METRICPIPE_WEBHDFS_URL": layout.webhdfs_url,
            "HDFS_NAMENODE_HTTP_URL": layout.namenode_http,
            "HDFS_CONF_DIR": str(self.conf_dir),
            "HADOOP_CLASSPATH_DIR": str(self.settings.hadoop_libs),
        }


class HdfsDataNode(_HdfsDaemon):
    name = "hdfs-datanode"
    main_class = DATANODE_MAIN
    heap_mb = DATANODE_HEAP_MB

    def listen_ports(self) -> list[int]:  # HTTP (WebHDFS data, JMX) first
        ports = self.settings.ports
        return [ports.hdfs_datanode_http, ports.hdfs_datanode, ports.hdfs_datanode_ipc]

    def prepare(self) -> None:
        self.write_config()
        self.layout.data_dir.mkdir(parents=True, exist_ok=True)

    def probe(self) -> Probe:
        """Up when its HTTP info port answers with its JMX info (the NameNode's probe checks
        that it registered)."""
        try:
            # only Version: reading all of DataNodeInfo before registration logs a stack trace
            info = self._jmx(self.layout.datanode_http, DATANODE_INFO_BEAN, "Version")
        except requests.RequestException as error:
            return Probe(False, f"unreachable: {type(error).__name__}")
        if not info:
            return Probe(False, "no DataNodeInfo on its HTTP port yet")
        version = str(info.get("Version", "?")).split(",")[0]  # "3.5.0, r<commit>"
        return Probe(True, "HTTP info port answers", version)
