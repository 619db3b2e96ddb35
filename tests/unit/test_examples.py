"""The examples in manifests/examples are valid against their kind's model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from metricpipe_contract import archive_model, model

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "examples").glob("*.yaml"))
SPECS: dict[str, type[model.MetricPipelineSpec] | type[archive_model.LogArchiveSpec]] = {
    model.KIND: model.MetricPipelineSpec,
    archive_model.KIND: archive_model.LogArchiveSpec,
}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert document["apiVersion"] == model.API_VERSION == archive_model.API_VERSION
    assert document["kind"] in SPECS, f"{path.name}: kind {document['kind']!r}"
    spec = SPECS[document["kind"]].model_validate(document["spec"])
    assert spec.source.tag


def test_there_are_examples_of_each_kind() -> None:
    kinds = [yaml.safe_load(path.read_text())["kind"] for path in EXAMPLES]
    assert kinds.count(model.KIND) >= 2
    assert kinds.count(archive_model.KIND) >= 1
