"""The pydantic model is the one source of truth for the MetricPipeline spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from metricpipe_contract.durations import format_duration, parse_duration
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_operator.api.crd import build_crd, build_spec_schema, render_crd_yaml

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"source": {"tag": "app.**"}, "metric": {"aggregation": "count"}}


def test_committed_crd_is_the_generated_one() -> None:
    committed = (REPO / "crds" / "metricpipelines.metricpipe.io.yaml").read_text()
    assert committed == render_crd_yaml(), "run `make crds` and commit the result"


def test_crd_basics() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert (names["shortNames"], names["categories"]) == (["mp"], ["metricpipe"])
    version = crd["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"]]
    assert columns == ["MODE", "TOPIC", "PARTITIONS", "REPLICAS", "STATE", "NEXT-WAKE", "LAG",
                       "TIME-LAG", "FRESHNESS", "SLO", "REJECTED", "INPUT/S", "CAP/S", "READY",
                       "REASON", "AGE"]  # fmt: skip


def _walk(schema: dict[str, object], path: str = "spec") -> list[str]:
    """Every problem that would make the schema non-structural."""
    problems = []
    if "type" not in schema and "x-kubernetes-int-or-string" not in schema:
        problems.append(f"{path}: no type")
    for bad in ("$ref", "anyOf", "title", "allOf", "oneOf"):
        if bad in schema:
            problems.append(f"{path}: {bad}")
    if schema.get("additionalProperties") is False:
        problems.append(f"{path}: additionalProperties false")
    for name, child in (schema.get("properties") or {}).items():  # type: ignore[attr-defined]
        problems += _walk(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        child = schema.get(key)
        if isinstance(child, dict):
            problems += _walk(child, f"{path}[{key}]")
    return problems


def test_schema_is_structural() -> None:
    assert _walk(build_spec_schema()) == []


def test_model_defaults_match_schema_defaults() -> None:
    """Every default in the schema is the model's default for that field."""
    dumped = MetricPipelineSpec.model_validate(MINIMAL).model_dump(by_alias=True, mode="json")
    schema = build_spec_schema()
    for section in ("topic", "scaling", "freshness", "sink", "consumer"):
        default = schema["properties"][section]["default"]
        model = {k: v for k, v in dumped[section].items() if v is not None}
        assert default == model, section
    assert schema["properties"]["mode"]["default"] == dumped["mode"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("24h", 86400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1d", "5 m", "m", "1.5h", "-5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration like"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (42, "42s"), (303, "5m3s"), (3600, "1h"), (7260, "2h1m")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_model_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="sourc"):
        MetricPipelineSpec.model_validate({**MINIMAL, "sourc": {}})


def test_derived_names() -> None:
    spec = MetricPipelineSpec.model_validate(MINIMAL)
    assert spec.topic_name("ns", "p") == "metricpipe.ns.p"
    assert spec.index_name("ns", "P") == "metricpipe-ns.p.metrics"
    named = MetricPipelineSpec.model_validate(
        {**MINIMAL, "topic": {"name": "logs.web"}, "sink": {"index": "web-metrics"}}
    )
    assert named.topic_name("ns", "p") == "logs.web"
    assert named.index_name("ns", "p") == "web-metrics"


def test_crd_rules_name_the_limits() -> None:
    """The CEL rules the API server runs: the name limit at the root, RE2 patterns, the window
    in milliseconds, internal topics (each is exercised against the real API server in
    tests/integration/test_crd_validation.py)."""
    crd = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    root = [rule["rule"] for rule in crd["x-kubernetes-validations"]]
    assert root[0] == "self.metadata.name.size() <= 43"
    assert "matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')" in root[1]
    spec = crd["properties"]["spec"]["properties"]
    filters = spec["source"]["properties"]["filters"]["items"]["x-kubernetes-validations"]
    assert any("''.matches(self.matches)" in rule["rule"] for rule in filters)
    window = [r["rule"] for r in spec["metric"]["x-kubernetes-validations"] if "24h" in r["rule"]]
    assert window == [
        "duration('24h').getMilliseconds() % duration(self.window).getMilliseconds() == 0"
    ]
    topic = [r["rule"] for r in spec["topic"]["x-kubernetes-validations"]]
    assert "!has(self.name) || !self.name.startsWith('__')" in topic


def test_crd_yaml_parses() -> None:
    assert yaml.safe_load(render_crd_yaml()) == build_crd()
