"""Prometheus (Debian's build, extracted into the cache) with a config the project controls.

Scrape targets come from file_sd: JSON files in `.stack/prometheus/file_sd/`, picked up within
seconds without a restart. Pods with a container port named `metrics` are written there by the
stack's pod discovery (`podsd.py`: scraped at their pod IPs, job = the pod's label
`app.kubernetes.io/name`, what metricpipe's PodMonitor asks of the Prometheus Operator on a
cluster; Debian's Prometheus build leaves kubernetes_sd out); tests add host processes there.
Rule files in `.stack/prometheus/rules/` are loaded at start and on POST /-/reload.

Beside it runs Prometheus 3 (`Prometheus3`: built from its Go module without the web UI's
assets, hack/build-go-bins.sh) with the same targets and rules and its own storage, so the
rules, alerts and dashboard queries are checked on both major versions.
"""

from __future__ import annotations

from pathlib import Path

import requests

from metricpipe_exporters.rules import build_rule_file, render_yaml

from .base import Component, Probe, http_get_json

SCRAPE_INTERVAL = "5s"


class Prometheus(Component):
    name = "prometheus"
    startup_timeout = 60.0

    def port(self) -> int:
        return self.settings.ports.prometheus

    @property
    def url(self) -> str:
        return f"http://{self.bind_host()}:{self.port()}"

    @property
    def binary(self) -> Path:
        return self.settings.prometheus_bin / "prometheus"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "prometheus.yml"

    @property
    def config_dir(self) -> Path:
        return self.settings.stack_dir / "prometheus"

    def build_config(self) -> str:
        file_sd = self.config_dir / "file_sd"
        rules = self.config_dir / "rules"
        return (
            "global:\n"
            f"  scrape_interval: {SCRAPE_INTERVAL}\n"
            f"  evaluation_interval: {SCRAPE_INTERVAL}\n"
            "rule_files:\n"
            f"  - {rules}/*.yml\n"
            "scrape_configs:\n"
            "  - job_name: prometheus\n"
            "    static_configs:\n"
            f"      - targets: ['{self.bind_host()}:{self.port()}']\n"
            "  - job_name: metricpipe\n"
            "    file_sd_configs:\n"
            f"      - files: ['{file_sd}/*.json', '{file_sd}/*.yml']\n"
            "        refresh_interval: 5s\n"
        )

    def prepare(self) -> None:
        for sub in ("file_sd", "rules"):
            (self.config_dir / sub).mkdir(parents=True, exist_ok=True)
        # The project's own recording and alerting rules, as a cluster would load them.
        (self.config_dir / "rules" / "metricpipe-rules.yml").write_text(
            render_yaml(build_rule_file())
        )
        self.config_file.write_text(self.build_config())
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [
            str(self.binary),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={self.bind_host()}:{self.port()}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=2d",
        ]

    def probe(self) -> Probe:
        try:
            status, _ = http_get_json(f"{self.url}/-/ready")
            _, info = http_get_json(f"{self.url}/api/v1/status/buildinfo")
        except requests.RequestException as error:
            return Probe(False, f"unreachable: {type(error).__name__}")
        version = "?"
        if isinstance(info, dict):
            version = str(info.get("data", {}).get("version", "?"))
        return Probe(status == 200, "ready" if status == 200 else f"HTTP {status}", version)

    def env(self) -> dict[str, str]:
        return {
            "PROMETHEUS_URL": self.url,
            "PROMETHEUS_FILE_SD_DIR": str(self.config_dir / "file_sd"),
            "PROMETHEUS_RULES_DIR": str(self.config_dir / "rules"),
            "PROMTOOL": str(self.settings.prometheus_bin / "promtool"),
        }


class Prometheus3(Prometheus):
    """Prometheus 3 beside Debian's 2.x: the same file_sd targets and rule files (read from the
    2.x server's directories), its own configuration file, storage and port."""

    name = "prometheus3"

    def port(self) -> int:
        return self.settings.ports.prometheus3

    @property
    def binary(self) -> Path:
        return self.settings.prometheus3_bin / "prometheus"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "prometheus3.yml"

    def env(self) -> dict[str, str]:
        return {
            "PROMETHEUS3_URL": self.url,
            "PROMTOOL3": str(self.settings.prometheus3_bin / "promtool"),
        }
