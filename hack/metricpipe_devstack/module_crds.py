"""Other projects' CRDs, taken from their Go modules at test time (never committed).

The real API server validates metricpipe's objects of those kinds against these schemas:
fluent-operator's for the Fluentd routes, prometheus-operator's for the PodMonitor,
ServiceMonitor and PrometheusRule of `manifests/components/monitoring`. Modules come through
the Go module proxy into the metricpipe cache, pinned in hack/versions.env.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import StackError
from .settings import StackSettings


@dataclass(frozen=True)
class ModuleCrds:
    component: str  # for messages
    module: str
    version_key: str  # in hack/versions.env
    directory: str  # inside the module
    files: tuple[str, ...]


FLUENT_OPERATOR = ModuleCrds(
    component="fluent-operator",
    module="github.com/fluent/fluent-operator/v3",
    version_key="FLUENT_OPERATOR_VERSION",
    directory="config/crd/bases",
    files=(
        "fluentd.fluent.io_clusterfilters.yaml",
        "fluentd.fluent.io_clusteroutputs.yaml",
        "fluentd.fluent.io_clusterfluentdconfigs.yaml",
    ),
)
PROMETHEUS_OPERATOR = ModuleCrds(
    component="prometheus-operator",
    module="github.com/prometheus-operator/prometheus-operator",
    version_key="PROMETHEUS_OPERATOR_VERSION",
    directory="example/prometheus-operator-crd",
    files=(
        "monitoring.coreos.com_podmonitors.yaml",
        "monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.coreos.com_prometheusrules.yaml",
    ),
)


def fetch_module_crds(settings: StackSettings, crds: ModuleCrds) -> list[Path]:
    """Download the module (cached) and return the paths of its CRD files."""
    version = settings.versions[crds.version_key]
    env = {
        **os.environ,
        "GOMODCACHE": str(settings.cache_dir / "go" / "mod"),
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",
    }
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{crds.module}@{version}"],
        capture_output=True, text=True, env=env, cwd=settings.cache_dir,
    )  # fmt: skip
    if result.returncode != 0:
        output = f"{result.stdout}{result.stderr}".strip()
        raise StackError(crds.component, f"go mod download failed: {output}")
    module_dir = Path(json.loads(result.stdout)["Dir"])
    paths = [module_dir / crds.directory / name for name in crds.files]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise StackError(crds.component, f"CRD files not in the module: {missing}")
    return paths
