"""Kopf handlers: thin adapters between Kopf and `reconcile/` (no logic of their own)."""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf
import structlog
from pydantic import ValidationError

from metricpipe_contract.model import GROUP, PLURAL, VERSION, MetricPipelineSpec
from metricpipe_contract.refs import MANAGED_BY, PipelineRef

from . import archive_handlers  # noqa: F401 - registers the LogArchive handlers
from .config import OperatorConfig
from .errors import KafkaUnavailableError, KubernetesApiError
from .outcomes import raise_for_outcome, retry_delay
from .reconcile.pipeline import (
    Outcome,
    Runtime,
    finalize_pipeline,
    refresh_consumer_status,
    repair_pipeline,
    write_reconcile_status,
)
from .reconcile.pipeline import reconcile_pipeline as run_reconcile
from .reconcile.repair import RepairRequest, build_repair_events, decide_repair
from .reconcile.route import FLUENTD_API
from .runtime import build_api_client, build_runtime
from .scaling.start import build_resource_manager, start_in_thread

log = structlog.get_logger("metricpipe.operator")
CONFIG = OperatorConfig()  # read once, at import: the repair timer's interval is a decoration
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
FLUENTD_GROUP, FLUENTD_VERSION = FLUENTD_API.split("/")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    memo["runtime"] = build_runtime(CONFIG)
    manager = build_resource_manager(CONFIG, build_api_client())
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
    raise_for_outcome(outcome, runtime, retry)


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
        delay = retry_delay(runtime, retry)
        raise kopf.TemporaryError(f"cleanup failed, will retry: {error}", delay=delay) from error
    for reason, message in changes:
        log.info("pipeline finalized", reason=reason, detail=message, pipeline=meta["name"])


def _repair(memo: kopf.Memo, request: RepairRequest) -> None:
    """Reconcile the owner again (repair.py); an Event per change it made. A failure waits for
    the next trigger (the timer at the latest)."""
    pipeline = f"{request.namespace}/{request.name}"
    served = memo.get("namespaces") or frozenset()
    if served and request.namespace not in served:
        return  # another operator's (a cluster-scoped child is seen by every operator)
    try:
        repaired = repair_pipeline(memo["runtime"], request.namespace, request.name)
    except (KubernetesApiError, KafkaUnavailableError) as error:
        log.warning("repair failed", pipeline=pipeline, why=request.why, error=str(error))
        return
    if repaired is None:
        return
    body, outcome = repaired
    for kind, reason, message in build_repair_events(outcome.changes, request.why):
        kopf.event(kopf.Body(cast(kopf.RawBody, body)), type=kind, reason=reason, message=message)
        log.info("repaired", reason=reason, detail=message, pipeline=pipeline)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.repair_interval_seconds,
            initial_delay=CONFIG.repair_interval_seconds)  # fmt: skip
def repair_periodically(meta: Any, memo: kopf.Memo, **_: Any) -> None:
    """Drift no event tells of: the Kafka topic, fields of a child edited by hand."""
    _repair(memo, RepairRequest(meta["namespace"], meta["name"], "periodic check"))


@kopf.on.event(
    "apps", "v1", "deployments",
    labels={**MANAGED, "app.kubernetes.io/component": "consumer"},
)  # fmt: skip
def consumer_status_changed(event: Any, body: Any, meta: Any, memo: kopf.Memo, **_: Any) -> None:
    """Keep ConsumerReady and the REPLICAS column live as the Deployment's status moves; put
    the Deployment back when it is deleted or its replicas are changed by hand.

    A watch-event handler, not a change-detecting one: those store their diff base in an
    annotation of the Deployment, and a Deployment bumps its generation on every annotation
    change, which moves status.observedGeneration, which was a change again — a loop of ~3
    writes per second per pipeline."""
    request = decide_repair(event.get("type"), dict(body))
    if request is not None:
        _repair(memo, request)
        return
    if event.get("type") not in (None, "ADDED", "MODIFIED"):
        return
    owners = [o for o in meta.get("ownerReferences", []) if o.get("kind") == "MetricPipeline"]
    if owners:
        refresh_consumer_status(memo["runtime"], meta["namespace"], owners[0]["name"], dict(body))


@kopf.on.event("", "v1", "configmaps", labels=MANAGED)
@kopf.on.event("", "v1", "services", labels=MANAGED)
@kopf.on.event("batch", "v1", "cronjobs", labels=MANAGED)
@kopf.on.event(FLUENTD_GROUP, FLUENTD_VERSION, "clusteroutputs", labels=MANAGED)
@kopf.on.event(FLUENTD_GROUP, FLUENTD_VERSION, "clusterfilters", labels=MANAGED)
@kopf.on.event(FLUENTD_GROUP, FLUENTD_VERSION, "clusterfluentdconfigs", labels=MANAGED)
def child_changed(event: Any, body: Any, memo: kopf.Memo, **_: Any) -> None:
    """A deleted child of a pipeline is put back (repair.py)."""
    request = decide_repair(event.get("type"), dict(body))
    if request is not None:
        _repair(memo, request)
