"""The edge in front of the peek API: HAProxy in TCP mode (L4) over two Nginx servers (L7).

Debian's haproxy and nginx (installed by hack/prereqs.sh), run as the stack's own processes
with configurations from edge_config.py, all on 127.0.0.1. Each Nginx runs its master in the
foreground (`daemon off;`) with its own prefix under `.stack/data/<name>/`; its error log is
the component's log, its JSON access log `.stack/logs/<name>.access.log`. HAProxy's JSON
session log goes to its stdout, which its start command sends to
`.stack/logs/edge-haproxy.access.log`; its own messages (stderr) go to the component's log.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
from abc import abstractmethod
from functools import cache
from pathlib import Path

import requests

from .base import Component, Probe
from .edge_config import (
    HEALTH_PATH,
    HaproxyEdge,
    NginxServer,
    build_haproxy_config,
    build_nginx_config,
)
from .errors import StackError
from .pki import ensure_pki, issue_certificate
from .settings import StackSettings

NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"
LOOPBACK = "127.0.0.1"
CERT_NAME = "edge-nginx"  # one server certificate for both Nginx, from the stack's CA
CERT_SANS = "IP:127.0.0.1,DNS:localhost"
NGINX_LETTERS = ("a", "b")


def nginx_name(letter: str) -> str:
    return f"edge-nginx-{letter}"


@cache
def binary_version(binary: str) -> str:
    """`nginx -v` / `haproxy -v`'s version number, or '?' when the binary is missing."""
    try:
        result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    match = re.search(r"(?:nginx/|HAProxy version )(\d+\.\d+\.\d+)", result.stdout + result.stderr)
    return match.group(1) if match else "?"


def _validate(name: str, argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise StackError(
            name,
            f"its configuration is invalid ({' '.join(argv)}):\n{result.stderr.strip()}\n"
            "Fix the builder in hack/metricpipe_devstack/edge_config.py",
        )


def proxy_protocol_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """The PROXY protocol v1 header HAProxy would send for a TCP4 connection."""
    return f"PROXY TCP4 {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def fetch_health_via_proxy_protocol(port: int, ca_file: Path, timeout: float = 3.0) -> int:
    """GET /healthz on an edge Nginx the way HAProxy reaches it (PROXY header, then TLS
    verified with the stack's CA); returns the HTTP status. Raises OSError / ssl.SSLError."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as raw:
        raw.sendall(proxy_protocol_v1(raw.getsockname(), (LOOPBACK, port)))
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(f"GET {HEALTH_PATH} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            status_line = tls.recv(64).split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


class _EdgeComponent(Component):
    """Shared by the edge's servers: loopback only, a config file in the data directory that
    is rebuilt at every start and checked by the server's own binary before it runs."""

    startup_timeout = 30.0
    config_name: str

    @abstractmethod
    def build_config(self) -> str:
        """The configuration text (edge_config.py's builders)."""

    @abstractmethod
    def check_argv(self) -> list[str]:
        """The command that checks the written configuration."""

    @property
    def config_path(self) -> Path:
        return self.data_dir / self.config_name

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.build_config())
        _validate(self.name, self.check_argv())

    def bind_host(self) -> str:
        return LOOPBACK

    @property
    def ca_file(self) -> Path:
        return self.settings.pki_dir / "ca.crt"

    @property
    def access_log(self) -> Path:
        return self.settings.log_dir / f"{self.name}.access.log"


class EdgeNginx(_EdgeComponent):
    """One of the two Nginx servers; `letter` names it (edge-nginx-a, edge-nginx-b)."""

    config_name = "nginx.conf"

    def __init__(self, settings: StackSettings, letter: str) -> None:
        super().__init__(settings)
        self.letter = letter
        self.name = nginx_name(letter)

    def port(self) -> int:
        ports = self.settings.ports
        return ports.edge_nginx_a if self.letter == "a" else ports.edge_nginx_b

    def server(self) -> NginxServer:
        pki = self.settings.pki_dir
        return NginxServer(
            name=self.name,
            port=self.port(),
            prefix=self.data_dir,
            certificate=pki / f"{CERT_NAME}.crt",
            key=pki / f"{CERT_NAME}.key",
            access_log=self.access_log,
            upstream_port=self.settings.ports.peek,
            limits=self.settings.edge_limits,
        )

    def prepare(self) -> None:
        pki = self.settings.pki_dir
        ensure_pki(pki, extra_sans=f"IP:{self.settings.host_address}")
        issue_certificate(pki, CERT_NAME, "metricpipe-edge", sans=CERT_SANS)
        super().prepare()

    def build_config(self) -> str:
        return build_nginx_config(self.server())

    def check_argv(self) -> list[str]:
        return [*self.argv(), "-t"]

    def argv(self) -> list[str]:
        return [NGINX, "-p", str(self.data_dir), "-c", str(self.config_path), "-e", "stderr"]

    def probe(self) -> Probe:
        try:
            status = fetch_health_via_proxy_protocol(self.port(), self.ca_file)
        except (OSError, ssl.SSLError) as error:
            return Probe(False, f"unreachable: {type(error).__name__}", binary_version(NGINX))
        detail = "TLS /healthz 200" if status == 200 else f"TLS /healthz HTTP {status}"
        return Probe(status == 200, detail, binary_version(NGINX))


class EdgeHaproxy(_EdgeComponent):
    name = "edge-haproxy"
    config_name = "haproxy.cfg"

    def port(self) -> int:
        return self.settings.ports.edge

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port()}"

    def build_config(self) -> str:
        servers = tuple((n.name, n.port()) for n in self._nginx())
        return build_haproxy_config(HaproxyEdge(self.port(), servers, self.ca_file))

    def check_argv(self) -> list[str]:
        return [HAPROXY, "-c", "-f", str(self.config_path)]

    def _nginx(self) -> list[EdgeNginx]:
        return [EdgeNginx(self.settings, letter) for letter in NGINX_LETTERS]

    def argv(self) -> list[str]:
        # exec keeps the recorded pid HAProxy's; its stdout (the session log) goes to its file.
        return [
            "/bin/sh",
            "-c",
            'exec "$0" "$@" >>"$METRICPIPE_EDGE_SESSION_LOG"',
            HAPROXY,
            "-db",
            "-f",
            str(self.config_path),
        ]

    def process_env(self) -> dict[str, str]:
        return {"METRICPIPE_EDGE_SESSION_LOG": str(self.access_log)}

    def probe(self) -> Probe:
        version = binary_version(HAPROXY)
        try:
            response = requests.get(f"{self.url}{HEALTH_PATH}", verify=str(self.ca_file), timeout=3)
        except requests.RequestException as error:
            return Probe(False, f"unreachable: {type(error).__name__}", version)
        served_by = response.headers.get("X-Edge-Server", "?")
        if response.status_code != 200:
            return Probe(False, f"HTTPS /healthz HTTP {response.status_code}", version)
        return Probe(True, f"HTTPS /healthz 200 via {served_by}", version)

    def env(self) -> dict[str, str]:
        return {
            "METRICPIPE_EDGE_URL": self.url,
            "METRICPIPE_EDGE_ACCESS_LOGS": ",".join(str(n.access_log) for n in self._nginx()),
            "METRICPIPE_EDGE_HAPROXY_LOG": str(self.access_log),
        }
