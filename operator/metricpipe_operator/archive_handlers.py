"""Kopf handlers of LogArchives: thin adapters to reconcile/archive.py (registered on import,
by handlers.py, which also configures Kopf once for both kinds)."""

from __future__ import annotations

from typing import Any

import kopf
import structlog
from pydantic import ValidationError

from metricpipe_contract.archive_model import PLURAL, LogArchiveSpec
from metricpipe_contract.archive_refs import ArchiveRef
from metricpipe_contract.model import GROUP, VERSION
from metricpipe_contract.refs import MANAGED_BY

from .config import OperatorConfig
from .outcomes import raise_for_outcome, retry_delay
from .reconcile.archive import (
    finalize_archive,
    reconcile_archive,
    refresh_archive_summary,
    refresh_archiver_status,
    write_archive_status,
)
from .reconcile.pipeline import Runtime

log = structlog.get_logger("metricpipe.operator")
CONFIG = OperatorConfig()  # the timer's interval is a decoration: read at import
ARCHIVER = {"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/component": "archiver"}


def _ref(meta: Any) -> ArchiveRef:
    return ArchiveRef(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
                      generation=int(meta.get("generation") or 0))  # fmt: skip


def _parse(spec: Any) -> LogArchiveSpec:
    try:
        return LogArchiveSpec.model_validate(dict(spec))
    except ValidationError as error:  # the CRD should have refused it: say what to change
        raise kopf.PermanentError(f"invalid spec: {error}") from error


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile(*, spec: Any, meta: Any, body: Any, memo: kopf.Memo, retry: int = 0,
              **_: Any) -> None:  # fmt: skip
    runtime: Runtime = memo["runtime"]
    ref = _ref(meta)
    outcome = reconcile_archive(runtime, ref, _parse(spec))
    write_archive_status(runtime, ref, outcome)
    for reason, message in outcome.changes:
        kopf.info(body, reason=reason, message=message)
        log.info("changed", reason=reason, detail=message, archive=ref.key)
    raise_for_outcome(outcome, runtime, retry)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def finalize(spec: Any, meta: Any, memo: kopf.Memo, retry: int = 0, **_: Any) -> None:
    runtime: Runtime = memo["runtime"]
    try:  # a stored spec that no longer parses must not keep the object from going
        parsed: LogArchiveSpec | None = LogArchiveSpec.model_validate(dict(spec))
    except ValidationError:
        parsed = None
    try:
        changes = finalize_archive(runtime, _ref(meta), parsed)
    except Exception as error:
        raise kopf.TemporaryError(f"cleanup failed, will retry: {error}",
                                  delay=retry_delay(runtime, retry)) from error  # fmt: skip
    for reason, message in changes:
        log.info("archive finalized", reason=reason, detail=message, archive=meta["name"])


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.archive_status_interval_seconds,
            initial_delay=5)  # fmt: skip
def observe(spec: Any, meta: Any, memo: kopf.Memo, **_: Any) -> None:
    """Every interval: reconcile again (drift no event tells of: the topic, a deleted child)
    and read the archive's bytes and files from HDFS."""
    runtime: Runtime = memo["runtime"]
    ref = _ref(meta)
    try:
        parsed = LogArchiveSpec.model_validate(dict(spec))
    except ValidationError:
        return  # the reconcile handler says what to change
    write_archive_status(runtime, ref, reconcile_archive(runtime, ref, parsed))
    refresh_archive_summary(runtime, ref)


@kopf.on.event("apps", "v1", "deployments", labels=ARCHIVER)
def archiver_changed(event: Any, body: Any, meta: Any, memo: kopf.Memo, **_: Any) -> None:
    """Keep ArchiverReady and the replica numbers live as the Deployment's status moves (a
    watch-event handler for the reason given in handlers.consumer_status_changed)."""
    if event.get("type") not in (None, "ADDED", "MODIFIED"):
        return
    owners = [o for o in meta.get("ownerReferences", []) if o.get("kind") == "LogArchive"]
    if owners:
        refresh_archiver_status(memo["runtime"], meta["namespace"], owners[0]["name"], dict(body))
