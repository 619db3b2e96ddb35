"""Kopf handlers: thin adapters between Kopf and `reconcile/` (no logic of their own)."""

from __future__ import annotations

import logging
import random
from typing import Any

import kopf
import structlog
from pydantic import ValidationError

from .api.model import GROUP, PLURAL, VERSION, MetricPipelineSpec
from .config import OperatorConfig
from .reconcile.names import MANAGED_BY, PipelineRef
from .reconcile.pipeline import (
    Outcome,
    Runtime,
    finalize_pipeline,
    refresh_consumer_status,
    write_reconcile_status,
)
from .reconcile.pipeline import reconcile_pipeline as run_reconcile
from .reconcile.retry import decide_retry_delay
from .runtime import build_api_client, build_runtime
from .scaling.start import build_resource_manager, start_in_thread

log = structlog.get_logger("metricpipe.operator")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    config = OperatorConfig()
    memo["runtime"] = build_runtime(config)
    manager = build_resource_manager(config, build_api_client())
    if manager is not None:
        memo["resourcemanager_stop"] = start_in_thread(manager)


@kopf.on.cleanup()
def stop_resource_manager(memo: kopf.Memo, **_: Any) -> None:
    stop = memo.get("resourcemanager_stop")
    if stop is not None:
        stop.set()


def _parse(spec: dict[str, Any]) -> MetricPipelineSpec:
    try:
        return MetricPipelineSpec.model_validate(dict(spec))
    except ValidationError as error:  # the CRD should have refused it: say what to change
        raise kopf.PermanentError(f"invalid spec: {error}") from error


def _ref(meta: dict[str, Any], body: Any) -> PipelineRef:
    return PipelineRef(
        namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
    )  # fmt: skip


def _write(outcome: Outcome, ref: PipelineRef, runtime: Runtime, body: Any) -> None:
    write_reconcile_status(runtime, ref, outcome)
    for reason, message in outcome.changes:
        kopf.info(body, reason=reason, message=message)
        log.info("changed", reason=reason, detail=message, pipeline=f"{ref.namespace}/{ref.name}")


def _retry_delay(runtime: Runtime, retry: int) -> float:
    config = runtime.config
    draw = random.random()  # jitter: nothing secret rides on it
    return decide_retry_delay(retry, config.retry_min_seconds, config.retry_max_seconds, draw)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile(
    *, spec: Any, meta: Any, body: Any, memo: kopf.Memo, retry: int = 0, **_: Any
) -> None:
    runtime: Runtime = memo["runtime"]
    ref = _ref(meta, body)
    outcome = run_reconcile(runtime, ref, _parse(spec))
    _write(outcome, ref, runtime, body)
    if outcome.permanent:
        raise kopf.PermanentError(outcome.permanent)
    if outcome.transient:
        raise kopf.TemporaryError(outcome.transient, delay=_retry_delay(runtime, retry))
    if outcome.blocked:  # another object holds what this one asks for: look again later
        raise kopf.TemporaryError(outcome.blocked, delay=runtime.config.retry_max_seconds)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def finalize(spec: Any, meta: Any, body: Any, memo: kopf.Memo, retry: int = 0, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    try:  # a stored spec that no longer parses must not keep the object from going
        parsed: MetricPipelineSpec | None = MetricPipelineSpec.model_validate(dict(spec))
    except ValidationError as error:
        log.warning("deleting a pipeline whose stored spec does not parse; its topic is kept",
                    pipeline=f"{meta['namespace']}/{meta['name']}",
                    error=str(error)[:300])  # fmt: skip
        parsed = None
    try:
        changes = finalize_pipeline(runtime, _ref(meta, body), parsed)
    except Exception as error:
        delay = _retry_delay(runtime, retry)
        raise kopf.TemporaryError(f"cleanup failed, will retry: {error}", delay=delay) from error
    for reason, message in changes:
        log.info("pipeline finalized", reason=reason, detail=message, pipeline=meta["name"])


@kopf.on.event(
    "apps", "v1", "deployments",
    labels={"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/component": "consumer"},
)  # fmt: skip
def consumer_status_changed(event: Any, body: Any, meta: Any, memo: kopf.Memo, **_: Any) -> None:
    """Keep ConsumerReady and the REPLICAS column live as the Deployment's status moves.

    A watch-event handler, not a change-detecting one: those store their diff base in an
    annotation of the Deployment, and a Deployment bumps its generation on every annotation
    change, which moves status.observedGeneration, which was a change again — a loop of ~3
    writes per second per pipeline."""
    if event.get("type") not in (None, "ADDED", "MODIFIED"):
        return
    owners = [o for o in meta.get("ownerReferences", []) if o.get("kind") == "MetricPipeline"]
    if owners:
        refresh_consumer_status(memo["runtime"], meta["namespace"], owners[0]["name"], dict(body))
