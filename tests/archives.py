"""Helpers for tests that drive LogArchives through the real API server."""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client

from metricpipe_contract.archive_model import PLURAL
from metricpipe_contract.model import GROUP, VERSION


def archive_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LogArchive",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def create_archive(
    kube: client.ApiClient, namespace: str, name: str, spec: dict[str, Any], **options: Any
) -> dict[str, Any]:
    created = client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, archive_body(name, spec), **options
    )
    return cast(dict[str, Any], created)


def get_archive(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return cast(dict[str, Any], found)


def archive_condition(archive: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (archive.get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return {}
