"""fluent-operator's CRDs, taken from its Go module at test time (never committed).

The route's fluent-operator objects are validated by the real API server against these
schemas. The module is fetched through the Go module proxy into the metricpipe cache.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .errors import StackError
from .settings import StackSettings

MODULE = "github.com/fluent/fluent-operator/v3"
CRD_FILES = (
    "fluentd.fluent.io_clusterfilters.yaml",
    "fluentd.fluent.io_clusteroutputs.yaml",
    "fluentd.fluent.io_clusterfluentdconfigs.yaml",
)


def fetch_fluent_operator_crds(settings: StackSettings) -> list[Path]:
    version = settings.versions["FLUENT_OPERATOR_VERSION"]
    env = {
        **os.environ,
        "GOMODCACHE": str(settings.cache_dir / "go" / "mod"),
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",
    }
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
        capture_output=True, text=True, env=env, cwd=settings.cache_dir,
    )  # fmt: skip
    if result.returncode != 0:
        output = f"{result.stdout}{result.stderr}".strip()
        raise StackError("fluent-operator", f"go mod download failed: {output}")
    module_dir = Path(json.loads(result.stdout)["Dir"])
    paths = [module_dir / "config" / "crd" / "bases" / name for name in CRD_FILES]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise StackError("fluent-operator", f"CRD files not in the module: {missing}")
    return paths
