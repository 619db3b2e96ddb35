"""Generate the CRDs from the pydantic models (`make crds` writes crds/).

The generator is generic (`CrdDefinition`: a spec model, its status schema, printer columns,
name rules and scale paths); this module defines the MetricPipeline's, archive_crd.py the
LogArchive's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from metricpipe_contract.model import GROUP, KIND, PLURAL, VERSION, MetricPipelineSpec
from metricpipe_contract.refs import build_name_rules
from metricpipe_contract.version import RELEASE, VERSION_LABEL

_KEEP = {
    "type", "description", "default", "enum", "minimum", "maximum", "minLength", "maxLength",
    "pattern", "items", "properties", "required", "additionalProperties", "maxItems",
    "maxProperties", "minItems", "x-kubernetes-validations", "x-kubernetes-list-type",
}  # fmt: skip

CONDITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string", "maxLength": 64},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string", "maxLength": 128},
        "message": {"type": "string", "maxLength": 4096},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "observedGeneration": {"type": "integer", "format": "int64"},
    },
}

BATCH_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Batch mode: the recent runs the ResourceManager recorded and its plan for "
    "the next one.",
    "properties": {
        "runs": {
            "type": "array",
            "maxItems": 32,
            "items": {
                "type": "object",
                "properties": {
                    "job": {"type": "string"},
                    "windowStartMs": {"type": "integer", "format": "int64"},
                    "windows": {"type": "integer", "description": "Windows the run computed."},
                    "records": {"type": "integer", "format": "int64"},
                    "seconds": {"type": "number", "description": "The Job's wall time."},
                    "workSeconds": {
                        "type": "number",
                        "description": "Of which reading and computing (the rest: start-up).",
                    },
                    "parallelism": {"type": "integer"},
                },
            },
        },
        "plan": {
            "type": "object",
            "properties": {
                "parallelism": {"type": "integer"},
                "predictedRecords": {"type": "integer", "format": "int64"},
                "predictedSeconds": {"type": "number"},
                "budgetSeconds": {"type": "number"},
                "fits": {"type": "boolean"},
                "reason": {"type": "string"},
            },
        },
    },
}

# what every metricpipe kind's status starts with
COMMON_STATUS_PROPERTIES: dict[str, Any] = {
    "observedGeneration": {"type": "integer", "format": "int64"},
    "conditions": {
        "type": "array",
        "items": CONDITION_SCHEMA,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    },
}

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Written by the operator only.",
    "properties": {
        **COMMON_STATUS_PROPERTIES,
        "topic": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "partitions": {"type": "integer"},
            },
        },
        "sinkIndex": {
            "type": "string",
            "description": "The index the operator accepted this pipeline for (one pipeline "
            "per index).",
        },
        "replicas": {"type": "integer", "description": "Consumer replicas that exist."},
        "readyReplicas": {"type": "integer"},
        "desiredReplicas": {"type": "integer"},
        "selector": {"type": "string", "description": "Label selector of the consumer pods."},
        "lag": {"type": "integer", "format": "int64", "description": "Records not consumed."},
        "timeLagSeconds": {"type": "number"},
        "timeLag": {"type": "string", "description": "Human form of timeLagSeconds."},
        "freshnessSeconds": {"type": "number"},
        "freshness": {"type": "string", "description": "Human form of freshnessSeconds."},
        "slo": {
            "type": "string",
            "description": "Met, AtRisk, Breached, Unknown, or Incomplete (records were "
            "dead-lettered as late or future: windows were finalised without them).",
        },
        "rejectedShare": {
            "type": "number",
            "description": "Share of the records read in the last 5 minutes that were "
            "dead-lettered (0..1).",
        },
        "rejected": {"type": "string", "description": "Human form of rejectedShare (a percent)."},
        "lateRecords": {
            "type": "integer",
            "format": "int64",
            "description": "Records dead-lettered as late or future in the last hour.",
        },
        "inputRate": {"type": "number", "description": "Records/s arriving on the topic."},
        "capacityPerReplica": {
            "type": "number",
            "description": "Records/s one consumer replica processes when fully busy, as the "
            "ResourceManager measured it (processing rate / busy fraction).",
        },
        "sloAttainment": {
            "type": "number",
            "description": "Share of recent observations in which freshness met the target.",
        },
        "lastScaleTime": {"type": "string", "format": "date-time"},
        "lastScaleReason": {"type": "string"},
        "scalingState": {
            "type": "string",
            "enum": ["Active", "Sleeping"],
            "description": "Sleeping: at 0 replicas (minReplicas 0), records waiting in Kafka.",
        },
        "nextWakeTime": {
            "type": "string",
            "format": "date-time",
            "description": "While sleeping: when the ResourceManager wakes it if the input stays "
            "as measured.",
        },
        "batch": BATCH_STATUS_SCHEMA,
    },
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
    {"name": "Topic", "type": "string", "jsonPath": ".status.topic.name", "priority": 1},
    {"name": "Partitions", "type": "integer", "jsonPath": ".status.topic.partitions"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
    {"name": "State", "type": "string", "jsonPath": ".status.scalingState"},
    {"name": "Next-Wake", "type": "string", "jsonPath": ".status.nextWakeTime"},
    {"name": "Lag", "type": "integer", "jsonPath": ".status.lag"},
    {"name": "Time-Lag", "type": "string", "jsonPath": ".status.timeLag"},
    {"name": "Freshness", "type": "string", "jsonPath": ".status.freshness"},
    {"name": "SLO", "type": "string", "jsonPath": ".status.slo"},
    {"name": "Rejected", "type": "string", "jsonPath": ".status.rejected"},
    {"name": "Input/s", "type": "number", "jsonPath": ".status.inputRate", "priority": 1},
    {"name": "Cap/s", "type": "number", "jsonPath": ".status.capacityPerReplica", "priority": 1},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _factory_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Fields filled by default_factory get their complete default object in the CRD, so the API
    server fills an omitted section (and CEL rules see every key of a defaulted section)."""
    defaults: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            produced = info.default_factory()  # type: ignore[call-arg]
            alias = info.alias or name
            defaults[alias] = (
                produced.model_dump(by_alias=True, exclude_none=True, mode="json")
                if isinstance(produced, BaseModel)
                else produced
            )
    return defaults


def _models_by_title(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    pending = [root]
    while pending:
        model = pending.pop()
        if model.__name__ in found:
            continue
        found[model.__name__] = model
        for info in model.model_fields.values():
            for candidate in _nested_models(info.annotation):
                pending.append(candidate)
    return found


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _nested_models(arg)]


def _to_structural(
    node: dict[str, Any], defs: dict[str, Any], models: dict[str, type[BaseModel]]
) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _to_structural(merged, defs, models)
    if "anyOf" in node:  # Optional[X] -> X (absence means None)
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        (only,) = options
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
        if node.get("default") is not None:
            rest["default"] = node["default"]
        return _to_structural({**only, **rest}, defs, models)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEEP or (key == "additionalProperties" and value is False):
            continue  # structural schemas forbid additionalProperties: false (pruning does it)
        if key == "properties":
            out[key] = {k: _to_structural(v, defs, models) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _to_structural(value, defs, models)
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    model = models.get(node.get("title", ""))
    if model is not None and out.get("type") == "object":
        for field, default in _factory_defaults(model).items():
            out["properties"][field].setdefault("default", default)
    return out


@dataclass(frozen=True)
class CrdDefinition:
    """What differs between metricpipe's CRDs; everything else is generated alike."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    spec_model: type[BaseModel]
    source_module: str  # named in the generated file's header
    status_schema: dict[str, Any]
    printer_columns: list[dict[str, Any]]
    name_rules: Callable[[], list[dict[str, str]]]
    # /scale: .spec.replicas <-> .status.replicas, pods selected by .status.selector
    scale: dict[str, str]


SCALE_PATHS = {
    "specReplicasPath": ".spec.replicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}

METRIC_PIPELINE = CrdDefinition(
    kind=KIND, plural=PLURAL, short_names=("mp",),
    description="A log-derived metric computed per event-time window under a freshness target.",
    spec_model=MetricPipelineSpec, source_module="metricpipe_contract/model.py",
    status_schema=STATUS_SCHEMA, printer_columns=PRINTER_COLUMNS,
    # every name derived from metadata.name fits its Kubernetes limit
    name_rules=build_name_rules, scale=SCALE_PATHS,
)  # fmt: skip


def build_spec_schema(definition: CrdDefinition = METRIC_PIPELINE) -> dict[str, Any]:
    model = definition.spec_model
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _to_structural(raw, defs, _models_by_title(model))


def build_crd(definition: CrdDefinition = METRIC_PIPELINE) -> dict[str, Any]:
    """The CustomResourceDefinition as a plain dict."""
    kind = definition.kind
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{definition.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "metricpipe", VERSION_LABEL: RELEASE},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": definition.plural,
                "singular": kind.lower(),
                "shortNames": list(definition.short_names),
                "categories": ["metricpipe"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": definition.description,
                            "required": ["spec"],
                            "x-kubernetes-validations": definition.name_rules(),
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": build_spec_schema(definition),
                                "status": definition.status_schema,
                            },
                        }
                    },
                    "subresources": {"status": {}, "scale": dict(definition.scale)},
                    "additionalPrinterColumns": definition.printer_columns,
                }
            ],
        },
    }


def render_crd_yaml(definition: CrdDefinition = METRIC_PIPELINE) -> str:
    header = f"# Generated by `make crds` from {definition.source_module}. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(definition), sort_keys=False, width=100)


def main(definition: CrdDefinition = METRIC_PIPELINE) -> None:
    print(render_crd_yaml(definition), end="")


if __name__ == "__main__":
    main()
