"""The API server itself refuses invalid LogArchives, naming the field and what to change; its
defaulting agrees with the Python model; /scale works on the real server."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from archives import create_archive, get_archive
from helpers import with_path
from metricpipe_contract.archive_model import PLURAL, LogArchiveSpec
from metricpipe_contract.model import GROUP, VERSION

VALID: dict[str, Any] = {"source": {"tag": "edge.**"}}


def with_(path: str, value: Any) -> dict[str, Any]:
    """VALID with one dotted path set (value None removes it)."""
    return with_path(VALID, path, value)


INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no source", {}, ["spec.source", "Required"]),
    ("bad tag", with_("source.tag", "edge logs"), ["spec.source.tag"]),
    ("bad format", with_("source.format", "csv"), ["spec.source.format", "text"]),
    ("filters", with_("source.filters", [{"field": "a", "exists": True}]),
     ["unknown field", "spec.source.filters"]),
    ("topic name", with_("topic.name", "logs"), ["unknown field", "spec.topic.name"]),
    ("zero partitions", with_("topic.partitions", 0), ["spec.topic.partitions"]),
    ("bad deletion policy", with_("topic.deletionPolicy", "Archive"),
     ["spec.topic.deletionPolicy"]),
    ("zero retention days", with_("retentionDays", 0), ["spec.retentionDays"]),
    ("retention over ten years", with_("retentionDays", 4000), ["spec.retentionDays", "3650"]),
    ("freshness below roll", {**with_("freshness.target", "30s"), "roll": {"maxAge": "2m"}},
     ["spec.freshness.target", "at least roll.maxAge", "lower roll.maxAge"]),
    ("roll age too long", {**with_("roll.maxAge", "2h"), "freshness": {"target": "3h"}},
     ["spec.roll.maxAge", "between 1s and 1h"]),
    ("roll bytes too small", with_("roll.maxBytes", 1000), ["spec.roll.maxBytes"]),
    ("roll bytes as a quantity", with_("roll.maxBytes", "64Mi"), ["spec.roll.maxBytes"]),
    ("min above max", with_("scaling", {"minReplicas": 4, "maxReplicas": 2}),
     ["spec.scaling.minReplicas", "must not exceed"]),
    ("sleeping archiver", with_("scaling", {"minReplicas": 0}),
     ["spec.scaling.minReplicas", "archivers do not sleep"]),
    ("replicas outside scaling", with_("replicas", 9),
     ["spec.replicas", "within scaling.minReplicas..scaling.maxReplicas"]),
    ("index retention", with_("index", {"enabled": True, "retentionDays": 0}),
     ["spec.index.retentionDays"]),
    ("unknown field", with_("sourcee", {"tag": "x"}), ["unknown field", "spec.sourcee"]),
]  # fmt: skip


@pytest.mark.usefixtures("logarchive_crd")
def test_invalid_archives_are_refused_by_the_api_server(
    kube: client.ApiClient, namespace: str
) -> None:
    failures = []
    for index, (case, spec, words) in enumerate(INVALID):
        try:
            create_archive(kube, namespace, f"bad-{index}", spec, field_validation="Strict")
        except ApiException as error:
            missing = [w for w in words if w not in (error.body or "")]
            if error.status not in (400, 422) or missing:
                failures.append(f"{case}: HTTP {error.status}, missing {missing}: {error.body}")
        else:
            failures.append(f"{case}: accepted")
    assert failures == []


@pytest.mark.usefixtures("logarchive_crd")
def test_names_must_be_dns_labels(kube: client.ApiClient, namespace: str) -> None:
    longest = "a" * 63
    created = create_archive(kube, namespace, longest, VALID, dry_run="All")
    assert created["metadata"]["name"] == longest
    for name, words in (("a" * 64, ["at most 63"]), ("web.edge", ["metadata.name"])):
        with pytest.raises(ApiException) as refused:
            create_archive(kube, namespace, name, VALID, dry_run="All")
        assert refused.value.status == 422, name
        missing = [w for w in words if w not in (refused.value.body or "")]
        assert missing == [], refused.value.body


@pytest.mark.usefixtures("logarchive_crd")
@pytest.mark.parametrize(
    "spec",
    [
        VALID,
        {"source": {"tag": "a.**", "format": "text"}, "topic": {"partitions": 2,
         "deletionPolicy": "Delete"}, "retentionDays": 7, "roll": {"maxAge": "5s"},
         "index": {"enabled": True}, "scaling": {"maxReplicas": 3}, "replicas": 2},
    ],
)  # fmt: skip
def test_server_defaulting_agrees_with_the_model(
    kube: client.ApiClient, namespace: str, unique_name: str, spec: dict[str, Any]
) -> None:
    create_archive(kube, namespace, unique_name, spec)
    stored = get_archive(kube, namespace, unique_name)["spec"]
    model = LogArchiveSpec.model_validate(spec)
    assert stored == model.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert LogArchiveSpec.model_validate(stored) == model


@pytest.mark.usefixtures("logarchive_crd")
def test_scale_and_immutable_replication(
    kube: client.ApiClient, namespace: str, unique_name: str
) -> None:
    create_archive(kube, namespace, unique_name, {**VALID, "scaling": {"maxReplicas": 4}})
    objects = client.CustomObjectsApi(kube)
    objects.patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, PLURAL, unique_name, {"spec": {"replicas": 3}}
    )
    assert get_archive(kube, namespace, unique_name)["spec"]["replicas"] == 3
    with pytest.raises(ApiException) as refused:
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, unique_name,
            {"spec": {"topic": {"replicationFactor": 2}}},
        )  # fmt: skip
    assert refused.value.status == 422
    assert "replicationFactor cannot be changed" in (refused.value.body or "")
