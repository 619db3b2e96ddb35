"""The one way the operator writes a MetricPipeline's status: read-modify-write under the
object's resourceVersion, tried again on a conflict, so that no concurrent writer's condition
is lost. Its writers — the reconciler, the Deployment watcher, the repairs and the
ResourceManager — each give `build`: the status to write given the object as it is now (or
None: nothing to write), and how to read and patch (the I/O, so that tests can fake it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from .status import Condition, merge_conditions, rebuild_ready

log = structlog.get_logger("metricpipe.status")
Read = Callable[[], dict[str, Any] | None]  # the object now (None: it is gone)
Patch = Callable[[dict[str, Any], str | None], bool]  # (status, resourceVersion): False on 409
Build = Callable[[dict[str, Any]], dict[str, Any] | None]
ATTEMPTS = 5


def write_pipeline_status(
    read: Read, patch: Patch, build: Build, *, first: dict[str, Any] | None = None,
    attempts: int = ATTEMPTS,
) -> bool:  # fmt: skip
    """True once a status was written or there was nothing to write; False when every attempt
    met a newer object. `first`: an object read moments ago (the first attempt then needs no
    read of its own)."""
    current = first
    for _ in range(attempts):
        if current is None:
            current = read()
            if current is None:
                return True  # deleted meanwhile
        status = build(current)
        if status is None:
            return True
        if patch(status, current.get("metadata", {}).get("resourceVersion")):
            return True
        current = None  # someone wrote meanwhile: read it again
    meta = (first or {}).get("metadata", {})
    log.warning("status not written: it kept changing",
                pipeline=f"{meta.get('namespace')}/{meta.get('name')}")  # fmt: skip
    return False


def build_merged_status(status: dict[str, Any], conditions: tuple[Condition, ...]) -> Build:
    """A writer's numbers as they are, its own conditions merged into the object's current
    ones (Ready recomputed from all of them)."""

    def build(current: dict[str, Any]) -> dict[str, Any]:
        generation = int(current["metadata"].get("generation") or 0)
        merged = merge_conditions(
            list((current.get("status") or {}).get("conditions") or []), list(conditions),
            generation,
        )  # fmt: skip
        return {**status, "conditions": rebuild_ready(merged, generation)}

    return build
