"""manifests/: the generated monitoring objects are what the code renders, their rules pass
promtool, and every pod the manifests run is locked down. (The API server's verdict on the
overlays is tests/integration/test_install.py.)"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from metricpipe_devstack.settings import StackSettings
from metricpipe_exporters import rules
from metricpipe_exporters.render import build_outputs

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests" / "components" / "monitoring"
SYSTEM = "metricpipe-system"


def test_the_committed_monitoring_objects_are_generated() -> None:
    for file_name, document in build_outputs("manifests", SYSTEM, 0.99).items():
        committed = (MONITORING / file_name).read_text()
        assert committed == rules.render_yaml(document), (
            f"{file_name} differs from the code: run `make manifests` and commit the result"
        )


def test_the_component_lists_every_generated_object() -> None:
    component = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    assert set(component["resources"]) == set(build_outputs("manifests", SYSTEM, 0.99))


def test_the_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    promtool = StackSettings().prometheus_bin / "promtool"
    if not promtool.is_file():
        pytest.fail(f"promtool not found at {promtool}: run `make stack-deps`")
    manifest = yaml.safe_load((MONITORING / "metricpipe-prometheusrule.yaml").read_text())
    assert manifest["kind"] == "PrometheusRule"
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(yaml.safe_dump(manifest["spec"]))
    done = subprocess.run(
        [str(promtool), "check", "rules", str(rule_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 16 rules found" in done.stdout


def deployments() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((REPO / "manifests" / "base").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Deployment":
                found.append((doc["metadata"]["name"], doc))
    return found


@pytest.mark.parametrize(("name", "deployment"), deployments())
def test_every_pod_is_non_root_read_only_and_without_capabilities(
    name: str, deployment: dict[str, Any]
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True, name
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
    assert pod["serviceAccountName"].startswith("metricpipe-"), name
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert "add" not in context["capabilities"], name
        assert container["resources"]["limits"]["memory"], name
        for variable in container.get("env", []):
            secret_like = any(w in variable["name"] for w in ("PASSWORD", "TOKEN", "SECRET"))
            assert not (secret_like and "value" in variable), f"{name}: {variable['name']} literal"


def test_the_peek_api_runs_from_the_consumer_image_and_may_only_ask_for_reviews() -> None:
    base = REPO / "manifests" / "base"
    (deployment,) = [d for name, d in deployments() if name == "metricpipe-peek"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith("ghcr.io/metricpipe/consumer:")
    assert container["command"] == ["python", "-m", "metricpipe_consumers.peek"]
    assert pod["securityContext"]["runAsUser"] == 65532
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    (port,) = container["ports"]
    assert int(env["METRICPIPE_PEEK_PORT"]) == port["containerPort"]
    for probe in (container["readinessProbe"], container["livenessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": port["name"]}
    rbac = list(yaml.safe_load_all((base / "peek-rbac.yaml").read_text()))
    assert [d["kind"] for d in rbac] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    assert rbac[1]["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
         "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
         "verbs": ["create"]},
    ]  # fmt: skip
    assert rbac[2]["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": SYSTEM}
    ]
