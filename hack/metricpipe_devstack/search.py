"""Elasticsearch 9.x and OpenSearch 3.x from their integ-test zips, as an unprivileged user.

Both refuse to run as root. As root, the stack creates a system user (METRICPIPE_SEARCH_USER,
default "metricpipe") and runs them from a runtime home under /var/tmp that the user can read;
the zips themselves stay in the cache. They need Java 21+: the newer JDK under /usr/lib/jvm.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import zipfile
from pathlib import Path

import requests

from .base import Component, Probe, http_get_json
from .errors import StackError


def ensure_user(name: str) -> None:
    """Create an unprivileged system user for the search engines (root only, idempotent)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError("search-user", f"useradd {name} failed: {result.stderr}") from None


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


class SearchEngine(Component):
    """Shared logic of Elasticsearch and OpenSearch; subclasses set the product specifics."""

    product: str
    launcher: str
    env_prefix: str
    startup_timeout = 240.0

    @property
    def version_key(self) -> str:
        return f"{self.product.upper()}_VERSION"

    @property
    def version(self) -> str:
        return self.settings.versions[self.version_key]

    @property
    def java_home(self) -> Path:
        return self.settings.search_java_home

    @property
    def http_port(self) -> int:
        raise NotImplementedError

    @property
    def transport_port(self) -> int:
        raise NotImplementedError

    def port(self) -> int:
        return self.http_port

    def listen_ports(self) -> list[int]:
        return [self.http_port, self.transport_port]

    @property
    def url(self) -> str:
        return f"http://{self.bind_host()}:{self.http_port}"

    @property
    def home(self) -> Path:
        return self.settings.search_root / f"{self.product}-{self.version}"

    @property
    def runtime(self) -> Path:
        return self.settings.search_root / f"run-{self.product}"

    def workdir(self) -> Path:
        return self.runtime  # jvm.options writes logs/gc.log relative to the working directory

    def run_as(self) -> str | None:
        return self.settings.search_user if os.geteuid() == 0 else None

    def settings_yaml(self) -> dict[str, str]:
        return {
            "cluster.name": f"metricpipe-dev-{self.product}",
            "node.name": f"{self.product}-1",
            "discovery.type": "single-node",
            "network.host": self.bind_host(),
            "http.port": str(self.http_port),
            "transport.port": str(self.transport_port),
            "path.data": str(self.runtime / "data"),
            "path.logs": str(self.runtime / "logs"),
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            "action.destructive_requires_name": "false",
        }

    def _extract(self) -> None:
        marker = self.home / ".extracted"
        if marker.exists():
            return
        archive = self.settings.dist_zip(self.product, self.version)
        if not archive.exists():
            raise StackError(self.name, f"{archive} missing; run 'make stack-deps'")
        staging = self.home.with_name(self.home.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(staging)
        (top,) = list(staging.iterdir())  # the zip holds one top-level folder
        shutil.rmtree(self.home, ignore_errors=True)
        top.rename(self.home)
        shutil.rmtree(staging)
        for script in (self.home / "bin").iterdir():
            script.chmod(0o755)
        marker.touch()

    def prepare(self) -> None:
        self.settings.search_root.mkdir(parents=True, exist_ok=True)
        self.settings.search_root.chmod(0o755)
        user = self.run_as()
        if user:
            ensure_user(user)
        self._extract()
        config = self.runtime / "config"
        if config.exists():
            shutil.rmtree(config)
        shutil.copytree(self.home / "config", config)
        jvm_options = config / "jvm.options"
        if jvm_options.exists():  # relative log paths would resolve inside the read-only home
            text = jvm_options.read_text()
            text = text.replace("file=logs/", f"file={self.runtime / 'logs'}/")
            text = text.replace(
                "-XX:HeapDumpPath=data", f"-XX:HeapDumpPath={self.runtime / 'data'}"
            )
            text = text.replace("-XX:ErrorFile=logs/", f"-XX:ErrorFile={self.runtime / 'logs'}/")
            jvm_options.write_text(text)
        lines = [f"{key}: {value}" for key, value in self.settings_yaml().items()]
        (config / f"{self.product}.yml").write_text("\n".join(lines) + "\n")
        for sub in ("data", "logs", "tmp"):
            (self.runtime / sub).mkdir(parents=True, exist_ok=True)
        if user:
            _chown_tree(self.runtime, user)

    def argv(self) -> list[str]:
        return [str(self.home / "bin" / self.launcher)]

    def process_env(self) -> dict[str, str]:
        prefix = self.env_prefix
        heap = self.settings.heap_mb
        return {
            f"{prefix}_JAVA_HOME": str(self.java_home),
            f"{prefix}_PATH_CONF": str(self.runtime / "config"),
            f"{prefix}_JAVA_OPTS": f"-Xms{heap}m -Xmx{heap}m",
            f"{prefix}_TMPDIR": str(self.runtime / "tmp"),
            "JAVA_HOME": str(self.java_home),
            "HOME": str(self.runtime),
        }

    def probe(self) -> Probe:
        try:
            status, health = http_get_json(f"{self.url}/_cluster/health")
        except requests.RequestException as error:
            return Probe(False, f"unreachable: {type(error).__name__}")
        state = health.get("status") if isinstance(health, dict) else None
        ok = status == 200 and state in ("green", "yellow")
        return Probe(ok, f"cluster {state}" if state else f"HTTP {status}", self._version())

    def _version(self) -> str:
        try:
            _, body = http_get_json(f"{self.url}/_nodes/_local")
        except requests.RequestException:
            return "?"
        if isinstance(body, dict):
            for node in body.get("nodes", {}).values():
                return str(node.get("version", "?"))
        return "?"

    def wipe(self) -> None:
        """Forget the previous run's indices (runtime data only; the extracted home stays)."""
        shutil.rmtree(self.runtime, ignore_errors=True)


class Elasticsearch(SearchEngine):
    name = "elasticsearch"
    product = "elasticsearch"
    launcher = "elasticsearch"
    env_prefix = "ES"

    @property
    def http_port(self) -> int:
        return self.settings.ports.elasticsearch

    @property
    def transport_port(self) -> int:
        return self.settings.ports.elasticsearch_transport

    def settings_yaml(self) -> dict[str, str]:
        return {**super().settings_yaml(), "xpack.security.enabled": "false"}

    def env(self) -> dict[str, str]:
        return {"ELASTICSEARCH_URL": self.url}


class OpenSearch(SearchEngine):
    name = "opensearch"
    product = "opensearch"
    launcher = "opensearch"
    env_prefix = "OPENSEARCH"

    @property
    def http_port(self) -> int:
        return self.settings.ports.opensearch

    @property
    def transport_port(self) -> int:
        return self.settings.ports.opensearch_transport

    def env(self) -> dict[str, str]:
        return {"OPENSEARCH_URL": self.url}
