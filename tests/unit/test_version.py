"""One release number: pyproject.toml's version is the one the contract's RELEASE says, the
images' tag, the chart's appVersion and the `app.kubernetes.io/version` label that the kustomize
base, the monitoring objects, the CRDs and every object the operator builds carry."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from metricpipe_contract.refs import PipelineRef
from metricpipe_contract.version import RELEASE, VERSION_LABEL
from metricpipe_devstack import images
from metricpipe_exporters import rules
from metricpipe_operator.api.crd import build_crd

REPO = Path(__file__).resolve().parents[2]


def test_the_release_is_pyproject_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == RELEASE


def test_images_chart_and_base_use_the_release() -> None:
    for ref in (images.OPERATOR_REF, images.CONSUMER_REF, images.EXPORTER_REF):
        assert ref.endswith(f":{RELEASE}"), ref
    chart = yaml.safe_load((REPO / "charts" / "metricpipe" / "Chart.yaml").read_text())
    assert chart["appVersion"] == RELEASE
    base = yaml.safe_load((REPO / "manifests" / "base" / "kustomization.yaml").read_text())
    pairs = [p["pairs"] for p in base["labels"] if VERSION_LABEL in p["pairs"]]
    assert pairs == [{**pairs[0], VERSION_LABEL: RELEASE}]


def test_built_objects_carry_the_version_label() -> None:
    assert PipelineRef("shop", "orders", "uid").labels("consumer")[VERSION_LABEL] == RELEASE
    assert build_crd()["metadata"]["labels"][VERSION_LABEL] == RELEASE
    for monitoring in (rules.build_pod_monitor("ns"), rules.build_service_monitor("ns"),
                       rules.build_prometheus_rule_manifest("ns")):  # fmt: skip
        assert monitoring["metadata"]["labels"][VERSION_LABEL] == RELEASE
    for path in (REPO / "manifests" / "components" / "monitoring").glob("metricpipe-*.yaml"):
        labels = yaml.safe_load(path.read_text())["metadata"]["labels"]
        assert labels[VERSION_LABEL] == RELEASE, path
