"""The example pipelines in manifests/examples are valid against the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from metricpipe_contract.model import API_VERSION, KIND, MetricPipelineSpec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert (document["apiVersion"], document["kind"]) == (API_VERSION, KIND)
    spec = MetricPipelineSpec.model_validate(document["spec"])
    assert spec.source.tag


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2
