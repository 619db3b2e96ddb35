"""Events the ResourceManager records about the objects it scales."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from metricpipe_contract.model import API_VERSION, KIND


def build_event(
    obj: dict[str, Any], reason: str, message: str, kind: str = "Normal",
    object_kind: tuple[str, str] = (API_VERSION, KIND),
) -> Any:  # fmt: skip
    """An Event of the ResourceManager about `obj` (a MetricPipeline unless object_kind says
    (apiVersion, kind) of another)."""
    meta = obj["metadata"]
    stamp = datetime.now(UTC)
    return {
        "metadata": {"generateName": f"{meta['name']}-scale-"},
        "involvedObject": {"apiVersion": object_kind[0], "kind": object_kind[1],
                           "name": meta["name"], "namespace": meta["namespace"],
                           "uid": meta.get("uid")},
        "reason": reason, "message": message[:1024], "type": kind,
        "source": {"component": "metricpipe-resourcemanager"},
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }  # fmt: skip


def decide_event_reason(current: int, target: int) -> str:
    """The Event reason of a scale: `Sleeping` (to 0), `Woken` (from 0), else the direction."""
    if target == 0:
        return "Sleeping"
    if current == 0:
        return "Woken"
    return "ScaledUp" if target > current else "ScaledDown"
