"""charts/metricpipe against its one source, the kustomize base: the committed chart is what
hack/render_chart.py writes; `helm lint --strict` passes; `helm template` with the default
values gives `kubectl kustomize manifests/base`, and with charts/metricpipe/ci/local-values.yaml
the local overlay, object by object. Ignored: Helm's own labels, the ConfigMaps' name suffix
(a hash of their data either way, computed differently) and the base's Namespace (the chart
installs into the release's namespace)."""

from __future__ import annotations

import filecmp
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from metricpipe_devstack.settings import StackSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "metricpipe"
NAMESPACE = "metricpipe-system"
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
CONFIG_NAME = re.compile(r"^(metricpipe-(?:operator|exporter|peek)-config)-[a-z0-9]{10}$")
Objects = dict[tuple[str, str, str], dict[str, Any]]
MONITORING_KINDS = ("PodMonitor", "ServiceMonitor", "PrometheusRule")


def binary(path: Path) -> str:
    if not path.is_file():
        pytest.fail(f"{path} not found: run `make stack-deps`")
    return str(path)


def helm() -> str:
    return binary(StackSettings().helm)


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def normalise(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: normalise(value) for key, value in node.items()
                if key not in HELM_LABELS}  # fmt: skip
    if isinstance(node, list):
        return [normalise(item) for item in node]
    return CONFIG_NAME.sub(r"\1", node) if isinstance(node, str) else node


def objects(text: str) -> Objects:
    found: Objects = {}
    for each in yaml.safe_load_all(text):
        if each:
            document = normalise(each)
            meta = document["metadata"]
            found[(document["kind"], meta.get("namespace", ""), meta["name"])] = document
    return found


def kustomize(directory: str) -> Objects:
    kubectl = binary(StackSettings().kube_bin / "kubectl")
    return objects(run(kubectl, "kustomize", str(REPO / directory)))


def helm_template(*arguments: str) -> Objects:
    return objects(run(helm(), "template", "metricpipe", str(CHART), "--namespace", NAMESPACE,
                       "--include-crds", *arguments))  # fmt: skip


def assert_same(chart: Objects, kustomized: Objects) -> None:
    namespace = ("Namespace", "", NAMESPACE)
    assert kustomized.pop(namespace)["metadata"]["labels"]["app.kubernetes.io/version"]
    assert sorted(chart) == sorted(kustomized)
    for key, expected in kustomized.items():
        assert chart[key] == expected, key


def test_the_committed_chart_is_what_the_generator_writes(tmp_path: Path) -> None:
    (tmp_path / "ci").mkdir()
    run(sys.executable, str(REPO / "hack" / "render_chart.py"), "--out", str(tmp_path))
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(CHART) for p in CHART.rglob("*")
                       if p.is_file() and p.parts[len(CHART.parts)] != "ci")  # fmt: skip
    assert written == committed, "run `make chart`"
    changed = [str(p) for p in written if not filecmp.cmp(tmp_path / p, CHART / p, shallow=False)]
    assert not changed, f"run `make chart`: {changed}"


@pytest.mark.parametrize("values", [[], ["-f", str(CHART / "ci" / "local-values.yaml")],
                                    ["-f", str(CHART / "ci" / "production-values.yaml")]],
                         ids=["defaults", "local", "production"])  # fmt: skip
def test_helm_lint_strict_passes(values: list[str]) -> None:
    out = run(helm(), "lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    "value",
    [
        "operator.replicas=-1",
        "operator.settings.KAFKA=x",
        "kafka.securityProtocol=TLS",
        "kafka.bootstrapServers=x",
    ],
)
def test_the_schema_refuses(value: str) -> None:
    done = subprocess.run([helm(), "template", str(CHART), f"--set={value}"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr


def test_the_default_values_give_the_kustomize_base() -> None:
    assert_same(helm_template(), kustomize("manifests/base"))


def test_the_local_values_give_the_local_overlay() -> None:
    local = helm_template("-f", str(CHART / "ci" / "local-values.yaml"))
    assert_same(local, kustomize("manifests/overlays/local"))


def test_the_production_values_give_the_production_overlay() -> None:
    """Kafka over SASL_SSL with each process's Secrets as a projected volume, the sink prober's
    credentials by secretKeyRef. Left out: what the overlay's components add (the peek
    Ingress and NetworkPolicy, the Grafana dashboard; the monitoring objects are compared with
    their builders below)."""
    production = helm_template("-f", str(CHART / "ci" / "production-values.yaml"))
    component_kinds = {"Ingress", "NetworkPolicy", *MONITORING_KINDS}
    kustomized = {key: value for key, value in kustomize("manifests/overlays/production").items()
                  if key[0] not in component_kinds
                  and key[2] != "metricpipe-grafana-dashboard"}  # fmt: skip
    assert_same({k: v for k, v in production.items() if k[0] not in component_kinds},
                kustomized)  # fmt: skip


def test_the_monitoring_toggles_give_the_builders_objects_with_the_release_label(
    tmp_path: Path,
) -> None:
    """`python -m metricpipe_exporters.render manifests` (the rule builders, now), in the
    release's namespace, with the Prometheus release label and the version label."""
    run(sys.executable, "-m", "metricpipe_exporters.render", "manifests", "--namespace",
        NAMESPACE, "--out", str(tmp_path))  # fmt: skip
    expected = objects("---\n".join(p.read_text() for p in sorted(tmp_path.glob("*.yaml"))))
    for document in expected.values():
        document["metadata"]["labels"] |= {"release": "kps", "app.kubernetes.io/version": "0.1.0"}
    toggles = [f"--set=monitoring.{name}.enabled=true"
               for name in ("podMonitor", "serviceMonitor", "prometheusRule")]  # fmt: skip
    chart = helm_template(*toggles, "--set=monitoring.release=kps")
    assert {k: v for k, v in chart.items() if k[0] in MONITORING_KINDS} == expected
    off = helm_template()
    assert not [key for key in off if key[0] in MONITORING_KINDS]
